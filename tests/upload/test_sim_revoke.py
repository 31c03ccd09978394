"""The central simulator takes revokes per upstream-v1, over real HTTP, with hand-built chained records.

Sent straight to the simulator (no spool, no uploader): the terminal's own rules must not hide
what central decides, e.g. a second revoke the local side would already refuse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from spool import GENESIS_HASH, record_hash
from terminald.sim.central import CentralSim
from tests.upload.helpers import TID

CARD = {"card_number": "C0000001", "ssn": "110101199003071234", "name": "张三丰", "issuer_code": "110000"}
PARTS = ("fund_paid_fen", "account_paid_fen", "cash_paid_fen")


class Terminal:
    """Builds the terminal's hash chain by hand and posts batches to the simulator."""

    def __init__(self, sim: CentralSim) -> None:
        self.sim = sim
        self.seq = 0
        self.last_hash = GENESIS_HASH
        self.http = httpx.Client(base_url=sim.url, headers={"X-Terminal-Id": TID}, timeout=10)

    def record(self, kind: str, total: int, *, original: str | None = None, card: str = "C0000001",
               day: str = "2026-11-23") -> dict[str, Any]:
        self.seq += 1
        payload: dict[str, Any] = {"card": {**CARD, "card_number": card}, "card_present": True, "items": [],
                                   "total_fen": total, "idempotency_key": f"k{self.seq}"}
        if original is not None:
            payload["original_record_id"] = original
        record: dict[str, Any] = {
            "record_id": f"0193aaaa-0000-7000-8000-{self.seq:012d}", "seq": self.seq, "terminal_id": TID,
            "kind": kind, "business_time": f"{day}T10:15:00+08:00", "spooled_at": f"{day}T10:15:00.123+08:00",
            "offline": False, "offline_reason": None, "payload": payload, "prev_hash": self.last_hash,
        }
        record["hash"] = record_hash(record)
        self.last_hash = record["hash"]
        return record

    def post(self, *records: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.http.post(f"/v1/terminals/{TID}/records", json={"records": list(records)})
        assert r.status_code == 200, r.text
        results: list[dict[str, Any]] = r.json()["results"]
        assert [x["seq"] for x in results] == [rec["seq"] for rec in records]
        return results

    def totals(self, day: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/terminals/{TID}/totals", params={"date": day})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def code(result: dict[str, Any]) -> str:
    assert result["status"] == "rejected" and "settlement" not in result, result
    value: str = result["reason"]["code"]
    return value


def test_sale_settled_then_revoked_once(tmp_path: Path) -> None:
    sim = CentralSim(tmp_path / "central.db")
    sim.start()
    term = Terminal(sim)
    try:
        sale = term.record("settlement", 1001)
        [settled] = term.post(sale)
        assert settled["status"] == "accepted"
        original = settled["settlement"]
        assert sum(original[p] for p in PARTS) == 1001 and original["fund_paid_fen"] == 700

        revoke = term.record("revoke", -1001, original=sale["record_id"])
        [accepted] = term.post(revoke)
        assert accepted["status"] == "accepted" and "reason" not in accepted
        refund = accepted["settlement"]
        # Each part is the negative of the original's (not recomputed from -1001), adding up to the total.
        assert {p: refund[p] for p in PARTS} == {p: -original[p] for p in PARTS}
        assert sum(refund[p] for p in PARTS) == revoke["payload"]["total_fen"]
        assert refund["central_ref"] and refund["central_ref"] != original["central_ref"]

        again = term.record("revoke", -1001, original=sale["record_id"])
        [second] = term.post(again)
        assert code(second) == "already_revoked" and revoke["record_id"] in second["reason"]["message"]

        # Duplicates carry the stored outcome, unchanged.
        duplicate_revoke, duplicate_second = term.post(revoke, again)
        assert duplicate_revoke["status"] == "duplicate" and duplicate_revoke["settlement"] == refund
        assert duplicate_second["status"] == "duplicate" and duplicate_second["reason"] == second["reason"]

        assert term.totals("2026-11-23") == {
            "date": "2026-11-23", "count": 2, "total_fen": 0, "fund_paid_fen": 0, "account_paid_fen": 0,
            "by_status": {"accepted": 2, "rejected": 1},
        }
    finally:
        term.http.close()
        sim.stop()

    # Central's books persist the revoke: after a restart the original is still revoked.
    sim = CentralSim(tmp_path / "central.db")
    sim.start()
    term.sim, term.http = sim, httpx.Client(base_url=sim.url, headers={"X-Terminal-Id": TID}, timeout=10)
    try:
        [third] = term.post(term.record("revoke", -1001, original=sale["record_id"]))
        assert code(third) == "already_revoked"
        assert [r["central_status"] for r in sim.records(TID)] == ["accepted", "accepted", "rejected", "rejected"]
    finally:
        term.http.close()
        sim.stop()


def test_revokes_central_refuses(central_sim: CentralSim) -> None:
    central_sim.control(freeze=["FROZEN01"])
    term = Terminal(central_sim)
    try:
        sale = term.record("settlement", 2500)
        frozen = term.record("settlement", 800, card="FROZEN01")
        results = term.post(
            sale,
            frozen,
            term.record("revoke", -800, original=frozen["record_id"]),  # its original was rejected
            term.record("revoke", -2500, original="0193ffff-no-such-record"),  # unknown
            term.record("revoke", 2500, original=sale["record_id"]),  # not the negative of the original's
            term.record("revoke", -2499, original=sale["record_id"]),  # another amount
            term.record("revoke", -2500, original=None),  # no original at all
            term.record("settlement", -5),  # a settlement with a negative total
        )
        assert [r["status"] for r in results[:2]] == ["accepted", "rejected"]
        assert [code(r) for r in results[2:]] == [
            "original_not_found", "original_not_found", "invalid_record", "invalid_record", "invalid_record",
            "invalid_record",
        ]
        # None of those revoked anything: the right revoke is still accepted, in the same batch as a
        # second one, which is refused.
        revoke = term.record("revoke", -2500, original=sale["record_id"], day="2026-11-24")
        accepted, second, of_revoke = term.post(
            revoke,
            term.record("revoke", -2500, original=sale["record_id"], day="2026-11-24"),
            term.record("revoke", 2500, original=revoke["record_id"], day="2026-11-24"),  # a revoke of a revoke
        )
        assert accepted["status"] == "accepted" and accepted["settlement"]["fund_paid_fen"] == -1750
        assert code(second) == "already_revoked" and code(of_revoke) == "original_not_found"
        # Totals by business date: the sale on its day, the revoke (net, negative) on its own.
        assert term.totals("2026-11-23") == {
            "date": "2026-11-23", "count": 1, "total_fen": 2500, "fund_paid_fen": 1750, "account_paid_fen": 0,
            "by_status": {"accepted": 1, "rejected": 7},
        }
        assert term.totals("2026-11-24") == {
            "date": "2026-11-24", "count": 1, "total_fen": -2500, "fund_paid_fen": -1750, "account_paid_fen": 0,
            "by_status": {"accepted": 1, "rejected": 2},
        }
        assert term.totals("2026-11-25")["by_status"] == {"accepted": 0, "rejected": 0}
    finally:
        term.http.close()


def test_revoke_of_another_terminals_sale_is_not_found(central_sim: CentralSim) -> None:
    term = Terminal(central_sim)
    other = httpx.Client(base_url=central_sim.url, headers={"X-Terminal-Id": "T0002"}, timeout=10)
    try:
        sale = term.record("settlement", 1000)
        assert term.post(sale)[0]["status"] == "accepted"
        revoke = {**term.record("revoke", -1000, original=sale["record_id"]), "terminal_id": "T0002",
                  "seq": 1, "prev_hash": GENESIS_HASH}
        revoke["hash"] = record_hash(revoke)
        r = other.post("/v1/terminals/T0002/records", json={"records": [revoke]})
        assert r.status_code == 200, r.text
        assert code(r.json()["results"][0]) == "original_not_found"
    finally:
        other.close()
        term.http.close()


def test_a_revoke_central_forgot_is_taken_again(central_sim: CentralSim) -> None:
    """After a cursor regression (central restored from an old backup) the re-sent revoke is decided
    anew: accepted, not refused as a revoke of its own original."""
    term = Terminal(central_sim)
    try:
        sale = term.record("settlement", 1000)
        revoke = term.record("revoke", -1000, original=sale["record_id"])
        assert [r["status"] for r in term.post(sale, revoke)] == ["accepted", "accepted"]
        central_sim.control(regress={"terminal_id": TID, "count": 1})
        [again] = term.post(revoke)
        assert again["status"] == "accepted" and again["settlement"]["fund_paid_fen"] == -700
        [second] = term.post(term.record("revoke", -1000, original=sale["record_id"]))
        assert code(second) == "already_revoked"
    finally:
        term.http.close()

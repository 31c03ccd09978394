"""Shared by the daemon-level tests of `upstream.protocol = "nhsa"` (issue #14, "Tests").

A real `terminald serve` (tests/fixtures/daemon.py) speaks to the platform simulator
(terminald/sim/nhsa, in this process); the tests make sales as a POS does, over HTTP with the
default parameters, and judge the money by the simulator's books:

    nhsa_config(url, ...)   the daemon's config for the simulator
    Pos                     sales and revokes as a POS sends them (typed cards of the simulator's persons)
    SimTap                  sees every gateway call before the simulator handles it; holds 2102s
                            (before or after the platform committed them) so that a test can kill
                            the daemon with a 2102 in flight; switches faults at the moment a call arrives
    calllog_rows(path)      the daemon's call log, read from the spool file read-only
    check_books(...)        the platform holds exactly what the spool says, each sale once, in
                            each person's order, with the sale's business time and amounts
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.persons import Person
from terminald.upstream.nhsa.redact import mask_text
from terminald.upstream.nhsa.sale import feedetl_sn
from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for

TID = "T0001"
FIXMEDINS_CODE = "H11010500123"
TZ = ZoneInfo("Asia/Shanghai")
OPERATOR = {"id": "0007", "name": "李药师"}
GATEWAY_PATH = "/fsi/api"  # the simulator takes any path; the daemon posts to upstream.url as given


def nhsa_config(url: str, *, timeout_s: float = 2.0, wait_s: float = 3.0, concurrency: int = 4,
                reentry: str = "auto", require_card_present: bool = False) -> str:
    """terminald.toml for a daemon speaking `nhsa` to the simulator at `url`."""
    return f"""\
[terminal]
id = "{TID}"
timezone = "Asia/Shanghai"
[upstream]
url = "{url}{GATEWAY_PATH}"
protocol = "nhsa"
timeout_s = {timeout_s}
wait_s = {wait_s}
[nhsa]
fixmedins_code = "{FIXMEDINS_CODE}"
fixmedins_name = "示例大药房"
mdtrtarea_admvs = "110105"
recer_sys_code = "YBXT"
profile = "mock"
concurrency = {concurrency}
reentry = "{reentry}"
opter = "0001"
opter_name = "王药师"
[offline]
require_card_present = {"true" if require_card_present else "false"}
"""


# -- the POS --------------------------------------------------------------------------------------

def typed_card(person: Person) -> dict[str, str]:
    """The card as a POS types it in: number, ID number, name (a person without a card gets a
    made-up card number: the platform finds them by ID number)."""
    return {"card_number": person.card_number or "Z" + person.certno[-8:].replace("X", "0"),
            "ssn": person.certno, "name": person.name, "issuer_code": person.insuplc_admdvs}


def items(fen: int, lines: int = 2) -> list[dict[str, Any]]:
    """`lines` lines adding up to `fen` (quantities and prices that are exact in fen)."""
    out = []
    left = fen
    for i in range(lines):
        if i == lines - 1:
            qty, price = 1, left
        else:
            price = max(1, fen // (2 * lines))
            qty = 2 if 2 * price < left else 1
        amount = qty * price
        out.append({"code": f"XA{i:02d}", "name": ["阿莫西林胶囊", "布洛芬缓释胶囊", "维生素C片"][i % 3],
                    "qty": qty, "unit_price_fen": price, "amount_fen": amount})
        left -= amount
    assert sum(i["amount_fen"] for i in out) == fen and all(i["amount_fen"] >= 0 for i in out)
    return out


class Pos:
    """A POS on the daemon's API: default parameters (no `wait`), a fresh Idempotency-Key each time."""

    _keys = itertools.count(1)

    def __init__(self, api: httpx.Client, prefix: str = "pos") -> None:
        self.api = api
        self.prefix = prefix
        self.persons: dict[str, Person] = {}  # transaction id -> whose it is (the test knows; the API masks)

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        key = f"{self.prefix}-{next(self._keys)}"
        return self.api.post("/v1/transactions", json={**body, "meta": {"pos_order_id": key}},
                             headers={"Idempotency-Key": key})

    def sell(self, person: Person, fen: int, *, business_time: datetime | None = None, lines: int = 2,
             card_read_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "settlement", "items": items(fen, lines), "total_fen": fen,
                                "operator": OPERATOR}
        if card_read_id is not None:
            body["card_read_id"] = card_read_id
        else:
            body["card"] = typed_card(person)
        if business_time is not None:
            body["business_time"] = business_time.isoformat()
        r = self._post(body)
        assert r.status_code in (201, 202), r.text
        tx: dict[str, Any] = r.json()
        self.persons[tx["id"]] = person
        return tx

    def revoke(self, original: Mapping[str, Any]) -> dict[str, Any]:
        r = self._post({"kind": "revoke", "original_id": original["id"], "operator": OPERATOR})
        assert r.status_code in (201, 202), r.text
        tx: dict[str, Any] = r.json()
        self.persons[tx["id"]] = self.persons[original["id"]]
        return tx


def transactions(api: httpx.Client) -> list[dict[str, Any]]:
    """Every transaction of the daemon, in seq order (GET /v1/transactions, page by page)."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get("/v1/transactions", params={"after_seq": after, "limit": 500})
        assert page.status_code == 200, page.text
        body = page.json()
        found += body["items"]
        if body["next_after_seq"] is None:
            return found
        after = body["next_after_seq"]


def pending_count(api: httpx.Client) -> int:
    return int(api.get("/v1/status").json()["spool"]["pending"])


def link_state(api: httpx.Client) -> str:
    return str(api.get("/v1/status").json()["mode"])


# Alarms by which the daemon asks staff to look before some records go on: the backlog would not
# drain by itself.
STAFF_ALARMS = frozenset({"nhsa_record_stuck", "reversal_refused", "nhsa_restored_unverified"})


def wait_drained(api: httpx.Client, d: DaemonProcess, timeout_s: float, what: str) -> None:
    """Until nothing is pending, by itself: fails at once when the daemon halts or parks records
    for staff; on failure the link's state and the daemon's log say why."""

    def drained() -> bool:
        status = api.get("/v1/status").json()
        upstream = status["upstream"]
        staff = [a for a in upstream["alarms"] if a["code"] in STAFF_ALARMS]
        if upstream["halted"] or staff:
            raise AssertionError(f"{what}: the daemon waits for staff: {upstream}")
        return int(status["spool"]["pending"]) == 0

    try:
        wait_for(drained, timeout_s, what)
    except AssertionError as exc:
        upstream = api.get("/v1/status").json()["upstream"]
        raise AssertionError(f"{exc}\nupstream: {upstream}\n{d.stderr_tail(30)}") from None


# -- the simulator's side -------------------------------------------------------------------------

def sale_id(record_id: str) -> str:
    """The simulator's sale id of a record: its first line's feedetl_sn."""
    return feedetl_sn(record_id, 0)


def wire_time(business_time: str) -> str:
    """A record's business time as the platform must get it (begntime): the terminal's zone."""
    text = business_time.replace("Z", "+00:00")
    return datetime.fromisoformat(text).astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S")


class _Hold:
    def __init__(self, infnos: frozenset[str], after_commit: bool) -> None:
        self.infnos = infnos
        self.after_commit = after_commit
        self.caught: list[str] = []  # msgids parked, arrival order
        self.arrived = threading.Event()
        self.released = False
        self.gate: asyncio.Event | None = None


class SimTap:
    """Every gateway call of an in-process `NhsaSim` passes here first (the simulator's own
    `_gateway` is wrapped on this instance): it is counted, it can trigger an action inside the
    simulator's loop, and a hold parks matching calls until `release()`.

    The simulator records a call only once it handles it (after its latency), so "a 2102 the
    platform received and has not answered" can only be seen here."""

    def __init__(self, sim: NhsaSim) -> None:
        self.sim = sim
        self._inner = sim._gateway
        sim._gateway = self._gateway  # type: ignore[method-assign]
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []  # (infno, msgid) in arrival order
        self.inflight: dict[int, tuple[str, str]] = {}  # calls inside the simulator now
        self._ids = itertools.count()
        self._hold: _Hold | None = None
        self._actions: list[tuple[str, Callable[[NhsaSim], Awaitable[Any]]]] = []

    # -- test side --
    def hold(self, infnos: Iterable[str] = ("2102",), *, after_commit: bool = False) -> _Hold:
        """Park every call of `infnos` from now on (before the platform handles it, or after it
        committed and before the answer leaves) until release()."""
        with self._lock:
            assert self._hold is None, "one hold at a time"
            self._hold = _Hold(frozenset(infnos), after_commit)
            return self._hold

    def release(self) -> list[str]:
        """Let the parked calls go on (their connection may be gone); stop holding. Their msgids."""
        with self._lock:
            hold, self._hold = self._hold, None
        if hold is None:
            return []
        hold.released = True
        loop = self.sim._loop
        assert loop is not None

        def open_gate() -> None:
            if hold.gate is not None:
                hold.gate.set()

        loop.call_soon_threadsafe(open_gate)
        return list(hold.caught)

    def on_next(self, infno: str, action: Callable[[NhsaSim], Awaitable[Any]]) -> None:
        """Run `action(sim)` in the simulator's loop when the next call of `infno` arrives, before
        that call is handled (so a fault switched on there applies to it)."""
        with self._lock:
            self._actions.append((infno, action))

    def inflight_infnos(self) -> list[str]:
        with self._lock:
            return [infno for infno, _ in self.inflight.values()]

    def count(self, infno: str | None = None) -> int:
        with self._lock:
            return sum(1 for i, _ in self.seen if infno is None or i == infno)

    # -- simulator side (its loop) --
    async def _gateway(self, path: str, body: bytes) -> Any:
        infno, msgid = _infno_msgid(body)
        call = next(self._ids)
        with self._lock:
            self.seen.append((infno, msgid))
            self.inflight[call] = (infno, msgid)
            actions = [a for a in self._actions if a[0] == infno]
            self._actions = [a for a in self._actions if a[0] != infno]
            hold = self._hold if self._hold is not None and infno in self._hold.infnos else None
        try:
            for _, action in actions:
                await action(self.sim)
            if hold is not None and not hold.after_commit:
                await self._park(hold, msgid)
            answer = await self._inner(path, body)
            if hold is not None and hold.after_commit:
                await self._park(hold, msgid)
            return answer
        finally:
            with self._lock:
                del self.inflight[call]

    async def _park(self, hold: _Hold, msgid: str) -> None:
        if hold.gate is None:
            hold.gate = asyncio.Event()
        with self._lock:
            if hold.released:
                return
            hold.caught.append(msgid)
        hold.arrived.set()
        await hold.gate.wait()


def _infno_msgid(body: bytes) -> tuple[str, str]:
    try:
        envelope = json.loads(body)
    except ValueError:
        return "?", ""
    if not isinstance(envelope, dict):
        return "?", ""
    return str(envelope.get("infno", "?")), str(envelope.get("msgid", ""))


# -- the daemon's call log ------------------------------------------------------------------------

def calllog_rows(spool_path: Path) -> list[dict[str, Any]]:
    """The daemon's call log (table nhsa_calls in the spool's file), opened read-only."""
    conn = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'nhsa_calls'").fetchone()
        if exists is None:
            return []
        return [dict(r) for r in conn.execute(
            "SELECT msgid, infno, record_id, omsgid, state, err_msg, reversed_by FROM nhsa_calls ORDER BY rowid")]
    finally:
        conn.close()


def spool_pending(spool_path: Path) -> int:
    """Pending records in the spool's file, read-only (the daemon may be dead)."""
    conn = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM records WHERE status = 'pending'").fetchone()[0])
    finally:
        conn.close()


# -- the books ------------------------------------------------------------------------------------

def check_books(sim: NhsaSim, txs: list[dict[str, Any]], persons: Mapping[str, Person]) -> dict[str, int]:
    """After recovery, the platform holds exactly what the spool says (issue #14, "Tests"):

    - nothing pending; exactly one standing settlement per settled sale, at the sale's business
      time (begntime and every sel_retn_time), with its total; no other sale stands
      (`assert_money_consistent`);
    - the split the spool keeps (fund / account / cash) is the platform's, and so are its ids;
    - one standing revoke per settled revoke, of its original's settlement; none for a rejected one;
    - each person's standing settlements and revokes in the order of the spool's seq;
    - a sale the platform refused is rejected with the platform's message, masked as the adapter
      masks (the person's name, card and ID number never in it).

    `persons`: transaction id -> the person (the test knows them; the API shows them masked).
    Returns counts by outcome."""
    by_id = {t["id"]: t for t in txs}
    assert [t["id"] for t in txs if t["status"] == "pending"] == [], "records still pending"
    sales = [t for t in txs if t["kind"] == "settlement"]
    revokes = [t for t in txs if t["kind"] == "revoke"]
    settled_revokes = [r for r in revokes if r["status"] == "settled"]
    revoked = {r["original_id"] for r in settled_revokes}
    expected = {sale_id(t["id"]): {"medfee_fen": t["total_fen"], "business_time": wire_time(t["business_time"]),
                                   "revoked": t["id"] in revoked}
                for t in sales if t["status"] == "settled"}
    sim.assert_money_consistent(expected)

    standing = {s["sale_id"]: s for s in sim.standing_settlements()}
    for t in sales:
        if t["status"] != "settled":
            assert sale_id(t["id"]) not in standing, t
            continue
        s, mine = standing[sale_id(t["id"])], t["settlement"]
        assert (mine["fund_paid_fen"], mine["account_paid_fen"], mine["cash_paid_fen"]) == (
            s["fund_fen"], s["acct_fen"], s["cash_fen"]), (t["id"], mine, s)
        assert mine["fund_paid_fen"] + mine["account_paid_fen"] + mine["cash_paid_fen"] == t["total_fen"]
        assert (mine["nhsa"]["setl_id"], mine["nhsa"]["mdtrt_id"], mine["nhsa"]["psn_no"]) == (
            s["setl_id"], s["mdtrt_id"], s["psn_no"])
        assert s["psn_no"] == persons[t["id"]].psn_no

    standing_revokes = sim.standing_revokes()
    assert len(standing_revokes) == len(settled_revokes), (standing_revokes, settled_revokes)
    revoke_of_setl = {r["original_setl_id"]: r for r in standing_revokes}
    for r in settled_revokes:
        original = by_id[r["original_id"]]
        assert original["status"] == "settled"
        platform = revoke_of_setl[original["settlement"]["nhsa"]["setl_id"]]
        assert r["settlement"]["nhsa"]["setl_id"] == platform["setl_id"]
        assert r["settlement"]["fund_paid_fen"] == -original["settlement"]["fund_paid_fen"]
    for r in revokes:  # a revoke of a sale the platform refused is decided here, never sent
        if by_id[r["original_id"]]["status"] == "rejected":
            assert r["status"] == "rejected" and r["rejection"]["code"] == "original_rejected", r

    # Each person's order: their standing settlements and revokes, in the platform's call order,
    # are in the spool's seq order.
    seq_of_setl: dict[str, int] = {}
    for t in txs:
        if t["status"] == "settled":
            seq_of_setl[t["settlement"]["nhsa"]["setl_id"]] = t["seq"]
    events: dict[str, list[tuple[int, int]]] = defaultdict(list)  # psn_no -> (call_id, seq)
    for s in standing.values():
        events[s["psn_no"]].append((s["call_id"], seq_of_setl[s["setl_id"]]))
    for r in standing_revokes:
        events[r["psn_no"]].append((r["call_id"], seq_of_setl[r["setl_id"]]))
    for psn, happened in events.items():
        seqs = [seq for _, seq in sorted(happened)]
        assert seqs == sorted(seqs), f"person {psn}: the platform took seq {seqs}"

    # Refused: the platform's own message, masked.
    refusals = _refusals_by_sale(sim)
    for t in sales:
        reason = t.get("rejection")
        if t["status"] != "rejected" or not reason or reason["code"] != "nhsa_refused":
            continue
        person = persons[t["id"]]
        said = refusals.get(sale_id(t["id"]))
        assert said, f"{t['id']} rejected as refused, but the platform refused no 2102 of it"
        card = typed_card(person)
        assert reason["message"] == mask_text(said, (card["name"], card["card_number"], card["ssn"])), (reason, said)
        assert person.certno not in reason["message"] and person.name not in reason["message"]
    counts: dict[str, int] = defaultdict(int)
    for t in txs:
        counts[f"{t['kind']}_{t['status']}"] += 1
    return dict(counts)


def _refusals_by_sale(sim: NhsaSim) -> dict[str, str]:
    """sale id -> the err_msg of the last 2102 of it the platform answered -1."""
    found: dict[str, str] = {}
    for call in sim.calls("2102"):
        request = call["request"]
        if call["infcode"] != -1 or not isinstance(request, dict):
            continue
        try:
            first = request["input"]["data"]["drugdetail"][0]["feedetl_sn"]
        except (KeyError, IndexError, TypeError):
            continue
        found[first] = call["err_msg"]
    return found


def assert_calllog_closed(spool_path: Path) -> list[dict[str, Any]]:
    """No money call left open: every 2102/2103 answered (ok, failed) or reversed by a 2601 that
    answered definitely. Returns the rows."""
    rows = calllog_rows(spool_path)
    open_calls = [r for r in rows if r["infno"] in ("2102", "2103") and r["state"] in ("sent", "unknown")]
    assert open_calls == [], open_calls
    by_msgid = {r["msgid"]: r for r in rows}
    for r in rows:
        if r["state"] == "reversed":
            reversal = by_msgid.get(r["reversed_by"] or "")
            assert reversal is not None and reversal["infno"] == "2601" and reversal["omsgid"] == r["msgid"], r
    return rows

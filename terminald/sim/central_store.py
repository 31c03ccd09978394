"""The central simulator's books: what central stored and decided, in SQLite.

This is the reference peer of upstream protocol v1 (docs: the contract), so it
recomputes the hash chain itself instead of importing the terminal's code: a
bug in the terminal's canonical JSON must show up as `chain_broken` here.

Everything is persisted (records, the frozen-card list with its versions, the
not-insured list, downtime notices), so a simulator restarted on the same file
answers `cursor`, `duplicate` and `totals` exactly as before.

Revokes (docs/upstream.md, "The central simulator"): a revoke is accepted once per accepted
settlement of the same terminal, for exactly the negative of its total, and its settlement
is the negative of the original's, part by part (fund, account and cash are each <= 0 and
add up to the revoke's negative `total_fen`). A second revoke of the same original is
rejected `already_revoked`; a revoke of an unknown, rejected or revoke record is rejected
`original_not_found`. `totals` (contract: pinned) counts accepted records only and sums
their stored settlements, so an accepted revoke subtracts its original's amounts.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64
MAX_BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
  terminal_id TEXT NOT NULL, seq INTEGER NOT NULL, record_id TEXT NOT NULL UNIQUE,
  hash TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT NOT NULL,
  business_date TEXT NOT NULL, total_fen INTEGER NOT NULL, received_at TEXT NOT NULL,
  PRIMARY KEY (terminal_id, seq));
CREATE TABLE IF NOT EXISTS frozen_log (
  version INTEGER PRIMARY KEY, card_number TEXT NOT NULL, op TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS not_insured (card_number TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS downtime (start TEXT NOT NULL, end TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revokes (
  original_record_id TEXT PRIMARY KEY, record_id TEXT NOT NULL UNIQUE, terminal_id TEXT NOT NULL);
"""


class BatchError(Exception):
    """A batch stopped early: `sequence_gap` (409) or `chain_broken` (422)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", "error"))
        self.status = status
        self.body = body


class BadBatch(Exception):
    """The request body is not a v1 batch (400)."""


def record_hash(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CentralStore:
    """One SQLite file; thread-safe through one lock (the simulator is not a benchmark target)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        # Central commits before it answers: "commit then drop the response" must be real.
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- protocol ---------------------------------------------------------------------------------

    def cursor(self, terminal_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute(
                "SELECT seq, hash FROM records WHERE terminal_id = ? ORDER BY seq DESC LIMIT 1",
                (terminal_id,),
            ).fetchone()
        return (
            {"last_seq": row[0], "last_hash": row[1]} if row else {"last_seq": 0, "last_hash": GENESIS_HASH}
        )

    def apply_batch(self, terminal_id: str, body: Any) -> dict[str, Any]:
        """Apply a batch per the contract; raise BatchError (409/422) or BadBatch (400)."""
        records = _validate_batch(terminal_id, body)
        results: list[dict[str, Any]] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                ctx = self._batch_context(terminal_id)
                for record in records:
                    results.append(self._apply_one(terminal_id, record, results, ctx))
                self._conn.execute("COMMIT")
            except BatchError:
                # Stopping on a gap or a broken chain keeps what was decided before it.
                self._conn.execute("COMMIT")
                raise
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        last = self.cursor(terminal_id)["last_seq"]
        return {"results": results, "last_seq": last}

    def _batch_context(self, tid: str) -> dict[str, Any]:
        """What every record of a batch is checked against, read once inside the transaction."""
        last = self._conn.execute(
            "SELECT seq, hash FROM records WHERE terminal_id = ? ORDER BY seq DESC LIMIT 1", (tid,)
        ).fetchone()
        return {
            "tail": (last[0], last[1]) if last else (0, GENESIS_HASH),
            "frozen": self._frozen_set(),
            "not_insured": {r[0] for r in self._conn.execute("SELECT card_number FROM not_insured")},
        }

    def _apply_one(
        self, tid: str, record: dict[str, Any], so_far: list[dict[str, Any]], ctx: dict[str, Any]
    ) -> dict[str, Any]:
        stored = self._conn.execute(
            "SELECT seq, status, outcome FROM records WHERE record_id = ?", (record["record_id"],)
        ).fetchone()
        if stored is not None:
            outcome = json.loads(stored[2])
            return {
                "seq": stored[0],
                "record_id": record["record_id"],
                "status": "duplicate",
                "outcome": stored[1],
                **outcome,
            }
        last_seq, last_hash = ctx["tail"]
        if record["seq"] != last_seq + 1:
            raise BatchError(409, {"error": "sequence_gap", "expected_seq": last_seq + 1, "results": so_far})
        if record["prev_hash"] != last_hash or record_hash(record) != record["hash"]:
            raise BatchError(422, {"error": "chain_broken", "seq": record["seq"], "results": so_far})
        status, outcome = self._decide(tid, record, ctx)
        raw = record.get("payload")
        payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
        total = payload.get("total_fen", 0)
        self._conn.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                tid,
                record["seq"],
                record["record_id"],
                record["hash"],
                json.dumps(record, ensure_ascii=False),
                status,
                json.dumps(outcome, ensure_ascii=False),
                str(record.get("business_time", ""))[:10],
                total if isinstance(total, int) else 0,
                datetime.now(UTC).isoformat(timespec="milliseconds"),
            ),
        )
        if status == "accepted" and record.get("kind") == "revoke":
            # The primary key makes "revoked at most once" a fact of the books, not only of _decide.
            self._conn.execute(
                "INSERT INTO revokes VALUES (?, ?, ?)",
                (payload["original_record_id"], record["record_id"], tid),
            )
        ctx["tail"] = (record["seq"], record["hash"])
        return {"seq": record["seq"], "record_id": record["record_id"], "status": status, **outcome}

    def _decide(self, tid: str, record: dict[str, Any], ctx: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        payload = record.get("payload")
        if not isinstance(payload, dict) or record.get("kind") not in ("settlement", "revoke"):
            return _reject("invalid_record", "the record has no payload or an unknown kind")
        total = payload.get("total_fen", 0)
        if not isinstance(total, int) or isinstance(total, bool):
            return _reject("invalid_record", "total_fen must be an integer")
        if record["kind"] == "revoke":
            return self._decide_revoke(tid, record, payload, total)
        if total < 0:
            return _reject("invalid_record", "a settlement's total_fen must be a non-negative integer")
        raw_card = payload.get("card")
        card: dict[str, Any] = raw_card if isinstance(raw_card, dict) else {}
        number = card.get("card_number", "")
        if number in ctx["frozen"]:
            return _reject("card_frozen", "卡已冻结：参保人欠缴医保费")
        if number in ctx["not_insured"]:
            return _reject("not_insured", "未参保或参保状态异常")
        return "accepted", {"settlement": _settlement(record, total)}

    def _decide_revoke(
        self, tid: str, record: dict[str, Any], payload: dict[str, Any], total: int
    ) -> tuple[str, dict[str, Any]]:
        """A revoke cancels one accepted settlement of this terminal, once, for its whole amount."""
        original_id = payload.get("original_record_id")
        if not isinstance(original_id, str):
            return _reject("invalid_record", "a revoke needs payload.original_record_id")
        row = self._conn.execute(
            "SELECT status, outcome, total_fen, json_extract(body, '$.kind') FROM records"
            " WHERE record_id = ? AND terminal_id = ?",
            (original_id, tid),
        ).fetchone()
        if row is None or row[0] != "accepted" or row[3] != "settlement":
            return _reject("original_not_found", "no accepted settlement with that original_record_id")
        revoked = self._conn.execute(
            "SELECT record_id FROM revokes WHERE original_record_id = ?", (original_id,)
        ).fetchone()
        if revoked is not None:
            return _reject("already_revoked", f"the settlement was revoked already by {revoked[0]}")
        if total != -row[2]:
            return _reject("invalid_record", f"a revoke's total_fen must be {-row[2]}, the negative of its original's")
        original = json.loads(row[1])["settlement"]
        parts = {key: -int(original[key]) for key in _PARTS}
        return "accepted", {"settlement": {"central_ref": _central_ref(record), **parts}}

    def notices(self, frozen_since: int | None) -> dict[str, Any]:
        with self._lock:
            downtime = [
                {"start": r[0], "end": r[1], "reason": r[2]}
                for r in self._conn.execute("SELECT start, end, reason FROM downtime ORDER BY start")
            ]
            version = self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM frozen_log").fetchone()[0]
            if frozen_since is not None and 0 < frozen_since <= version:
                added: set[str] = set()
                removed: set[str] = set()
                for number, op in self._conn.execute(
                    "SELECT card_number, op FROM frozen_log WHERE version > ? ORDER BY version",
                    (frozen_since,),
                ):
                    (added if op == "add" else removed).add(number)
                    (removed if op == "add" else added).discard(number)
                frozen: dict[str, Any] = {
                    "version": version,
                    "added": sorted(added),
                    "removed": sorted(removed),
                }
            else:
                frozen = {"version": version, "card_numbers": sorted(self._frozen_set())}
        return {"downtime": downtime, "frozen_cards": frozen}

    def totals(self, terminal_id: str, date: str) -> dict[str, Any]:
        """The pinned `totals`: count and net sums over accepted records, every status counted."""
        sums = ", ".join(f"COALESCE(SUM(json_extract(outcome, '$.settlement.{key}')), 0)" for key in _SUMMED)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT status, COUNT(*), COALESCE(SUM(total_fen), 0), {sums} FROM records"
                " WHERE terminal_id = ? AND business_date = ? GROUP BY status",
                (terminal_id, date),
            ).fetchall()
        by_status = {"accepted": 0, "rejected": 0}
        accepted: tuple[Any, ...] = ("accepted", 0, 0, 0, 0)
        for row in rows:
            by_status[row[0]] = row[1]
            if row[0] == "accepted":
                accepted = tuple(row)
        return {
            "date": date,
            "count": accepted[1],
            "total_fen": accepted[2],
            "fund_paid_fen": accepted[3],
            "account_paid_fen": accepted[4],
            "by_status": by_status,
        }

    # -- control ----------------------------------------------------------------------------------

    def freeze(self, numbers: Sequence[str]) -> None:
        self._frozen_ops(numbers, "add")

    def unfreeze(self, numbers: Sequence[str]) -> None:
        self._frozen_ops(numbers, "remove")

    def _frozen_ops(self, numbers: Sequence[str], op: str) -> None:
        with self._lock:
            for number in numbers:
                self._conn.execute("INSERT INTO frozen_log (card_number, op) VALUES (?, ?)", (number, op))

    def set_not_insured(self, numbers: Sequence[str]) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM not_insured")
            self._conn.executemany("INSERT INTO not_insured VALUES (?)", [(n,) for n in numbers])

    def set_downtime(self, windows: Sequence[Mapping[str, str]]) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM downtime")
            self._conn.executemany(
                "INSERT INTO downtime VALUES (?, ?, ?)",
                [(w["start"], w["end"], w.get("reason", "")) for w in windows],
            )

    def regress(self, terminal_id: str, count: int) -> int:
        """Forget the last `count` records of a terminal, like a central restored from an old backup."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            cur = self._conn.execute(
                "DELETE FROM records WHERE terminal_id = ? AND seq > "
                "(SELECT COALESCE(MAX(seq), 0) - ? FROM records WHERE terminal_id = ?)",
                (terminal_id, count, terminal_id),
            )
            # A forgotten revoke revoked nothing: its original may be revoked again (by the same record re-sent).
            self._conn.execute(
                "DELETE FROM revokes WHERE terminal_id = ? AND record_id NOT IN"
                " (SELECT record_id FROM records WHERE terminal_id = ?)",
                (terminal_id, terminal_id),
            )
            self._conn.execute("COMMIT")
            return cur.rowcount

    def tamper_last_hash(self, terminal_id: str) -> None:
        """Make central's last stored hash differ from the terminal's: the next batch is chain_broken."""
        with self._lock:
            self._conn.execute(
                "UPDATE records SET hash = ? WHERE terminal_id = ? AND seq ="
                " (SELECT MAX(seq) FROM records WHERE terminal_id = ?)",
                ("f" * 64, terminal_id, terminal_id),
            )

    def records(self, terminal_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT body, status, outcome FROM records WHERE terminal_id = ? ORDER BY seq", (terminal_id,)
            ).fetchall()
        return [{**json.loads(b), "central_status": s, "central_outcome": json.loads(o)} for b, s, o in rows]

    def _frozen_set(self) -> set[str]:
        frozen: set[str] = set()
        for number, op in self._conn.execute("SELECT card_number, op FROM frozen_log ORDER BY version"):
            if op == "add":
                frozen.add(number)
            else:
                frozen.discard(number)
        return frozen


def _reject(code: str, message: str) -> tuple[str, dict[str, Any]]:
    return "rejected", {"reason": {"code": code, "message": message}}


_PARTS = ("fund_paid_fen", "account_paid_fen", "cash_paid_fen")
_SUMMED = ("fund_paid_fen", "account_paid_fen")


def _central_ref(record: Mapping[str, Any]) -> str:
    return f"C{record['seq']:08d}-{str(record['record_id'])[-8:]}"


def _settlement(record: Mapping[str, Any], total: int) -> dict[str, Any]:
    fund = total * 7 // 10
    return {
        "central_ref": _central_ref(record),
        "fund_paid_fen": fund,
        "account_paid_fen": 0,
        "cash_paid_fen": total - fund,
    }


_REQUIRED = {"record_id": str, "seq": int, "terminal_id": str, "prev_hash": str, "hash": str}


def _validate_batch(terminal_id: str, body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise BadBatch('expected {"records": [Record, ...]}')
    records: list[dict[str, Any]] = body["records"]
    if not 1 <= len(records) <= MAX_BATCH:
        raise BadBatch(f"a batch holds 1 to {MAX_BATCH} records")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadBatch(f"records[{index}] is not an object")
        for key, kind in _REQUIRED.items():
            if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
                raise BadBatch(f"records[{index}].{key} is missing or not a {kind.__name__}")
        if record["terminal_id"] != terminal_id:
            raise BadBatch(f"records[{index}].terminal_id does not match the URL")
        if index and record["seq"] != records[index - 1]["seq"] + 1:
            raise BadBatch("seq must be consecutive and ascending within a batch")
    return records

"""The platform simulator's books, in SQLite: the call log, sign-ins, settlements, revokes, lists.

Every call is one row of ``calls``, written in the same transaction as its effect, and that
transaction is committed (``synchronous = FULL``) before any byte of the answer is sent: a
"commit, then drop the answer" fault is real, and a restarted simulator on the same file knows
every msgid, settlement, revoke and reversal it had.

A settlement *stands* from its 2102 until a 2601 reverses it (``reversed_by``); it is *revoked*
while a standing (not reversed) 2103 points at it. A unique partial index keeps at most one
standing revoke per settlement.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["NhsaStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
  id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, path TEXT NOT NULL,
  msgid TEXT, infno TEXT, fixmedins_code TEXT, psn_no TEXT NOT NULL DEFAULT '',
  request TEXT NOT NULL, answer TEXT, infcode INTEGER, err_msg TEXT NOT NULL DEFAULT '',
  committed INTEGER NOT NULL DEFAULT 0, fault TEXT NOT NULL DEFAULT '', reversed_by TEXT);
CREATE INDEX IF NOT EXISTS calls_by_msgid ON calls (msgid);
CREATE TABLE IF NOT EXISTS sign_ins (
  sign_no TEXT PRIMARY KEY, fixmedins_code TEXT NOT NULL, opter_no TEXT NOT NULL,
  signed_at TEXT NOT NULL, expired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS settlements (
  setl_id TEXT PRIMARY KEY, mdtrt_id TEXT NOT NULL, call_id INTEGER NOT NULL, msgid TEXT NOT NULL UNIQUE,
  fixmedins_code TEXT NOT NULL, psn_no TEXT NOT NULL, person TEXT NOT NULL, insutype TEXT NOT NULL,
  clr_optins TEXT NOT NULL, begntime TEXT NOT NULL, setl_time TEXT NOT NULL, sale_id TEXT NOT NULL,
  medfee_fen INTEGER NOT NULL, fund_fen INTEGER NOT NULL, acct_fen INTEGER NOT NULL,
  cash_fen INTEGER NOT NULL, ded_fen INTEGER NOT NULL, balc_fen INTEGER NOT NULL,
  details TEXT NOT NULL, reversed_by TEXT);
CREATE TABLE IF NOT EXISTS revokes (
  setl_id TEXT PRIMARY KEY, original_setl_id TEXT NOT NULL REFERENCES settlements (setl_id),
  call_id INTEGER NOT NULL, msgid TEXT NOT NULL UNIQUE, fixmedins_code TEXT NOT NULL,
  psn_no TEXT NOT NULL, revoked_at TEXT NOT NULL, reversed_by TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS one_standing_revoke ON revokes (original_setl_id) WHERE reversed_by IS NULL;
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# A settlement in force: standing and not revoked (what 3201 counts and the account was charged for).
_IN_FORCE = (
    "s.reversed_by IS NULL AND NOT EXISTS (SELECT 1 FROM revokes r"
    " WHERE r.original_setl_id = s.setl_id AND r.reversed_by IS NULL)"
)
_SETTLEMENT_COLUMNS = (
    "setl_id", "mdtrt_id", "call_id", "msgid", "fixmedins_code", "psn_no", "person", "insutype", "clr_optins",
    "begntime", "setl_time", "sale_id", "medfee_fen", "fund_fen", "acct_fen", "cash_fen", "ded_fen", "balc_fen",
    "details", "reversed_by",
)
_REVOKE_COLUMNS = (
    "setl_id", "original_setl_id", "call_id", "msgid", "fixmedins_code", "psn_no", "revoked_at", "reversed_by",
)
_CALL_COLUMNS = (
    "id", "received_at", "path", "msgid", "infno", "fixmedins_code", "psn_no", "request", "answer", "infcode",
    "err_msg", "committed", "fault", "reversed_by",
)


class NhsaStore:
    """One SQLite file behind one re-entrant lock (the loop thread writes, test threads read)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.executescript(_SCHEMA)
        self._depth = 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (durable before it returns); nested use is a savepoint."""
        with self._lock:
            if self._depth:
                name = f"sp{self._depth}"
                self._conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield
                except BaseException:
                    self._conn.execute(f"ROLLBACK TO {name}")
                    self._conn.execute(f"RELEASE {name}")
                    raise
                finally:
                    self._depth -= 1
                self._conn.execute(f"RELEASE {name}")
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self._conn.execute("COMMIT")

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
            return row

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            cur = self._conn.execute(sql, params)
            return int(cur.lastrowid or 0) if sql.lstrip().upper().startswith("INSERT") else cur.rowcount

    # -- key/value (person lists, balances) ---------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        row = self._one("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(row[0]) if row else default

    def put(self, key: str, value: Any) -> None:
        self._run("INSERT INTO kv VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                  (key, json.dumps(value, ensure_ascii=False)))

    # -- the call log --------------------------------------------------------------------------------

    def open_call(self, received_at: str, path: str, msgid: str | None, infno: str | None,
                  fixmedins_code: str | None, request: str) -> int:
        return self._run(
            "INSERT INTO calls (received_at, path, msgid, infno, fixmedins_code, request) VALUES (?, ?, ?, ?, ?, ?)",
            (received_at, path, msgid, infno, fixmedins_code, request),
        )

    def close_call(self, call_id: int, *, answer: str | None, infcode: int | None, err_msg: str,
                   committed: bool, fault: str, psn_no: str) -> None:
        self._run(
            "UPDATE calls SET answer = ?, infcode = ?, err_msg = ?, committed = ?, fault = ?, psn_no = ? WHERE id = ?",
            (answer, infcode, err_msg, int(committed), fault, psn_no, call_id),
        )

    def msgid_seen_before(self, msgid: str, call_id: int) -> bool:
        return self._one("SELECT 1 FROM calls WHERE msgid = ? AND id < ? LIMIT 1", (msgid, call_id)) is not None

    def first_call(self, msgid: str) -> dict[str, Any] | None:
        row = self._one(f"SELECT {', '.join(_CALL_COLUMNS)} FROM calls WHERE msgid = ? ORDER BY id LIMIT 1",
                        (msgid,))
        return dict(zip(_CALL_COLUMNS, row, strict=True)) if row else None

    def mark_call_reversed(self, call_id: int, by_msgid: str) -> None:
        self._run("UPDATE calls SET reversed_by = ? WHERE id = ?", (by_msgid, call_id))

    def calls(self, infno: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE infno = ?", (infno,)) if infno else ("", ())
        rows = self._all(f"SELECT {', '.join(_CALL_COLUMNS)} FROM calls {where} ORDER BY id", params)
        return [dict(zip(_CALL_COLUMNS, r, strict=True)) for r in rows]

    # -- sign-ins ------------------------------------------------------------------------------------

    def add_sign_in(self, sign_no: str, fixmedins_code: str, opter_no: str, signed_at: str) -> None:
        self._run("INSERT INTO sign_ins (sign_no, fixmedins_code, opter_no, signed_at) VALUES (?, ?, ?, ?)",
                  (sign_no, fixmedins_code, opter_no, signed_at))

    def sign_in(self, sign_no: str) -> tuple[str, bool] | None:
        """(fixmedins_code, expired) of a sign-in, or None."""
        row = self._one("SELECT fixmedins_code, expired FROM sign_ins WHERE sign_no = ?", (sign_no,))
        return (row[0], bool(row[1])) if row else None

    def expire_sign_ins(self) -> int:
        return self._run("UPDATE sign_ins SET expired = 1 WHERE expired = 0")

    # -- settlements and revokes ---------------------------------------------------------------------

    def add_settlement(self, row: dict[str, Any]) -> None:
        values = {**row, "details": json.dumps(row["details"], ensure_ascii=False), "reversed_by": None}
        self._run(f"INSERT INTO settlements ({', '.join(_SETTLEMENT_COLUMNS)}) VALUES"
                  f" ({', '.join('?' * len(_SETTLEMENT_COLUMNS))})",
                  tuple(values[c] for c in _SETTLEMENT_COLUMNS))

    def add_revoke(self, row: dict[str, Any]) -> None:
        values = {**row, "reversed_by": None}
        self._run(f"INSERT INTO revokes ({', '.join(_REVOKE_COLUMNS)}) VALUES"
                  f" ({', '.join('?' * len(_REVOKE_COLUMNS))})",
                  tuple(values[c] for c in _REVOKE_COLUMNS))

    def settlement(self, setl_id: str) -> dict[str, Any] | None:
        found = self.settlements("WHERE s.setl_id = ?", (setl_id,))
        return found[0] if found else None

    def settlement_by_msgid(self, msgid: str) -> dict[str, Any] | None:
        found = self.settlements("WHERE s.msgid = ?", (msgid,))
        return found[0] if found else None

    def revoke_by_msgid(self, msgid: str) -> dict[str, Any] | None:
        found = self.revokes("WHERE msgid = ?", (msgid,))
        return found[0] if found else None

    def standing_revoke_of(self, setl_id: str) -> dict[str, Any] | None:
        found = self.revokes("WHERE original_setl_id = ? AND reversed_by IS NULL", (setl_id,))
        return found[0] if found else None

    def reverse_settlement(self, setl_id: str, by_msgid: str) -> None:
        self._run("UPDATE settlements SET reversed_by = ? WHERE setl_id = ?", (by_msgid, setl_id))

    def reverse_revoke(self, setl_id: str, by_msgid: str) -> None:
        self._run("UPDATE revokes SET reversed_by = ? WHERE setl_id = ?", (by_msgid, setl_id))

    def settlements(self, where: str = "", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Settlements (call order) with ``status`` ("standing" | "reversed") and ``revoked_by``."""
        rows = self._all(
            f"SELECT {', '.join('s.' + c for c in _SETTLEMENT_COLUMNS)},"
            " (SELECT r.setl_id FROM revokes r WHERE r.original_setl_id = s.setl_id AND r.reversed_by IS NULL)"
            f" FROM settlements s {where} ORDER BY s.call_id",
            params,
        )
        result = []
        for row in rows:
            item = dict(zip(_SETTLEMENT_COLUMNS, row[:-1], strict=True))
            item["details"] = json.loads(item["details"])
            item["status"] = "reversed" if item["reversed_by"] else "standing"
            item["revoked_by"] = row[-1]
            result.append(item)
        return result

    def revokes(self, where: str = "", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        rows = self._all(f"SELECT {', '.join(_REVOKE_COLUMNS)} FROM revokes {where} ORDER BY call_id", params)
        result = []
        for row in rows:
            item = dict(zip(_REVOKE_COLUMNS, row, strict=True))
            item["status"] = "reversed" if item["reversed_by"] else "standing"
            result.append(item)
        return result

    def acct_charged(self, person: str) -> int:
        """Personal-account money of settlements in force (standing, not revoked)."""
        row = self._one(f"SELECT COALESCE(SUM(s.acct_fen), 0) FROM settlements s WHERE s.person = ? AND {_IN_FORCE}",
                        (person,))
        return int(row[0]) if row else 0

    def deductible_used(self, person: str, year: str) -> int:
        row = self._one(
            f"SELECT COALESCE(SUM(s.ded_fen), 0) FROM settlements s WHERE s.person = ?"
            f" AND substr(s.begntime, 1, 4) = ? AND {_IN_FORCE}",
            (person, year),
        )
        return int(row[0]) if row else 0

    def totals(self, fixmedins_code: str, insutype: str, begin: str, end: str, *, by: str,
               setl_optins: str | None) -> tuple[int, int, int, int]:
        """(count, medfee, fund, acct) over settlements in force whose date is in [begin, end]."""
        column = "s.setl_time" if by == "setl_time" else "s.begntime"
        optins = " AND s.clr_optins = ?" if setl_optins is not None else ""
        row = self._one(
            "SELECT COUNT(*), COALESCE(SUM(s.medfee_fen), 0), COALESCE(SUM(s.fund_fen), 0),"
            f" COALESCE(SUM(s.acct_fen), 0) FROM settlements s WHERE s.fixmedins_code = ? AND s.insutype = ?"
            f" AND substr({column}, 1, 10) BETWEEN ? AND ?{optins} AND {_IN_FORCE}",
            (fixmedins_code, insutype, begin, end, *([setl_optins] if setl_optins is not None else [])),
        )
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

"""The call log: every call to the platform, written before it is sent and completed after.

It lives in the spool's SQLite file under its own migration namespace ("nhsa"), one row per
call (`nhsa_calls`):

    msgid            PRIMARY KEY; also split into msgid_prefix (code + second) and msgid_counter,
                     UNIQUE together: the counter state of msgid.py
    infno            the transaction; omsgid for a 2601: the msgid it reverses
    record_id        the spool record the call is for (NULL for 9001, 3201)
    psn_no, insuplc_admdvs   the person, as 1101 gave them: a 2601 after a restart needs both
    state            see below
    inf_refmsgid     the answer's, when there was one
    err_msg          the -1 message or the reason of an unknown outcome, masked (redact.py)
    sent_at, completed_at, reversed_at (UTC), reversed_by (the msgid of the 2601 that settled it)
    output           the `output` of an `ok` answer, as JSON text, for the calls the client keeps
                     it of (money calls: a crash between "ok logged" and "outcome written to the
                     spool" is finished from it, never by settling twice); NULL otherwise

States and the only transitions allowed:

    begin ──► sent ──complete──► ok        infcode 0: the call took effect (it stands)
                 │ ├──complete──► failed    infcode -1: a definite answer, it did nothing
                 │ └──complete──► unknown   no definite answer (UnknownOutcome)
                 └──────┬──────────────────── (a crash leaves the row `sent`: read it as unknown)
                        ▼
          sent | unknown ──mark_reversed(by=2601's msgid)──► reversed
                        a 2601 for it answered definitely (0: reversed; -1: nothing to reverse);
                        the call does not stand, and may be tried again with a new msgid

`begin` returns only once the row is committed (synchronous=FULL; through the spool's writer
when the log is made with a `Spool`, else on a connection of its own): a call is never sent
without its row. `abegin`, `acomplete` and `amark_reversed` are the same writes for an event
loop: queued to the spool's writer, awaited until committed (a thread only without a spool).
`unfinished(infnos)` is what a restart must settle before any retry: every call of those
transactions left `sent` or `unknown` (ask with the profile's `reversible_infnos`; the others,
1101 or 9001, change nothing and need no reversal).

Writes raise SpoolError when the file refuses them; CallLogError for a transition not allowed.

`prune_calls` removes finished calls past the spool's retention (the daily retention job): a
row for every call, sign-ins and probes included, would otherwise grow the file for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from spool import Spool, SpoolError, connect, migrate
from terminald.upstream.nhsa.errors import CallLogError
from terminald.upstream.nhsa.msgid import (
    check_fixmedins_code,
    format_msgid,
    msgid_prefix,
    next_counter,
    slot_range,
)
from terminald.upstream.nhsa.redact import mask_text

__all__ = ["MIGRATIONS", "NAMESPACE", "TABLE", "Call", "CallLog", "CallState", "prune_calls"]

NAMESPACE = "nhsa"
TABLE = "nhsa_calls"
MIGRATIONS = [
    """
    CREATE TABLE nhsa_calls (
      msgid TEXT PRIMARY KEY,
      msgid_prefix TEXT NOT NULL,
      msgid_counter INTEGER NOT NULL CHECK (msgid_counter BETWEEN 1 AND 9999),
      infno TEXT NOT NULL,
      record_id TEXT,
      psn_no TEXT NOT NULL DEFAULT '',
      insuplc_admdvs TEXT NOT NULL DEFAULT '',
      omsgid TEXT,
      state TEXT NOT NULL CHECK (state IN ('sent', 'ok', 'failed', 'unknown', 'reversed')),
      inf_refmsgid TEXT NOT NULL DEFAULT '',
      err_msg TEXT NOT NULL DEFAULT '',
      sent_at TEXT NOT NULL,
      completed_at TEXT,
      reversed_at TEXT,
      reversed_by TEXT,
      UNIQUE (msgid_prefix, msgid_counter));
    CREATE INDEX nhsa_calls_record ON nhsa_calls (record_id);
    CREATE INDEX nhsa_calls_open ON nhsa_calls (state) WHERE state IN ('sent', 'unknown');
    """,
    # Step 2: the answer of a money call that took effect, so that a restart applies it.
    "ALTER TABLE nhsa_calls ADD COLUMN output TEXT;",
]

# The calls whose `ok` means the platform holds the record's settlement (2102) or revoke (2103).
_STANDING_INFNOS = ("2102", "2103")
CallState = Literal["sent", "ok", "failed", "unknown", "reversed"]
_COLUMNS = ("msgid, infno, record_id, psn_no, insuplc_admdvs, omsgid, state, inf_refmsgid, err_msg, "
            "sent_at, completed_at, reversed_at, reversed_by, output")
_INFNO = re.compile(r"[0-9]{4}")
_ADMDVS = re.compile(r"([0-9]{6})?")
_MAX_FIELD = 64
T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    msgid: str
    infno: str
    record_id: str | None
    psn_no: str
    insuplc_admdvs: str
    omsgid: str | None
    state: CallState
    inf_refmsgid: str
    err_msg: str
    sent_at: str
    completed_at: str | None
    reversed_at: str | None
    reversed_by: str | None
    output: str | None = None  # JSON text of an ok answer's `output` (money calls only)

    @property
    def open(self) -> bool:
        """Left `sent` or `unknown`: it may stand, and must be reversed before a retry."""
        return self.state in ("sent", "unknown")

    @property
    def stands(self) -> bool:
        """Answered infcode 0 (and so never reversed: only open calls are)."""
        return self.state == "ok"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CallLog:
    def __init__(
        self,
        target: Spool | str | Path,
        *,
        fixmedins_code: str,
        tz: tzinfo | str = "Asia/Shanghai",
        clock: Callable[[], datetime] = _utc_now,
        msgid_slot: str = "",
    ) -> None:
        """The log in `target`'s file (migrated first): a `Spool`, whose writer then does the
        writes, or a path, written on a connection of this object's own (or through the spool
        this process has open on that path, if any). `tz` is the terminal's
        zone (msgid time); `clock` gives the aware current time (tests freeze it); `msgid_slot`
        the digits leading this terminal's msgid counters (`[nhsa] msgid_slot`)."""
        self._code = check_fixmedins_code(fixmedins_code)
        self._slot = msgid_slot
        self._slot_range = slot_range(msgid_slot)
        self._tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._clock = clock
        self.path = target.path if isinstance(target, Spool) else Path(target)
        # A spool open on this file in this process is its one writer: write through it.
        self._spool = target if isinstance(target, Spool) else Spool.opened(self.path)
        self._lock = threading.Lock()
        conn = connect(self.path)
        try:
            migrate(conn, NAMESPACE, MIGRATIONS)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    @property
    def tz(self) -> tzinfo:
        """The terminal's zone: msgid times, and the business day of reconciliation."""
        return self._tz

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> CallLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CallLogError("the call log is closed")
        return self._conn

    def _write(self, fn: Callable[[sqlite3.Connection], T], during: str) -> T:
        """Run `fn` in one committed (durable) transaction: the spool's writer, or our own."""
        if self._spool is not None:
            return self._spool.write(fn)
        with self._lock:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise SpoolError(f"call log: {during} failed on {self.path}: {exc}") from exc
                raise

    async def _awrite(self, fn: Callable[[sqlite3.Connection], T], during: str) -> T:
        """`_write` from an event loop, answered once committed. Queued to the spool's writer
        with a future rather than through a thread that blocks on it: two thread hops less per
        write, a handful per call (the re-entry of a backlog is bound by the loop's CPU)."""
        spool = self._spool
        if spool is None:
            return await asyncio.to_thread(self._write, fn, during)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def settle(result: T, error: BaseException | None) -> None:
            if done.done():  # the caller was cancelled: the write stands all the same (as in a thread)
                return
            if error is None:
                done.set_result(result)
            else:
                done.set_exception(error)

        def on_done(result: T, error: BaseException | None) -> None:  # on the writer thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, result, error)

        spool.write_later(fn, on_done)
        return await done

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Call]:
        with self._lock:
            try:
                rows = self._live().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise SpoolError(f"call log: read failed on {self.path}: {exc}") from exc
        return [Call(*row) for row in rows]

    def _stamp(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="milliseconds")

    # -- writes -----------------------------------------------------------------------------------

    def begin(
        self,
        infno: str,
        *,
        record_id: str | None = None,
        psn_no: str = "",
        insuplc_admdvs: str = "",
        omsgid: str | None = None,
    ) -> str:
        """Write the row of a call about to be sent (state `sent`) and return its new msgid.

        Returns once the row is committed: send only after this returned.
        """
        return self._write(self._insert(infno, record_id, psn_no, insuplc_admdvs, omsgid), f"begin of a {infno}")

    async def abegin(
        self,
        infno: str,
        *,
        record_id: str | None = None,
        psn_no: str = "",
        insuplc_admdvs: str = "",
        omsgid: str | None = None,
    ) -> str:
        """`begin` from an event loop: the msgid once the row is committed."""
        return await self._awrite(self._insert(infno, record_id, psn_no, insuplc_admdvs, omsgid),
                                  f"begin of a {infno}")

    def _insert(self, infno: str, record_id: str | None, psn_no: str, insuplc_admdvs: str,
                omsgid: str | None) -> Callable[[sqlite3.Connection], str]:
        """The checked arguments of `begin` as the write that inserts the row."""
        if not isinstance(infno, str) or not _INFNO.fullmatch(infno):
            raise CallLogError(f"infno must be 4 digits, not {infno!r}")
        if not _ADMDVS.fullmatch(insuplc_admdvs):
            raise CallLogError("insuplc_admdvs must be 6 digits or empty")
        if (infno == "2601") != (omsgid is not None):
            raise CallLogError("omsgid is given for a 2601 (the msgid it reverses), and only then")
        if len(psn_no) > _MAX_FIELD or (record_id is not None and len(record_id) > _MAX_FIELD):
            raise CallLogError("psn_no or record_id is too long")

        def insert(conn: sqlite3.Connection) -> str:
            now = self._clock()  # read here, in the transaction: msgid time and sent_at agree
            prefix = msgid_prefix(self._code, now, self._tz)
            # Only this terminal's slot: another terminal of the institution counts in its own.
            (highest,) = conn.execute(
                f"SELECT MAX(msgid_counter) FROM {TABLE} WHERE msgid_prefix = ? AND msgid_counter BETWEEN ? AND ?",
                (prefix, *self._slot_range),
            ).fetchone()
            counter = next_counter(highest, self._slot)
            msgid = format_msgid(prefix, counter)
            conn.execute(
                f"INSERT INTO {TABLE} (msgid, msgid_prefix, msgid_counter, infno, record_id, psn_no,"
                " insuplc_admdvs, omsgid, state, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'sent', ?)",
                (msgid, prefix, counter, infno, record_id, psn_no, insuplc_admdvs, omsgid,
                 now.astimezone(UTC).isoformat(timespec="milliseconds")),
            )
            return msgid

        return insert

    def complete(
        self,
        msgid: str,
        state: Literal["ok", "failed", "unknown"],
        *,
        inf_refmsgid: str = "",
        err_msg: str = "",
        redact: Iterable[str] = (),
        output: str | None = None,
    ) -> None:
        """Record the outcome of a `sent` call. Completing again with the same state is a no-op.

        `output`: the JSON text of an ok answer's output, kept for a restart to apply."""
        self._write(self._update(msgid, state, inf_refmsgid, err_msg, redact, output), f"completion of {msgid}")

    async def acomplete(
        self,
        msgid: str,
        state: Literal["ok", "failed", "unknown"],
        *,
        inf_refmsgid: str = "",
        err_msg: str = "",
        redact: Iterable[str] = (),
        output: str | None = None,
    ) -> None:
        """`complete` from an event loop: returns once committed."""
        await self._awrite(self._update(msgid, state, inf_refmsgid, err_msg, redact, output),
                           f"completion of {msgid}")

    def _update(self, msgid: str, state: Literal["ok", "failed", "unknown"], inf_refmsgid: str, err_msg: str,
                redact: Iterable[str], output: str | None) -> Callable[[sqlite3.Connection], None]:
        """The checked arguments of `complete` as the write that records the outcome."""
        if state not in ("ok", "failed", "unknown"):
            raise CallLogError(f"a call completes as ok, failed or unknown, not {state!r}")
        if output is not None and state != "ok":
            raise CallLogError("only an ok answer has an output to keep")
        masked = mask_text(err_msg, redact)
        stamp = self._stamp()

        def update(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                f"UPDATE {TABLE} SET state = ?, inf_refmsgid = ?, err_msg = ?, completed_at = ?, output = ?"
                " WHERE msgid = ? AND state = 'sent'",
                (state, inf_refmsgid[:_MAX_FIELD], masked, stamp, output, msgid),
            )
            if cur.rowcount == 0:
                current = _state(conn, msgid)
                if current != state:
                    raise CallLogError(f"call {msgid} is {current}: it cannot complete as {state}")

        return update

    def mark_reversed(self, msgid: str, *, by: str) -> None:
        """`msgid` (left sent or unknown) does not stand: the 2601 `by` answered for it definitely
        (it must be in the log: a 2601 with omsgid = msgid, completed ok or failed)."""
        self._write(self._reversal(msgid, by), f"reversal of {msgid}")

    async def amark_reversed(self, msgid: str, *, by: str) -> None:
        """`mark_reversed` from an event loop: returns once committed."""
        await self._awrite(self._reversal(msgid, by), f"reversal of {msgid}")

    def _reversal(self, msgid: str, by: str) -> Callable[[sqlite3.Connection], None]:
        stamp = self._stamp()

        def update(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                f"SELECT infno, omsgid, state FROM {TABLE} WHERE msgid = ?", (by,)
            ).fetchone()
            if row is None or row[0] != "2601" or row[1] != msgid:
                raise CallLogError(f"{by} is not a 2601 of {msgid} in the call log")
            if row[2] not in ("ok", "failed"):
                raise CallLogError(f"the 2601 {by} has no definite answer ({row[2]})")
            cur = conn.execute(
                f"UPDATE {TABLE} SET state = 'reversed', reversed_at = ?, reversed_by = ?"
                " WHERE msgid = ? AND state IN ('sent', 'unknown')",
                (stamp, by, msgid),
            )
            if cur.rowcount == 0:
                current = _state(conn, msgid)
                if current != "reversed":
                    raise CallLogError(f"call {msgid} is {current}: only sent or unknown calls are reversed")

        return update

    # -- reads ------------------------------------------------------------------------------------

    def get(self, msgid: str) -> Call | None:
        found = self._read(f"SELECT {_COLUMNS} FROM {TABLE} WHERE msgid = ?", (msgid,))
        return found[0] if found else None

    def unfinished(self, infnos: Collection[str] | None = None) -> list[Call]:
        """Calls left `sent` or `unknown`, oldest first (of `infnos` only, when given)."""
        sql = f"SELECT {_COLUMNS} FROM {TABLE} WHERE state IN ('sent', 'unknown')"
        params: tuple[Any, ...] = ()
        if infnos is not None:
            wanted = sorted(infnos)
            if not wanted:
                return []
            sql += f" AND infno IN ({', '.join('?' * len(wanted))})"
            params = tuple(wanted)
        return self._read(sql + " ORDER BY rowid", params)

    def for_record(self, record_id: str) -> list[Call]:
        """Every call made for the spool record `record_id`, oldest first."""
        return self._read(f"SELECT {_COLUMNS} FROM {TABLE} WHERE record_id = ? ORDER BY rowid", (record_id,))

    @staticmethod
    def standing_records(path: str | Path) -> set[str]:
        """The records whose settlement or revoke (2102/2103) stands at the platform (`ok`), from
        the log in the spool file at `path`; none when there is no log yet.

        Read-only, on a connection of its own and without an instance: making a `CallLog` would
        migrate the file, and the re-entry book asks this at start, before the adapter (the log's
        owner) exists, and whatever the protocol. SpoolError when the file cannot be read."""
        conn = connect(path)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (TABLE,)).fetchone() is None:
                return set()
            marks = ", ".join("?" * len(_STANDING_INFNOS))
            rows = conn.execute(f"SELECT DISTINCT record_id FROM {TABLE} WHERE state = 'ok'"
                                f" AND record_id IS NOT NULL AND infno IN ({marks})", _STANDING_INFNOS).fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(f"call log: read failed on {path}: {exc}") from exc
        finally:
            conn.close()
        return {str(row[0]) for row in rows}


def prune_calls(spool: Spool, before: datetime, *, chunk: int = 2000) -> int:
    """Delete up to `chunk` finished calls (ok, failed, reversed) last touched before `before`,
    through the spool's writer; how many went. Only when the file has the call log (namespace
    "nhsa"). Never a `sent` or `unknown` call (it may stand: a 2601 still needs it), nor an `ok`
    call of a record still pending (its kept answer is what a restart applies instead of
    settling again). Called by the daily retention job (terminald/retention.py), in chunks."""
    if before.tzinfo is None:
        raise ValueError("before must be an aware time")
    cutoff = before.astimezone(UTC).isoformat(timespec="milliseconds")

    def delete(conn: sqlite3.Connection) -> int:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone() is None:
            return 0
        cur = conn.execute(
            f"DELETE FROM {TABLE} WHERE rowid IN (SELECT c.rowid FROM {TABLE} c"
            " WHERE c.state IN ('ok', 'failed', 'reversed')"
            " AND COALESCE(c.reversed_at, c.completed_at, c.sent_at) < ?"
            " AND NOT (c.state = 'ok' AND c.record_id IS NOT NULL AND EXISTS"
            "  (SELECT 1 FROM records r WHERE r.record_id = c.record_id AND r.status = 'pending'))"
            " ORDER BY c.rowid LIMIT ?)",
            (cutoff, chunk),
        )
        return cur.rowcount

    return spool.write(delete)


def _state(conn: sqlite3.Connection, msgid: str) -> str:
    row = conn.execute(f"SELECT state FROM {TABLE} WHERE msgid = ?", (msgid,)).fetchone()
    if row is None:
        raise CallLogError(f"no call {msgid} in the call log")
    return str(row[0])

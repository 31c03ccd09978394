"""``Spool``: the durable, ordered, hash-chained outbox of one terminal.

Writes go through the single writer thread (``spool.writer``), the spool's own and,
through ``write``/``write_later``, those of other namespaces keeping tables in the same
file; reads use pooled connections side by side (WAL); a background
``PRAGMA quick_check`` runs after open without delaying readiness. Once corruption is seen (at open, in the
background check, by ``check()`` or as SQLITE_CORRUPT on any statement) the
spool stops writing and reports ``integrity == "corrupt"``: it never repairs.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from spool import maintenance, queries, restored, transitions
from spool.chain import canonical_json
from spool.errors import (
    InvalidRequest,
    NotFound,
    SpoolClosed,
    SpoolCorrupt,
    SpoolError,
)
from spool.records import (
    RECORD_COLUMNS,
    RESOLUTIONS,
    STATUSES,
    AppendRequest,
    AppendResult,
    ChangeMark,
    Changes,
    CheckReport,
    Outcome,
    Record,
    SpoolStats,
    Totals,
    Transition,
)
from spool.schema import NAMESPACE, STEPS
from spool.store import connect, migrate, schema_version, translate
from spool.witness import Witness, read_witness
from spool.writer import AppendDone, PendingSummary, WriteDone, Writer

__all__ = ["PendingSummary", "Spool", "WriteDone"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_EXPECTED_TABLES = {"records", "history", "meta", "checkpoint", "schema_migrations", "status_totals"}
# The expression schema step 4 indexes: a query must use it as written to use that index.
POS_ORDER_ID = "CASE WHEN json_valid(payload) THEN json_extract(payload, '$.meta.pos_order_id') END"

# The Spool this process opened on each file (the first, if more than one), until it closes:
# see Spool.opened.
_opened: weakref.WeakValueDictionary[str, Spool] = weakref.WeakValueDictionary()
_opened_lock = threading.Lock()


class Spool:
    """One terminal's outbox in one SQLite file. Thread-safe."""

    path: Path
    terminal_id: str
    integrity: str
    integrity_error: str | None

    def __init__(self, path: Path, terminal_id: str) -> None:
        # Use Spool.open(): construction alone does not touch the file.
        self.path = path
        self.terminal_id = terminal_id
        self.integrity = "checking"
        self.integrity_error = None
        # Readers are pooled, one per concurrent caller: WAL lets them read side by side,
        # and a slow query (a sum over a long backlog) must not hold up every other read.
        self._read_lock = threading.Lock()  # guards the pool lists, never a query
        self._idle_readers: list[sqlite3.Connection] = []
        self._writer: Writer | None = None
        self._checker: threading.Thread | None = None
        self._check_conn: sqlite3.Connection | None = None
        self._closed = False
        self._readonly = False

    # -- open / close ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path,
        terminal_id: str,
        *,
        on_commit: Callable[[float], None] | None = None,
        background_check: bool = True,
    ) -> Spool:
        if not isinstance(terminal_id, str) or not terminal_id:
            raise InvalidRequest("terminal_id must be a non-empty string")
        spool = cls(Path(path), terminal_id)
        spool._open(on_commit)
        with _opened_lock:
            _opened.setdefault(_key(spool.path), spool)
        if not background_check:
            spool.integrity = "ok"
            return spool
        try:
            spool._start_background_check()
        except BaseException:
            spool.close()
            raise
        return spool

    @classmethod
    def open_readonly(cls, path: str | Path, terminal_id: str) -> Spool:
        """Open an existing spool for reading only: what `terminald spool list/show/check/export`
        use, beside a running daemon or as root on the daemon's file.

        Nothing is created or changed: no migration (a schema of another version is refused with
        SpoolError: the daemon migrates it when it starts), no claim of the terminal id, no
        writer thread, no ``-seq`` witness, no lock, and no ``-wal``/``-shm`` (``store.connect``,
        ``readonly``). The reads, ``stats``/``totals``, ``check`` and ``export`` work; every
        write (and ``pending_summary``, the writer's) raises SpoolClosed. The open-time checks
        are those of ``open``: the schema, the terminal, a gapless chain whose newest records
        hash and link, the witness. Corruption found is reported (``integrity``), never logged
        as stopping appends: there are none here.
        """
        if not isinstance(terminal_id, str) or not terminal_id:
            raise InvalidRequest("terminal_id must be a non-empty string")
        spool = cls(Path(path), terminal_id)
        spool._readonly = True
        conn = connect(spool.path, readonly=True)
        try:
            spool._verify_readonly(conn)
        except sqlite3.Error as exc:
            conn.close()
            error = translate(exc, spool.path, "open")
            if type(error) is SpoolError and isinstance(exc, sqlite3.DatabaseError):
                error = SpoolCorrupt(f"{spool.path}: schema unreadable ({exc})")
            raise error from exc
        except BaseException:
            conn.close()
            raise
        spool._idle_readers.append(conn)
        spool.integrity = "ok"
        return spool

    def _verify_readonly(self, conn: sqlite3.Connection) -> None:
        path = self.path
        applied = schema_version(conn, NAMESPACE)
        if applied != len(STEPS):
            newer = applied > len(STEPS)
            raise SpoolError(
                f"{path}: schema {NAMESPACE!r} is at step {applied}, this version of terminald knows "
                f"{len(STEPS)}: " + ("the file was written by a newer terminald" if newer else
                                     "start terminald (it migrates the file when it opens it); "
                                     "reading never changes the file")
            )
        self._verify_schema(conn)
        row = conn.execute("SELECT value FROM meta WHERE key = 'terminal_id'").fetchone()
        if row is not None and row[0] != self.terminal_id:
            raise SpoolError(f"{path} holds the spool of terminal {row[0]!r}, not {self.terminal_id!r}")
        # The witness first: a writer beside us writes it only after its commit, so a tail read
        # after it is never behind it. Read the other way round, an append landing in between
        # looks like a truncated file.
        witness = read_witness(path)
        tail_seq, _ = maintenance.verify_tail(conn, path, self.terminal_id)
        if witness is not None and witness[0] > tail_seq:
            raise SpoolCorrupt(
                f"{path}: appends up to seq {witness[0]} were acknowledged but the file ends at seq "
                f"{tail_seq} (truncated or replaced WAL/file?)"
            )

    @property
    def readonly(self) -> bool:
        """Opened with ``open_readonly``: reads only."""
        return self._readonly

    @staticmethod
    def opened(path: str | Path) -> Spool | None:
        """The Spool this process has open on ``path`` (the first opened, if several), else None.

        So that the parts of a process keeping their own tables in the spool's file (the
        daemon's events, print jobs) write through its one writer thread (``write``) instead
        of taking the file's write lock on connections of their own.
        """
        with _opened_lock:
            return _opened.get(_key(Path(path)))

    def _open(self, on_commit: Callable[[float], None] | None) -> None:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise translate(exc, path, "open") from exc
        witness = read_witness(path)
        conn = connect(path)
        try:
            migrate(conn, NAMESPACE, STEPS)
            self._verify_schema(conn)
            self._claim_terminal(conn)
            tail_seq, _ = maintenance.verify_tail(conn, path, self.terminal_id)
            if witness is not None and witness[0] > tail_seq:
                raise SpoolCorrupt(
                    f"{path}: appends up to seq {witness[0]} were acknowledged but the file ends at seq "
                    f"{tail_seq} (truncated or replaced WAL/file?); delete {path.name}-seq only if this "
                    "older state was restored on purpose"
                )
        except sqlite3.Error as exc:
            conn.close()
            error = translate(exc, path, "open")
            if type(error) is SpoolError and isinstance(exc, sqlite3.DatabaseError):
                error = SpoolCorrupt(f"{path}: schema unreadable ({exc})")
            raise error from exc
        except BaseException:
            conn.close()
            raise
        conn.close()
        self._writer = Writer(path, self.terminal_id, Witness(path), on_commit, self._mark_corrupt)
        try:
            self._idle_readers.append(connect(path))
        except SpoolError:
            self._writer.close()
            raise

    def _verify_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = _EXPECTED_TABLES - tables
        if version != len(STEPS) or missing:
            raise SpoolCorrupt(
                f"{self.path}: unexpected schema (user_version {version}, missing tables {sorted(missing)})"
            )

    def _claim_terminal(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'terminal_id'").fetchone()
        if row is None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO meta (key, value) VALUES ('terminal_id', ?)", (self.terminal_id,))
            conn.execute("COMMIT")
        elif row[0] != self.terminal_id:
            raise SpoolError(f"{self.path} holds the spool of terminal {row[0]!r}, not {self.terminal_id!r}")

    def _start_background_check(self) -> None:
        self._check_conn = connect(self.path, readonly=True)

        def run(conn: sqlite3.Connection) -> None:
            try:
                lines = [row[0] for row in conn.execute("PRAGMA quick_check")]
            except sqlite3.Error as exc:
                if not self._closed:
                    self._mark_corrupt(f"{self.path}: quick_check failed ({exc})")
                return
            if lines != ["ok"]:
                self._mark_corrupt(f"{self.path}: quick_check: {'; '.join(lines[:5])}")
            elif self.integrity == "checking":
                self.integrity = "ok"

        self._checker = threading.Thread(
            target=run, args=(self._check_conn,), name="spool-quick-check", daemon=True
        )
        self._checker.start()

    def _mark_corrupt(self, message: str) -> None:
        if self.integrity != "corrupt" and not self._readonly:
            log.error("spool corrupt, appends stopped: %s", message)
        self.integrity = "corrupt"
        self.integrity_error = message
        if self._writer is not None and self._writer.corrupt is None:
            self._writer.corrupt = message

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _opened_lock:
            if _opened.get(_key(self.path)) is self:
                del _opened[_key(self.path)]
        if self._check_conn is not None:
            self._check_conn.interrupt()
        if self._checker is not None:
            self._checker.join()
            self._checker = None
        if self._check_conn is not None:
            self._check_conn.close()
            self._check_conn = None
        if self._writer is not None:
            self._writer.close()
        with self._read_lock:
            idle, self._idle_readers = self._idle_readers, []
        for conn in idle:  # readers still in use close when they come back
            conn.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------------
    def _live_writer(self) -> Writer:
        if self._readonly and not self._closed:
            raise SpoolClosed(f"spool {self.path} is open read-only (Spool.open_readonly): it is never written")
        if self._closed or self._writer is None:
            raise SpoolClosed(f"spool {self.path} is closed")
        return self._writer

    def _ensure_open(self) -> None:
        if self._readonly:
            if self._closed:
                raise SpoolClosed(f"spool {self.path} is closed")
            return
        self._live_writer()

    def _borrow_reader(self) -> sqlite3.Connection:
        with self._read_lock:
            if self._closed:
                raise SpoolClosed(f"spool {self.path} is closed")
            if self._idle_readers:
                return self._idle_readers.pop()
        return connect(self.path, readonly=self._readonly)

    def _return_reader(self, conn: sqlite3.Connection) -> None:
        with self._read_lock:
            if not self._closed:
                self._idle_readers.append(conn)
                return
        conn.close()

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._borrow_reader()
        try:
            return fn(conn)
        except SpoolCorrupt as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._mark_corrupt(str(exc))
            raise
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = translate(exc, self.path, "read")
            if isinstance(error, SpoolCorrupt):
                self._mark_corrupt(str(error))
            raise error from exc
        finally:
            self._return_reader(conn)

    def _select(self, where: str, args: tuple[Any, ...]) -> list[Record]:
        def q(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(f"SELECT {RECORD_COLUMNS} FROM records {where}", args).fetchall()
            return [Record.from_row(row) for row in rows]

        return self._read(q)

    def _one(self, where: str, args: tuple[Any, ...]) -> Record | None:
        found = self._select(where, args)
        return found[0] if found else None

    # -- appends -----------------------------------------------------------------------------------
    def append(self, req: AppendRequest) -> AppendResult:
        """Commit ``req`` durably (one fsync shared with concurrent appenders) and return the record."""
        writer, payload_json = self._prepare(req)
        return writer.append(req, payload_json)

    def append_later(self, req: AppendRequest, on_done: AppendDone) -> None:
        """``append`` without blocking: ``on_done(result, error)`` is called on the writer thread.

        For callers that must not park a thread per append (an event loop). A bad request or a
        closed or corrupt spool raises here, before anything is queued.
        """
        writer, payload_json = self._prepare(req)
        writer.append_later(req, payload_json, on_done)

    # -- other namespaces' writes ------------------------------------------------------------------
    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the writer thread and return its result once committed (durable).

        For the tables other parts keep in this file (events, print jobs, upload state): the
        spool's writer is then the file's only writer, and ``fn`` shares the group commit (one
        fsync) with the appends and writes queued at that moment. ``fn`` runs inside the writer's
        ``BEGIN IMMEDIATE`` transaction, in a savepoint of its own: it must not begin, commit or
        roll back, nor change the spool's own tables (records, history, meta, checkpoint,
        status_totals), which only the methods above change. If ``fn`` raises, its changes are
        undone, the others' are not, and the exception is raised here (a ``sqlite3.Error`` as
        the matching ``SpoolError``). An I/O error, a full disk or corruption fails the whole
        transaction: every job in it gets the error. A corrupt spool refuses every write.

        Blocks the calling thread: from an event loop use ``write_later`` (or a thread).
        """
        return self._live_writer().write(fn)

    def write_later(self, fn: Callable[[sqlite3.Connection], Any], on_done: WriteDone | None = None) -> None:
        """``write`` without waiting: ``on_done(result, error)`` is called on the writer thread.

        Jobs are served in the order they were queued, so successive ``write_later`` calls land in
        that order. Without ``on_done`` a failure is logged. Raises ``SpoolClosed`` here if the
        spool is closed; nothing else is raised here.
        """
        self._live_writer().write_later(fn, on_done)

    def pending_summary(self) -> PendingSummary:
        """The tail seq, how many records are pending and the oldest pending seq: no query.

        Kept in memory by the writer thread, which sees every change this handle makes (appends,
        outcomes, resolutions, prunes), read from the file at open and after each commit of a
        state change. For an event loop, which must not wait for SQLite on every sale. Another
        process's changes to the same file show after this handle's next state change, or its
        next append (which notices a tail it did not write and counts again). After ``close``,
        the last value.
        """
        if self._writer is None:
            state = "open read-only (no writer: use stats())" if self._readonly else "never opened"
            raise SpoolClosed(f"spool {self.path} {state}")
        return self._writer.summary

    def _prepare(self, req: AppendRequest) -> tuple[Writer, str]:
        writer = self._live_writer()
        if not isinstance(req, AppendRequest):
            raise InvalidRequest("append takes an AppendRequest")
        req.validate()
        payload_json = canonical_json(req.payload).decode("utf-8")
        if self.integrity == "corrupt":
            raise SpoolCorrupt(f"appends stopped: {self.integrity_error}")
        return writer, payload_json

    # -- reads -------------------------------------------------------------------------------------
    def get(self, record_id: str) -> Record | None:
        return self._one("WHERE record_id = ?", (record_id,))

    def get_seq(self, seq: int) -> Record | None:
        return self._one("WHERE seq = ?", (seq,))

    def find_by_key(self, key: str) -> Record | None:
        return self._one("WHERE idempotency_key = ?", (key,))

    def backlog(self, after_seq: int = 0, limit: int = 200) -> list[Record]:
        """Pending records after ``after_seq``, in seq order (what the uploader sends next)."""
        return self._select(
            "WHERE status = 'pending' AND seq > ? ORDER BY seq LIMIT ?", (after_seq, _limit(limit))
        )

    def records(self, status: str | None = None, after_seq: int = 0, limit: int = 100) -> list[Record]:
        if status is None:
            return self._select("WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, _limit(limit)))
        if status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        return self._select(
            "WHERE status = ? AND seq > ? ORDER BY seq LIMIT ?", (status, after_seq, _limit(limit))
        )

    def search(
        self,
        status: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
        *,
        idempotency_key: str | None = None,
        pos_order_id: str | None = None,
        business_date: str | None = None,
    ) -> list[Record]:
        """``records`` narrowed by every filter given (all must hold), in seq order.

        Each filter has an index: the key its unique one, ``business_date`` its own, and
        ``pos_order_id`` (the POS's ``meta.pos_order_id``) the expression index of schema step 4.
        An order id written as a JSON number is found by its decimal text too (``"1001"`` finds
        ``1001``).
        """
        where = ["seq > ?"]
        args: list[Any] = [after_seq]
        if status is not None:
            if status not in STATUSES:
                raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
            where.append("status = ?")
            args.append(status)
        if idempotency_key is not None:
            where.append("idempotency_key = ?")
            args.append(idempotency_key)
        if business_date is not None:
            try:
                date = datetime.strptime(business_date, "%Y-%m-%d").date().isoformat()
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"business_date must be YYYY-MM-DD, got {business_date!r}") from exc
            where.append("business_date = ?")
            args.append(date)
        if pos_order_id is not None:
            if not isinstance(pos_order_id, str):
                raise InvalidRequest(f"pos_order_id must be a string, got {pos_order_id!r}")
            wanted: list[Any] = [pos_order_id]
            number = _integer(pos_order_id)
            if number is not None:
                wanted.append(number)
            where.append(f"{POS_ORDER_ID} IN ({', '.join('?' * len(wanted))})")
            args += wanted
        args.append(_limit(limit))
        return self._select(f"WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", tuple(args))

    def history(self, record_id: str) -> list[Transition]:
        def q(conn: sqlite3.Connection) -> list[Transition]:
            row = conn.execute(
                "SELECT seq, spooled_at, offline, offline_reason FROM records WHERE record_id = ?",
                (record_id,),
            ).fetchone()
            if row is None:
                raise NotFound(f"no record {record_id!r}")
            seq, spooled_at, offline, reason = row
            first = Transition.spooled(spooled_at, bool(offline), reason)
            rows = conn.execute("SELECT at, status, detail FROM history WHERE seq = ? ORDER BY id", (seq,))
            return [first, *(Transition(at=r[0], status=r[1], detail=r[2]) for r in rows)]

        return self._read(q)

    def stats(self) -> SpoolStats:
        return self._read(queries.stats_in)

    def checkpoint(self) -> tuple[int, str]:
        """(seq, hash) of the prune checkpoint: the last record pruned, which the first record held
        links to; (0, genesis) if nothing was ever pruned (the chain held starts at seq 1)."""
        return self._read(queries.checkpoint_in)

    def newest_change(self) -> ChangeMark | None:
        """The newest ``history`` row now (None: no record has changed since its append yet).

        Take it before comparing records with a copy elsewhere: whatever changes later is then
        found by ``changes_since`` from it.
        """
        return self._read(queries.newest_change_in)

    def changes_since(self, mark: ChangeMark | None, limit: int = 1000) -> Changes:
        """The records changed after ``mark`` (None: from the first change), from at most ``limit``
        history rows: a range scan of the history's key, however long the spool.

        Every change of a record after its append (central's outcome, a resolution, the outage
        fact, a refund) writes one ``history`` row in the same transaction, and history ids only
        grow while their newest row exists. If ``mark``'s row is gone or is another row now (a
        prune deleted it, so ids may be handed out again), the answer is ``broken`` with the
        newest mark: the reader compares every record that may still change instead, once.
        Continue with the answer's ``mark`` until it stops moving.
        """
        return self._read(lambda conn: queries.changes_since_in(conn, mark, _limit(limit)))

    def records_at(self, seqs: Sequence[int]) -> list[Record]:
        """The records with these seqs as stored now, in seq order; a seq not held is left out."""
        return self._read(lambda conn: queries.records_at_in(conn, seqs))

    def totals(self, business_date: str) -> Totals:
        """Count and sum of the records whose business_time falls on ``business_date`` (its own offset)."""
        try:
            date = datetime.strptime(business_date, "%Y-%m-%d").date().isoformat()
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"business_date must be YYYY-MM-DD, got {business_date!r}") from exc
        return self._read(lambda conn: queries.totals_on(conn, date))

    # -- state changes -----------------------------------------------------------------------------
    def apply_outcomes(self, outcomes: Sequence[Outcome]) -> list[Record]:
        """Settle or reject pending records in one transaction; final records stay as they are.

        Returns the records in the order of ``outcomes``, as stored afterwards.
        NotFound (and nothing applied) if a seq does not exist.
        """
        for outcome in outcomes:
            if not isinstance(outcome, Outcome) or outcome.status not in ("settled", "rejected"):
                raise InvalidRequest(f"outcome status must be 'settled' or 'rejected': {outcome!r}")
            if not isinstance(outcome.detail, dict):
                raise InvalidRequest(f"outcome detail must be a dict (seq {outcome.seq})")
            canonical_json(outcome.detail)

        return self._live_writer().run(lambda conn: transitions.apply_outcomes_in(conn, outcomes))

    def resolve(self, record_id: str, resolution: str, note: str | None = None) -> Record:
        """Staff handled a rejected record: ``self_pay`` or ``voided``."""
        if resolution not in RESOLUTIONS:
            raise InvalidRequest(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        if note is not None and not isinstance(note, str):
            raise InvalidRequest("note must be a string or None")

        return self._live_writer().run(lambda conn: transitions.resolve_in(conn, record_id, resolution, note))

    def mark_outage(self, record_id: str, reason: str) -> Record:
        """Fix that the POS was answered "pending" (the patient pays in full), unless central's
        outcome came first; the record as stored either way (see transitions.mark_outage_in)."""
        if not isinstance(reason, str) or not reason:
            raise InvalidRequest("reason must be a non-empty string")
        return self._live_writer().run(lambda conn: transitions.mark_outage_in(conn, record_id, reason))

    def refund(self, record_id: str, paid_fen: int, operator: dict[str, Any]) -> Record:
        """Record the hand-over of what an outage sale owed the patient (``Record.refund_owed_fen``:
        exactly that amount, once)."""
        if type(paid_fen) is not int or paid_fen <= 0:
            raise InvalidRequest(f"paid_fen must be a positive integer, got {paid_fen!r}")
        if not isinstance(operator, dict):
            raise InvalidRequest("operator must be a dict")
        canonical_json(operator)
        return self._live_writer().run(lambda conn: transitions.refund_in(conn, record_id, paid_fen, operator))

    def restored_from(self) -> restored.RestoredFrom | None:
        """Set when this file was rebuilt from a copy and nobody acknowledged it yet
        (spool/restored.py): the records up to its ``last_seq`` that are pending may have
        reached the upstream before the old file was lost."""
        return self._read(restored.read_in)

    def acknowledge_restore(self) -> None:
        """A person checked the restored pending records with the upstream: the marker goes."""
        self._live_writer().run(restored.clear_in)

    def followups(self, limit: int = 500) -> list[Record]:
        """Settlements a person must act on, oldest first: outage sales with money owed back to
        the patient not handed over yet (central settled them, or they were voided), and rejected
        ones not resolved yet."""
        def q(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM records WHERE kind = 'settlement'"
                # Record.refund_owed_fen's conditions, in SQL, so that what owes nothing never
                # fills the LIMIT: no revoke standing (pending or settled), a fund share to hand over.
                " AND ((status = 'settled' AND outage = 1 AND refund IS NULL"
                "       AND NOT EXISTS (SELECT 1 FROM records r WHERE r.original_seq = records.seq"
                "                       AND r.status IN ('pending', 'settled'))"
                "       AND (max(coalesce(json_extract(outcome, '$.fund_paid_fen'), 0), 0)"
                "            + max(coalesce(json_extract(outcome, '$.account_paid_fen'), 0), 0)) > 0)"
                "      OR status = 'rejected'"
                # The owed amount decided when it was voided (spool/transitions.resolve_in): in
                # SQL, so that sales resolved as self-pay (owing nothing) never fill the LIMIT.
                "      OR (status = 'resolved' AND outage = 1 AND refund IS NULL"
                "          AND json_extract(resolution, '$.owed_fen') > 0))"
                " ORDER BY seq LIMIT ?", (_limit(limit),)).fetchall()
            found = (Record.from_row(row) for row in rows)
            return [r for r in found if r.status == "rejected" or r.refund_owed_fen > 0]

        return self._read(q)

    # -- whole file --------------------------------------------------------------------------------
    def check(self) -> CheckReport:
        """Verify the whole chain and run PRAGMA integrity_check; problems stop further writes."""
        self._ensure_open()
        report = maintenance.check_file(self.path, self.terminal_id)
        if not report.ok:
            self._mark_corrupt(f"{self.path}: check failed: {report.problems[0]}")
        return report

    def export(self, dest: str | Path, fmt: str = "jsonl") -> int:
        """Copy every record to ``dest`` (jsonl, csv or sqlite) from an online-backup snapshot."""
        self._ensure_open()
        return maintenance.export_file(self.path, Path(dest), fmt)

    def prune(self, retention_days: int, now: datetime | None = None, *, max_records: int | None = None) -> int:
        """Delete settled/resolved records final for longer than the retention, oldest first.

        Never a record someone may still act on (pending, rejected, a refund owed) nor anything
        after it. At most ``max_records`` in this one transaction (None: all that may go); the
        number deleted is returned, so a caller loops while it equals ``max_records``.
        """
        if not isinstance(retention_days, int) or isinstance(retention_days, bool) or retention_days < 0:
            raise InvalidRequest(f"retention_days must be a non-negative integer, got {retention_days!r}")
        if max_records is not None and (type(max_records) is not int or max_records < 1):
            raise InvalidRequest(f"max_records must be a positive integer or None, got {max_records!r}")
        return self._live_writer().run(lambda conn: maintenance.prune_in(conn, retention_days, now, max_records))

    @property
    def commits(self) -> int:
        """Durable commits made by this instance (group-commit statistics for benches)."""
        return self._writer.commits if self._writer is not None else 0


def _key(path: Path) -> str:
    return os.path.realpath(path)


def _limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidRequest(f"limit must be a positive integer, got {limit!r}")
    return limit


def _integer(text: str) -> int | None:
    """``text`` as the SQLite integer it is the canonical decimal of ("1001"; not "01", "+1")."""
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        return None
    value = int(text)
    return value if str(value) == text and -(2**63) <= value < 2**63 else None

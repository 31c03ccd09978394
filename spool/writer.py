"""The one writer: a thread that group-commits appends and runs other writes.

Callers put jobs on a queue and block until their job is durable, or (``append_later``,
``write_later``) get a callback on the writer thread instead of blocking one of their
own. The thread takes everything queued at that moment (up to ``MAX_BATCH``), puts the
run of appends and of other namespaces' writes (``write``: events, print jobs, upload
state in the same file) into one ``BEGIN IMMEDIATE`` transaction and commits it with
one WAL fsync, so concurrent callers share the cost of a sync. Each such write runs in
a savepoint of its own: one that raises is undone alone. The spool's own state
changes (``run``: outcomes, resolutions, prune) keep a transaction each, in queue
order. A failed commit is rolled back, every job of the batch gets its own copy of the
typed error, the chain tail is re-read from the file, and the thread goes on serving.

The writer sees every change this handle makes to the records, so it keeps what an
event loop asks on every sale in memory (``PendingSummary``: the tail, how many are
pending, the oldest pending seq); see ``Writer.summary``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from spool.chain import record_hash_spliced
from spool.checkpointer import HINT_EVERY_COMMITS, Checkpointer
from spool.errors import (
    IdempotencyConflict,
    NotFound,
    NotRevocable,
    OfflineLimitExceeded,
    SpoolClosed,
    SpoolCorrupt,
    SpoolError,
)
from spool.ids import now_rfc3339, uuid7
from spool.jobs import AppendDone, AppendJob, CallbackAppendJob, CallJob, Job
from spool.queries import insert_rows, load_tail, pending_offline_fen, revoke_target, stored_with_keys
from spool.records import AppendRequest, AppendResult, Record, business_date_of
from spool.store import connect, translate
from spool.witness import Witness

__all__ = ["MAX_BATCH", "AppendDone", "PendingSummary", "WriteDone", "Writer"]

log = logging.getLogger(__name__)

MAX_BATCH = 512
T = TypeVar("T")


@dataclass
class _Plan:
    """A batch of appends worked out inside its transaction, before the INSERT."""

    seq: int  # the tail once the batch is in
    prev_hash: str
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    created: list[tuple[AppendJob, AppendResult]] = field(default_factory=list)
    repeats: list[tuple[AppendJob, Record]] = field(default_factory=list)
    refused: list[tuple[AppendJob, SpoolError]] = field(default_factory=list)
    start_seq: int = field(init=False)  # the tail as read under the write lock, before the batch

    def __post_init__(self) -> None:
        self.start_seq = self.seq


def _counts_offline(req: AppendRequest) -> bool:
    """Does this record add to the amount pending offline (the offline limit's measure)?"""
    return req.kind == "settlement" and req.outage_reason is not None


def _limited(job: AppendJob) -> bool:
    return job.req.offline_limit_fen is not None and _counts_offline(job.req)


WriteDone = Callable[[Any, BaseException | None], None]


@dataclass(frozen=True)
class PendingSummary:
    """What waits for central, as of the writer's last commit: read without a query.

    Replaced whole (one attribute assignment) by the writer thread, so any thread may read it.
    """

    last_seq: int  # the chain's tail (0: empty)
    pending: int  # records with status 'pending'
    oldest_pending_seq: int | None  # the first of them in seq order (what the uploader sends first)


def _read_summary(conn: sqlite3.Connection) -> PendingSummary:
    """Three indexed lookups: the tail, the trigger-kept count, the first pending seq."""
    last_seq, _ = load_tail(conn)
    pending = conn.execute("SELECT COALESCE(SUM(count), 0) FROM status_totals WHERE status = 'pending'").fetchone()
    oldest = conn.execute("SELECT seq FROM records WHERE status = 'pending' ORDER BY seq LIMIT 1").fetchone()
    return PendingSummary(last_seq, int(pending[0]), None if oldest is None else int(oldest[0]))


class WriteJob(Job[Any]):
    """A write to another namespace's tables (``Writer.write``): group-committed in a savepoint.

    With ``on_done`` the caller is called back on the writer thread instead of blocking.
    """

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], on_done: WriteDone | None = None,
                 blocking: bool = True) -> None:
        super().__init__()
        self.fn = fn
        self._on_done = on_done
        self._blocking = blocking

    def finish(self, result: Any) -> None:
        if self._blocking:
            super().finish(result)
        else:
            self._call(result, None)

    def fail(self, error: BaseException) -> None:
        if self._blocking:
            super().fail(error)
        else:
            self._call(None, error)

    def _call(self, result: Any, error: BaseException | None) -> None:
        if self._on_done is None:
            if error is not None:
                log.error("spool write_later failed (nobody to tell): %s: %s", type(error).__name__, error)
            return
        try:
            self._on_done(result, error)
        except Exception:  # the caller's bug must not stop the writer serving the others
            log.exception("spool write callback failed")


def _copy(error: SpoolError) -> SpoolError:
    # Each waiting thread raises its own instance: one shared exception object
    # would have its __traceback__ rewritten by every thread that raises it.
    clone = type(error)(str(error))
    clone.__cause__ = error.__cause__
    return clone


class Writer:
    """Owns the write connection; every change to the file goes through ``run``/``append``/``write``."""

    _checkpoint_failing = False  # a checkpoint here failed: warned once until one works again

    def __init__(
        self,
        path: Path,
        terminal_id: str,
        witness: Witness,
        on_commit: Callable[[float], None] | None,
        on_corrupt: Callable[[str], None],
        *,
        wal_limit_bytes: int | None = None,
    ) -> None:
        self._path = path
        self._terminal_id = terminal_id
        self._witness = witness
        self._on_commit = on_commit
        self._on_corrupt = on_corrupt
        self._conn: sqlite3.Connection | None = None
        try:
            tail = load_tail(self._connection())
        except BaseException as exc:
            witness.close()
            if isinstance(exc, sqlite3.Error):
                raise translate(exc, path, "open") from exc
            raise
        # Before the first append, the witness holds the tail and is synced (recreated, with a
        # warning, if it was missing); from then on every commit updates it (see witness.py).
        witness.start(*tail)
        self._checkpointer = Checkpointer(path, wal_limit_bytes)  # None: WAL_LIMIT_BYTES
        self._queue: queue.SimpleQueue[Job[Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self.corrupt: str | None = None
        self.commits = 0
        self._in_flight: list[Job[Any]] = []  # the batch being served (failed if the thread dies)
        self._thread = threading.Thread(target=self._loop, name="spool-writer", daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------------
    def append(self, req: AppendRequest, payload_json: str) -> AppendResult:
        job = AppendJob(req, payload_json)
        self._put(job)
        return job.wait()

    def append_later(self, req: AppendRequest, payload_json: str, on_done: AppendDone) -> None:
        """Queue the append; ``on_done(result, error)`` runs on the writer thread once it is durable."""
        self._put(CallbackAppendJob(req, payload_json, on_done))

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside its own BEGIN IMMEDIATE transaction on the writer thread."""
        job = CallJob(fn)
        self._put(job)
        result: T = job.wait()
        return result

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the writer thread in a savepoint of the transaction it commits
        next (shared with the appends and writes queued meanwhile); its result once durable."""
        if threading.current_thread() is self._thread:
            raise SpoolError("Spool.write called on the spool's writer thread would wait for itself; "
                             "use write_later there")
        job = WriteJob(fn)
        self._put(job)
        result: T = job.wait()
        return result

    def write_later(self, fn: Callable[[sqlite3.Connection], Any], on_done: WriteDone | None = None) -> None:
        """Queue ``write(fn)`` and return; ``on_done(result, error)`` runs on the writer thread."""
        self._put(WriteJob(fn, on_done, blocking=False))

    @property
    def summary(self) -> PendingSummary:
        return self._summary

    def _put(self, job: Job[Any]) -> None:
        with self._close_lock:
            if self._closed:
                raise SpoolClosed(f"spool {self._path} is closed")
            self._queue.put(job)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)  # queued jobs before it are still served
        self._thread.join()

    # -- writer thread -----------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException:
            # Every commit path catches its own errors: this is a bug. Say so loudly, and let no
            # caller wait forever on a thread that is gone (the watchdog's write probe stops too,
            # so systemd restarts the daemon).
            log.critical("the spool writer stopped on an unexpected error: nothing more is written",
                         exc_info=True)
            with self._close_lock:
                self._closed = True
            stranded: list[Job[Any] | None] = list(self._in_flight)
            while True:
                try:
                    stranded.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for job in stranded:
                if job is not None:
                    # A job of the batch may have been answered already: its lock is then free.
                    with contextlib.suppress(RuntimeError):
                        job.fail(SpoolClosed(f"spool {self._path}: the writer stopped on an unexpected error"))
        finally:
            self._checkpointer.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._witness.close()

    def _serve(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch: list[Job[Any]] = [first]
            self._in_flight = batch
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            # Appends and other namespaces' writes share one transaction (one fsync); a spool
            # state change (``run``) keeps its own, after whatever was queued before it.
            appends: list[AppendJob] = []
            writes: list[WriteJob] = []
            for job in batch:
                if isinstance(job, AppendJob):
                    appends.append(job)
                    continue
                if isinstance(job, WriteJob):
                    writes.append(job)
                    continue
                if appends or writes:
                    self._commit_group(appends, writes)
                    appends, writes = [], []
                self._run_call(job)  # type: ignore[arg-type]
            if appends or writes:
                self._commit_group(appends, writes)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self._path)
            try:
                conn.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer does it off this thread
                # Fails now, not at the first append, if the file is unreadable.
                self._summary = _read_summary(conn)
            except sqlite3.Error as exc:
                conn.close()
                raise translate(exc, self._path, "open") from exc
            self._conn = conn
        return self._conn

    def _after_commit(self) -> None:
        self.commits += 1
        self._wal_after_commit()

    def _wal_after_commit(self) -> None:
        """The WAL's upkeep after a commit: the append path runs it once its callers are answered."""
        conn = self._conn
        if self._checkpointer.due and conn is not None:
            # The WAL backstop (checkpointer.py): the Checkpointer found the WAL past its limit
            # after copying what it could. Emptying it takes the write lock, which this thread
            # has no need to win from itself; it waits at most RESTART_BUSY_MS for old readers.
            self._checkpointer.run_due(conn)
        if self.commits % HINT_EVERY_COMMITS == 0:
            if conn is not None:
                self._checkpoint_between_transactions(conn)
            self._checkpointer.hint()  # its pass and the backstop's bookkeeping, as ever

    def _checkpoint_between_transactions(self, conn: sqlite3.Connection) -> None:
        """A PASSIVE checkpoint on the writer's connection, with no transaction open.

        Under steady appends the Checkpointer's passes never catch up (commits land while
        they copy), so SQLite never starts the WAL from the top again and every commit
        appends to the file: its fdatasync then also allocates blocks and commits the file
        system's journal. Here nothing commits meanwhile: the next transaction starts the
        WAL from the top, and commits rewrite the same few MB in place (docs/spool.md, "WAL
        checkpoints and the backstop"). A reader's snapshot may keep it from copying
        everything; the WAL then grows as before, and the backstop deals with it.
        """
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # the commits before are durable: never fail them for this
            if not self._checkpoint_failing:
                log.warning("spool checkpoint of %s on the writer failed: %s", self._path, exc)
            self._checkpoint_failing = True
            return
        self._checkpoint_failing = False

    def _refuse_if_corrupt(self) -> None:
        if self.corrupt is not None:
            raise SpoolCorrupt(f"appends stopped: {self.corrupt}")

    def _commit_group(self, appends: list[AppendJob], writes: list[WriteJob]) -> None:
        if appends:
            self._commit_appends(appends, writes)
        else:
            self._commit_writes(writes)

    def _commit_writes(self, writes: list[WriteJob]) -> None:
        """Other namespaces' writes with no append queued beside them: one transaction, one fsync."""
        started = time.monotonic()
        try:
            self._refuse_if_corrupt()
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            done = self._run_writes(conn, writes)
            conn.execute("COMMIT")
        except BaseException as exc:
            error = self._recover(exc, "write")
            for job in writes:
                job.fail(_copy(error))
            return
        self._after_commit()
        self._notify(time.monotonic() - started)
        self._finish_writes(done)

    def _run_writes(self, conn: sqlite3.Connection,
                    writes: list[WriteJob]) -> list[tuple[WriteJob, Any, BaseException | None]]:
        """Each write in a savepoint of the open transaction: one that raises is undone alone.

        An error that is not the caller's (I/O, disk full, corruption, or SQLite rolling the
        whole transaction back) is raised: the transaction fails for every job in it.
        """
        done: list[tuple[WriteJob, Any, BaseException | None]] = []
        for job in writes:
            conn.execute("SAVEPOINT side_write")
            try:
                result = job.fn(conn)
            except Exception as exc:
                error: BaseException = exc
                if isinstance(exc, sqlite3.Error):
                    error = translate(exc, self._path, "write")
                    error.__cause__ = exc
                    if type(error) is not SpoolError or not conn.in_transaction:
                        raise
                elif not conn.in_transaction:
                    raise
                conn.execute("ROLLBACK TO side_write")
                conn.execute("RELEASE side_write")
                done.append((job, None, error))
                continue
            conn.execute("RELEASE side_write")
            done.append((job, result, None))
        return done

    @staticmethod
    def _finish_writes(done: list[tuple[WriteJob, Any, BaseException | None]]) -> None:
        for job, result, error in done:
            if error is None:
                job.finish(result)
            else:
                job.fail(error)

    def _commit_appends(self, jobs: list[AppendJob], writes: list[WriteJob] | None = None) -> None:
        """One transaction, one fsync, for a batch of appends (and the writes queued beside them).

        The whole batch is a handful of statements however long it is (the tail, one multi-row
        INSERT per 32 records): each statement hands the interpreter lock to the event loop and
        must win it back, so a statement per record made a busy loop the commit's bottleneck.
        """
        started = time.monotonic()
        writes = writes or []
        done: list[tuple[WriteJob, Any, BaseException | None]] = []
        try:
            self._refuse_if_corrupt()
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            # A batch seldom repeats a key already in the file: insert without looking the keys
            # up first. If the insert skipped a row, a key was taken: start over, looking. The
            # same for a refusal, which a repeat (answered before any limit) must never get.
            plan = self._plan(conn, jobs, {})
            if insert_rows(conn, plan.rows) < len(plan.rows) or plan.refused:
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                plan = self._plan(conn, jobs, stored_with_keys(conn, [job.req.idempotency_key for job in jobs]))
                if insert_rows(conn, plan.rows) < len(plan.rows):
                    raise SpoolError(f"{self._path}: an idempotency key was taken during the append's own transaction")
            # A tail this handle did not write: another process appended; count again.
            fresh = _read_summary(conn) if plan.start_seq != self._summary.last_seq else None
            if writes:
                done = self._run_writes(conn, writes)
            conn.execute("COMMIT")
        except BaseException as exc:
            error = self._recover(exc, "append")
            for job in jobs:
                job.fail(_copy(error))
            for write in writes:
                write.fail(_copy(error))
            return
        self._summary = fresh if fresh is not None else self._appended(plan)
        self.commits += 1
        self._witness.write(plan.seq, plan.prev_hash)
        self._notify(time.monotonic() - started)
        for job, result in plan.created:
            job.finish(result)
        for job, error in plan.refused:
            job.fail(error)
        for job, existing in plan.repeats:
            if existing.request_digest == job.req.request_digest:
                job.finish(AppendResult(existing, created=False))
            else:
                job.fail(IdempotencyConflict(
                    f"idempotency key already used by seq {existing.seq} with another body", existing))
        self._finish_writes(done)
        # Every caller of this batch has its answer: a checkpoint or a WAL truncation now
        # delays only what was queued since.
        self._wal_after_commit()

    def _appended(self, plan: _Plan) -> PendingSummary:
        """The summary after this handle's own batch: every created record is pending."""
        known = self._summary
        if not plan.created:
            return known
        first = plan.created[0][1].record.seq
        oldest = known.oldest_pending_seq if known.oldest_pending_seq is not None else first
        return PendingSummary(plan.seq, known.pending + len(plan.created), oldest)

    def _plan(self, conn: sqlite3.Connection, jobs: list[AppendJob], by_key: dict[str, Record]) -> _Plan:
        """What each job becomes, given the records already holding some of the keys (``by_key``)."""
        # Read under the write lock, not from a cache: another process that
        # opened the same file (a CLI, say) may have appended meanwhile.
        seq, prev_hash = load_tail(conn)
        plan = _Plan(seq, prev_hash)
        pending_offline = pending_offline_fen(conn) if any(_limited(job) for job in jobs) else 0
        revoked: dict[str, str] = {}  # original record id -> the revoke planned in this batch
        for job in jobs:
            existing = by_key.get(job.req.idempotency_key)
            if existing is not None:  # in the file, or earlier in this batch (a concurrent twin)
                plan.repeats.append((job, existing))
                continue
            original_seq = None
            if job.req.original_record_id is not None:
                original_seq, refusal = self._check_revoke(conn, job, revoked)
                if refusal is not None:
                    plan.refused.append((job, refusal))
                    continue
            record, row = self._new_record(job, plan.seq + 1, plan.prev_hash, original_seq)
            limit = job.req.offline_limit_fen
            if limit is not None and _limited(job) and pending_offline + record.total_fen > limit:
                plan.refused.append(
                    (job, OfflineLimitExceeded(f"the amount pending offline would pass {limit} fen", limit)))
                continue
            if _counts_offline(job.req):
                pending_offline += record.total_fen
            if job.req.original_record_id is not None:
                revoked[job.req.original_record_id] = record.record_id
            plan.seq, plan.prev_hash = record.seq, record.hash
            by_key[job.req.idempotency_key] = record
            plan.rows.append(row)
            plan.created.append((job, AppendResult(record, created=True)))
        return plan

    @staticmethod
    def _check_revoke(conn: sqlite3.Connection, job: AppendJob,
                      revoked: dict[str, str]) -> tuple[int | None, SpoolError | None]:
        """The original's seq, or why this revoke is refused (the rules of docs/spool.md, "Revokes")."""
        original_id = str(job.req.original_record_id)
        original = revoke_target(conn, original_id)
        if original is None:
            return None, NotFound(f"no record {original_id!r} to revoke")
        seq, kind, status, total_fen, revoked_by = original
        if kind != "settlement":
            return seq, NotRevocable(f"seq {seq} is a {kind}: only a settlement can be revoked")
        if status in ("rejected", "resolved"):
            return seq, NotRevocable(f"seq {seq} was rejected by central: there is nothing to revoke")
        revoked_by = revoked_by or revoked.get(original_id)
        if revoked_by is not None:
            return seq, NotRevocable(f"seq {seq} is revoked already (by {revoked_by})")
        amount = job.req.payload.get("total_fen")
        if amount != -total_fen:
            return seq, NotRevocable(f"a revoke of seq {seq} must carry total_fen {-total_fen}")
        return seq, None

    def _new_record(self, job: AppendJob, seq: int, prev_hash: str,
                    original_seq: int | None = None) -> tuple[Record, tuple[Any, ...]]:
        """The record ``job`` becomes as ``seq``, and its row for ``insert_rows``."""
        req = job.req
        now = now_rfc3339()
        wire: dict[str, Any] = {
            "record_id": str(uuid7()),
            "seq": seq,
            "terminal_id": self._terminal_id,
            "kind": req.kind,
            "business_time": req.business_time,
            "spooled_at": now,
            "offline": req.offline,
            "offline_reason": req.offline_reason,
            "prev_hash": prev_hash,
        }
        wire["hash"] = record_hash_spliced(wire, job.payload_json)
        wire["payload"] = req.payload
        outage = True if req.outage_reason is not None else None
        record = Record(
            **wire,
            status="pending",
            outcome=None,
            resolution=None,
            idempotency_key=req.idempotency_key,
            request_digest=req.request_digest,
            updated_at=now,
            original_seq=original_seq,
            outage=outage,
            outage_reason=req.outage_reason,
            contact_phone=req.contact_phone,
        )
        # No history row: the first transition is derived from the record (see Spool.history),
        # which keeps an append to five b-tree pages per commit.
        row = (seq, record.record_id, record.terminal_id, record.kind, record.business_time,
               business_date_of(record.business_time), now, int(record.offline), record.offline_reason,
               job.payload_json, prev_hash, record.hash, record.idempotency_key, record.request_digest,
               record.total_fen, now, time.time(), original_seq, None if outage is None else 1,
               req.outage_reason, req.contact_phone)
        return record, row

    def _run_call(self, job: CallJob) -> None:
        started = time.monotonic()
        try:
            self._refuse_if_corrupt()
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            result = job.fn(conn)
            summary = _read_summary(conn)  # outcomes, resolutions, prunes: count again
            conn.execute("COMMIT")
        except BaseException as exc:
            job.fail(self._recover(exc, "write"))
            return
        self._summary = summary
        self._after_commit()
        self._notify(time.monotonic() - started)
        job.finish(result)

    def _recover(self, exc: BaseException, during: str) -> SpoolError:
        """Roll back after a failed transaction and re-read the tail; return the error to report."""
        if isinstance(exc, SpoolError):
            error = exc
        elif isinstance(exc, sqlite3.Error | OSError):
            error = translate(exc, self._path, during)
            error.__cause__ = exc
        else:
            log.exception("unexpected error in the spool writer")
            error = SpoolError(f"internal error during {during} on {self._path}: {type(exc).__name__}")
            error.__cause__ = exc
        try:
            conn = self._connection()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # Proves the connection is usable again; a commit whose fate is unknown may have landed.
            self._summary = _read_summary(conn)
        except (sqlite3.Error, SpoolError) as again:
            # The connection itself is unusable; the next job opens a new one.
            log.warning("spool writer reconnecting after %s", type(again).__name__)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if isinstance(again, SpoolCorrupt) or (
                isinstance(again, sqlite3.DatabaseError) and "malformed" in str(again)
            ):
                error = error if isinstance(error, SpoolCorrupt) else SpoolCorrupt(str(again))
        if isinstance(error, SpoolCorrupt) and self.corrupt is None:
            self.corrupt = str(error)
            self._on_corrupt(str(error))
        return error

    def _notify(self, seconds: float) -> None:
        if self._on_commit is None:
            return
        try:
            self._on_commit(seconds)
        except Exception:  # a metrics hook must never fail a durable commit
            log.exception("spool on_commit hook failed")

"""``MirrorCopier``: one terminal's spool, copied to the hospital's PostgreSQL as it grows.

One task on an event loop, one async connection (psycopg 3); in the daemon, a process of its
own (child.py, started by service.py), so no step of it takes time or the interpreter lock
from the API. Each pass:

1. reads the terminal's head row and checks it is on this spool's chain (chain.verify_head; the
   spool's prune checkpoint stands in for a head record pruned since, and a mirror holding nothing
   of a spool pruned before it was mirrored starts at that checkpoint: chain.start_at);
2. copies the records after it in seq order, ``batch_size`` at a time, one compare-and-set
   transaction each (chain.copy_batch);
3. pushes status changes found through the spool's history cursor (changes.py), or, after a
   (re)connect or when the cursor lost its place, compares every row that may still change
   (also when step 2 was refused: a refused batch does not freeze the rows mirrored before it);
4. sends the heartbeat when it is due.

Then it pauses (``min_gap_s``, growing to ``max_gap_s`` while passes keep finding records) and
waits for ``wake()`` (a hint: a record was appended or changed) or ``poll_s``; woken after a
quiet spell, it lets ``settle_s`` pass (the sale that woke it is being answered). A
connection that fails or stops answering (``call_timeout_s``) is dropped and tried again with
exponential backoff and full jitter; libpq's multi-host DSN with ``target_session_attrs=
read-write`` finds the promoted standby after a failover. A fork, a missing schema or a refused
value raises an alarm and writes nothing more until the next pass finds it gone.

It never stands in a sale's way: the spool is only read, in a thread, on its pooled read
connections; nothing here is awaited by the API. Its state is plain values (``status()``), for
/v1/status, events and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from spool import Record, Spool, SpoolError
from spool.ids import now_rfc3339
from terminald.mirror import chain
from terminald.mirror.changes import HistoryMark, changes_after, newest_mark, records_at
from terminald.mirror.connect import async_connect, conninfo, server_of
from terminald.mirror.errors import MirrorError, MirrorFork, MirrorRejected, MirrorSchemaMissing, MirrorUnavailable
from terminald.mirror.heartbeat import Heartbeat, send_heartbeat
from terminald.mirror.rows import batch_text
from terminald.mirror.statuses import push_statuses, reconcile

__all__ = ["MirrorAlarm", "MirrorCopier", "MirrorStatus"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_MOVES_BEFORE_FORK = 3  # a head that moves under us this often in a row: another process mirrors it


@dataclass(frozen=True)
class MirrorAlarm:
    code: str  # an errors.MirrorError code
    message: str
    since: str  # RFC 3339, when first raised
    seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "since": self.since, "seq": self.seq}


@dataclass(frozen=True)
class MirrorStatus:
    """The copier's state as plain values. ``None`` where not known yet (before the first contact)."""

    connected: bool
    server: str | None  # host:port of the read-write server in use
    mirrored_seq: int | None  # the mirror's head, as last seen
    mirrored_hash: str | None
    spool_seq: int | None  # this spool's tail
    unmirrored: int | None  # records in the spool, not yet in the mirror
    oldest_unmirrored_at: str | None  # spooled_at of the first of them
    lag_s: float | None  # its age; 0 when nothing waits
    last_ok_at: str | None  # the last pass that finished
    last_error: str | None
    alarms: tuple[MirrorAlarm, ...]
    running_s: float  # since the copier was made

    def lagging(self, lag_alarm_s: float) -> bool:
        """Unmirrored records older than ``lag_alarm_s`` (or, never reached, records waiting that long)."""
        if self.lag_s is not None:
            return self.lag_s > lag_alarm_s
        return self.last_ok_at is None and bool(self.spool_seq) and self.running_s > lag_alarm_s


class MirrorCopier:
    """Copies ``spool`` to the mirror at ``dsn`` (libpq syntax, several hosts allowed)."""

    def __init__(
        self,
        spool: Spool,
        dsn: str,
        *,
        password: str | None = None,
        batch_size: int = 200,
        poll_s: float = 5.0,
        heartbeat: Callable[[], Heartbeat | None] | None = None,
        heartbeat_s: float = 30.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        call_timeout_s: float = 30.0,
        min_gap_s: float = 0.0,
        max_gap_s: float | None = None,
        settle_s: float = 0.0,
        on_take: Callable[[], None] | None = None,
        on_pass: Callable[[], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.spool = spool
        self.terminal_id = spool.terminal_id
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.call_timeout_s = call_timeout_s
        # Between two passes at least min_gap_s: a wake-up per commit under load then costs one
        # pass per gap (the records that came meanwhile go in one batch), not one per sale. While
        # passes keep finding records the gap doubles up to max_gap_s: each pass has a fixed cost
        # (head check, spool reads, thread hops, round trips) paid in the daemon's process, and
        # under load fewer, fuller batches take less of it than many small ones. The lag this adds
        # (at most max_gap_s) is far below any lag alarm; a quiet spell brings the gap back down.
        self.min_gap_s = min_gap_s
        self.max_gap_s = max(min_gap_s, max_gap_s if max_gap_s is not None else min_gap_s)
        self._gap_s = min_gap_s
        # A commit after a quiet spell wakes the copier while its sale is still being answered
        # (the answer is written after the commit): the pass waits settle_s, so the sale does not
        # share the CPUs with the copier and PostgreSQL's client side. Measured: bench/mirror.py.
        self.settle_s = settle_s
        self._info = conninfo(dsn, password=password, application_name=f"terminald-mirror {self.terminal_id}")
        self._heartbeat = heartbeat
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._server: str | None = None
        self._head: chain.Head | None = None
        self._mark: HistoryMark | None = None
        self._marked = False  # False: compare every open row before following the history cursor
        self._beat_at: float | None = None
        self._oldest: tuple[int, str] | None = None  # (seq, spooled_at) of the first unmirrored record
        self._seen_tail = 0
        self._alarms: dict[str, MirrorAlarm] = {}
        self._last_ok: str | None = None
        self._last_error: str | None = None
        self._created = time.monotonic()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        # A hint is on its way to (or waiting in) the loop: further commits need not send another.
        # Set by wake() on any thread, cleared by the loop before a pass reads the spool, so a
        # commit that skipped its hint is seen by that pass. Without this every sale would wake
        # the mirror's loop (and take the GIL) once more, even during the gap.
        self._hinted = False
        self._progress = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # For a copier in a process of its own (child.py): the pass takes the hints given so far
        # (the parent may send the next one), and a pass ended (its state is worth sending).
        self._on_take = on_take
        self._on_pass = on_pass

    # -- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Mirror until cancelled; every error is kept as state (``status()``), never raised."""
        self._loop = asyncio.get_running_loop()
        failures = 0
        try:
            while True:
                self._hinted = False
                self._wake.clear()
                if self._on_take is not None:
                    self._on_take()
                before = self._head
                try:
                    await self.sync_once()
                    failures, delay = 0, self.poll_s
                except MirrorUnavailable:
                    failures += 1
                    # Full jitter: a fleet that lost the server at once must not come back in waves.
                    delay = random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** failures))
                except MirrorError:
                    failures, delay = 0, self.poll_s
                except Exception as exc:  # a bug must not end the mirror, nor reach the daemon's sales
                    log.exception("mirror pass failed")
                    self._last_error = f"internal error: {type(exc).__name__}"
                    failures, delay = 0, self.poll_s
                with contextlib.suppress(SpoolError):
                    await self._refresh_oldest()
                if self._on_pass is not None:
                    self._on_pass()
                if failures:
                    await asyncio.sleep(delay)  # a wake-up must not shorten a backoff
                else:
                    gap = self._next_gap(copied=before is not None and self._head != before)
                    if gap > 0:
                        await asyncio.sleep(gap)
                    if not self._wake.is_set():  # set during the gap: records keep coming, go on
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(max(delay - gap, 0)):
                                await self._wake.wait()
                        if self._wake.is_set() and self.settle_s > 0:
                            await asyncio.sleep(self.settle_s)
        finally:
            await self.close()

    def _next_gap(self, copied: bool) -> float:
        """The pause before the next pass: doubling from min_gap_s while records keep coming, back
        to min_gap_s after a pass that found none (a lone sale after a quiet spell goes in at once)."""
        self._gap_s = min(max(self._gap_s * 2, self.min_gap_s), self.max_gap_s) if copied else self.min_gap_s
        return self._gap_s

    def wake(self) -> None:
        """A hint that the spool changed; safe from any thread (the spool's writer thread too)."""
        if self._hinted:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._hinted = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake.set)

    def note_tail(self, seq: int) -> None:
        """The spool's tail as its writer knows it: a read-only spool has no memory of it, and
        the lag of records no pass has read yet must show all the same."""
        self._seen_tail = max(self._seen_tail, seq)

    def beat_soon(self) -> None:
        """Send the heartbeat at the next pass (the terminal's mode changed), and wake for it;
        safe from any thread."""
        self._beat_at = None
        self.wake()

    async def sync_once(self) -> None:
        """One pass (see the module doc). MirrorUnavailable, MirrorFork, MirrorSchemaMissing or
        MirrorRejected when it could not finish; the same shows in ``status()``."""
        async with self._lock:
            try:
                conn = await self._connection()
                refused = await self._pass(conn)
                if refused is None and self._alarms:
                    # Cleared before the heartbeat, which goes now: the fleet view drops the alarm
                    # with this pass, not a heartbeat later.
                    self._alarms.clear()
                    self._beat_at = None
                if not isinstance(refused, MirrorSchemaMissing):
                    await self._maybe_heartbeat(conn)  # with the alarm: the fleet view is where IT sees it
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
                await self._drop()
                error = MirrorUnavailable(_lost(exc))
                self._last_error = error.detail
                raise error from exc
            except MirrorUnavailable as exc:
                await self._drop()
                self._last_error = exc.detail
                raise
            except MirrorError as exc:
                self._raise_alarm(exc)
                raise
            except psycopg.Error as exc:
                rejected = MirrorRejected(f"the mirror refused a write: {_lost(exc)}")
                self._raise_alarm(rejected)
                raise rejected from exc
            if refused is not None:
                raise refused
            self._alarms.clear()
            self._last_ok, self._last_error = now_rfc3339(), None

    async def _pass(self, conn: psycopg.AsyncConnection[Any]) -> MirrorError | None:
        """Copy and push statuses; an alarm (raised here) is returned, a lost connection raised.

        A batch the server refuses (``mirror_rejected``) does not stop the status changes of the
        rows already mirrored: the head was verified, and each update names its row's hash.
        """
        refused: MirrorError | None = None
        try:
            await self._adopt(conn, await self._db(chain.ensure_head(conn, self.terminal_id)), start=True)
            try:
                await self._copy(conn)
            except MirrorRejected as exc:
                refused = exc
            except psycopg.Error as exc:
                if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                    raise
                refused = MirrorRejected(f"the mirror refused a write: {_lost(exc)}")
            if refused is not None:
                self._raise_alarm(refused)
            await self._statuses(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except (MirrorFork, MirrorSchemaMissing, MirrorRejected) as exc:
            self._raise_alarm(exc)
            return exc
        except psycopg.Error as exc:
            error = MirrorRejected(f"the mirror refused a write: {_lost(exc)}")
            self._raise_alarm(error)
            return error
        return refused

    async def wait_mirrored(self, seq: int, timeout_s: float) -> None:
        """Until the mirror's head reaches ``seq`` (TimeoutError after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while self._head is None or self._head[0] < seq:
                await self._progress.wait()

    async def close(self) -> None:
        await self._drop()

    # -- status ------------------------------------------------------------------------------------
    def status(self) -> MirrorStatus:
        """The copier's state now: no query, no wait (memory only)."""
        tail = self._spool_tail()
        head = self._head
        unmirrored = None if head is None or tail is None else max(tail - head[0], 0)
        oldest = self._oldest[1] if self._oldest and unmirrored else None
        lag_s = None
        if unmirrored == 0:
            lag_s = 0.0
        elif oldest is not None:
            lag_s = max(time.time() - datetime.fromisoformat(oldest).timestamp(), 0.0)
        return MirrorStatus(
            connected=self._conn is not None and not self._conn.closed,
            server=self._server,
            mirrored_seq=None if head is None else head[0],
            mirrored_hash=None if head is None else head[1],
            spool_seq=tail,
            unmirrored=unmirrored,
            oldest_unmirrored_at=oldest,
            lag_s=lag_s,
            last_ok_at=self._last_ok,
            last_error=self._last_error,
            alarms=tuple(self._alarms.values()),
            running_s=time.monotonic() - self._created,
        )

    # -- one pass ----------------------------------------------------------------------------------
    async def _copy(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The records after the head (verified by ``_pass``), batch by batch.

        A backlog goes in full batches, each read from the spool and encoded (rows.batch_text) in a
        thread while the one before it is being written: the reading and encoding of the records,
        the copier's own share of the work, overlaps the server's.
        """
        moves = 0
        ahead: tuple[int, asyncio.Future[tuple[list[Record], str]]] | None = None  # (after seq, its batch)
        try:
            while True:
                assert self._head is not None
                after, after_hash = self._head
                if ahead is not None and ahead[0] == after:
                    batch, text = await ahead[1]
                else:
                    if ahead is not None:
                        _forget(ahead[1])
                    batch, text = await asyncio.to_thread(self._prepare, after)
                ahead = None
                if not batch:
                    return
                self._seen_tail = max(self._seen_tail, batch[-1].seq)
                if batch[0].seq != after + 1 or batch[0].prev_hash != after_hash:
                    raise MirrorFork(f"this spool does not continue the mirror's head (seq {after}): its next "
                                     f"record is seq {batch[0].seq} (pruned before it was mirrored, or another "
                                     "chain)", after)
                if len(batch) == self.batch_size:  # more may follow: the next batch, meanwhile
                    ahead = (batch[-1].seq, asyncio.ensure_future(asyncio.to_thread(self._prepare, batch[-1].seq)))
                if await self._db(chain.copy_batch(conn, batch, text)):
                    self._moved_to((batch[-1].seq, batch[-1].hash))
                    moves = 0
                    if len(batch) < self.batch_size:
                        # The spool's end when read: a record appended since has woken the next pass,
                        # so asking again now would only cost another read and thread hop.
                        return
                    continue
                moves += 1
                if moves > _MOVES_BEFORE_FORK:
                    raise MirrorFork(f"the mirror's head of {self.terminal_id} keeps moving under this copier: "
                                     "another process is mirroring the same terminal id", after)
                head = await self._db(chain.read_head(conn, self.terminal_id))
                if head is None:
                    raise MirrorSchemaMissing(f"the head row of terminal {self.terminal_id} disappeared")
                await self._adopt(conn, head, batch)
        finally:
            if ahead is not None:
                _forget(ahead[1])

    def _prepare(self, after: int) -> tuple[list[Record], str]:
        """The next batch after seq ``after`` and its rows.batch_text (blocking: in a thread)."""
        batch = self.spool.records(None, after, self.batch_size)
        return batch, batch_text(batch) if batch else ""

    async def _adopt(self, conn: psycopg.AsyncConnection[Any], head: chain.Head,
                     batch: list[Record] | None = None, *, start: bool = False) -> None:
        """Take ``head`` as where the mirror stands, once it is verified against the spool. With
        ``start`` (a pass's first look), a mirror that holds nothing of a spool pruned before it was
        mirrored starts at the spool's prune checkpoint."""
        at_head, checkpoint, spool_last = await asyncio.to_thread(self._spool_at, head[0])
        pruned_first = start and checkpoint is not None and checkpoint[0] > head[0]
        if pruned_first and checkpoint and await self._db(chain.start_at(conn, self.terminal_id, head, checkpoint)):
            log.info("mirror: this spool's records up to seq %d were pruned before any was mirrored: the "
                     "mirror of %s starts after it", checkpoint[0], self.terminal_id)
            head, at_head = checkpoint, None
        await self._db(chain.verify_head(conn, self.terminal_id, head, at_head, spool_last, checkpoint))
        if batch and head[0] >= batch[0].seq:
            await self._db(chain.already_there(conn, self.terminal_id, batch, head))
        self._moved_to(head)

    def _spool_at(self, seq: int) -> tuple[Record | None, chain.Head | None, int]:
        """(the spool's record at ``seq``, its prune checkpoint, its tail) for a head at ``seq``
        (blocking: in a thread). The usual case, the record there, is one read: the checkpoint
        (None then) and the tail matter only when it is not."""
        record = self.spool.get_seq(seq) if seq > 0 else None
        if record is not None:
            return record, None, seq
        return None, self.spool.checkpoint(), self.spool.stats().last_seq

    async def _statuses(self, conn: psycopg.AsyncConnection[Any]) -> None:
        assert self._head is not None
        if not self._marked:
            mark = await asyncio.to_thread(newest_mark, self.spool)  # first: later changes come again
            await self._db(reconcile(conn, self.spool, self._head[0]))
            self._mark, self._marked = mark, True
            return
        while True:
            changes = await asyncio.to_thread(changes_after, self.spool, self._mark)
            if changes.broken:
                log.info("mirror: the spool's history cursor lost its place (a prune?); comparing open records")
                self._marked = False
                await self._statuses(conn)
                return
            seqs = [seq for seq in changes.seqs if seq <= self._head[0]]  # later ones go in as they are then
            if seqs:
                await self._db(push_statuses(conn, await asyncio.to_thread(records_at, self.spool, seqs)))
            if changes.mark == self._mark:
                return
            self._mark = changes.mark

    async def _maybe_heartbeat(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._heartbeat is None:
            return
        if self._beat_at is not None and time.monotonic() - self._beat_at < self.heartbeat_s:
            return
        # In a thread: the daemon's values may take a read of the spool (its pending amount).
        beat = await asyncio.to_thread(self._heartbeat)
        if beat is None:
            return
        status = self.status()
        await self._db(send_heartbeat(conn, self.terminal_id, beat, spool_last_seq=status.spool_seq,
                                      oldest_unmirrored_at=status.oldest_unmirrored_at,
                                      mirror_alarms=[alarm.as_dict() for alarm in status.alarms]))
        self._beat_at = time.monotonic()

    # -- helpers -----------------------------------------------------------------------------------
    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = await self._db(async_connect(self._info))
        server = server_of(self._conn)
        if server != self._server:
            log.info("mirror: connected to %s", server)
        self._server = server
        # Whatever happened while away (a failover to an older copy, a restore of the database),
        # the rows that may still change are compared again once.
        self._marked = False
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _db(self, step: Awaitable[T]) -> T:
        # A server that stopped answering (no reset: power cut, cable) must not hold a pass forever.
        async with asyncio.timeout(self.call_timeout_s):
            return await step

    def _moved_to(self, head: chain.Head) -> None:
        self._head = head
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def _raise_alarm(self, exc: MirrorError) -> None:
        self._last_error = exc.detail
        if exc.code not in self._alarms:
            log.error("mirror alarm %s: %s", exc.code, exc.detail)
            self._alarms[exc.code] = MirrorAlarm(exc.code, exc.detail, now_rfc3339(), getattr(exc, "seq", None))
            self._beat_at = None  # the fleet view shows a new alarm with the next heartbeat, sent now

    def _spool_tail(self) -> int | None:
        try:
            return max(self.spool.pending_summary().last_seq, self._seen_tail)
        except SpoolError:  # read-only or closed: what the copier saw last
            return self._seen_tail if self._head is not None else None

    async def _refresh_oldest(self) -> None:
        """Keep (seq, spooled_at) of the first unmirrored record, for the lag's age."""
        head, tail = self._head, self._spool_tail()
        if head is None or tail is None or tail <= head[0]:
            self._oldest = None
            return
        if self._oldest is None or self._oldest[0] != head[0] + 1:
            record = await asyncio.to_thread(self.spool.get_seq, head[0] + 1)
            self._oldest = None if record is None else (record.seq, record.spooled_at)


def _forget(future: asyncio.Future[Any]) -> None:
    """Drop a read-ahead: cancelled if not done (its thread finishes on its own and what it read
    is dropped), its error if done (read again by the next pass, not logged as never retrieved)."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


def _lost(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the mirror server did not answer in time"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

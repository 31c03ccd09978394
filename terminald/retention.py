"""Retention: what is older than `spool.retention_days` leaves `spool.db`, once a day.

The daemon owns one `Retention` (started after the spool, stopped before it closes).
Its task runs on the event loop and does the blocking work in threads
(`asyncio.to_thread`), in this order:

1. records: `Spool.prune` (docs/spool.md): the oldest run of settled/resolved records final
   for longer than the retention, never one someone may still act on (pending, rejected,
   a refund owed) nor anything after it; the `checkpoint` row keeps the last pruned seq and
   hash so the rest of the chain still verifies. At most `chunk` records per transaction:
   the first run after an upgrade may find a year of records to prune, and one transaction
   for all of them would hold the spool's writer (and every sale behind it) for seconds.
2. print jobs: finished jobs of pruned transactions, and finished jobs older than the
   retention (`terminald.receipts.jobs.prune_before`).
3. events older than the retention, keeping at least the last 1,000 that the SSE contract
   promises to replay (`terminald.events.prune_before`).
4. the national platform's call log (`nhsa_calls`, only in a file that has it): finished calls
   (ok, failed, reversed) older than the retention, `chunk` rows per transaction through the
   spool's writer; never a call left open, nor the kept answer of a record still pending
   (`terminald.upstream.nhsa.calllog.prune_calls`).

After each chunk of records this task runs a `PRAGMA wal_checkpoint(PASSIVE)` of its own (on
its own connection: it never waits for the writer or for readers). The spool's checkpointer
does the same only every few seconds, and deleting is fast: pruning 200,000 records (a 190 MB
file) in chunks grew the WAL to 140 MB before its passes caught up; checkpointed after each
chunk, the next commit starts the WAL from the top again and it stayed under 6 MB. Under a
sale every few milliseconds throughout, a commit often lands between the checkpoint and the
next chunk and the WAL is not restarted (about 100 MB instead of 160 MB in the same test):
there the checkpointer's backstop, which truncates a WAL past its limit, bounds it as it does
on any busy day. Freed pages are reused by later appends; the file is not shrunk (a VACUUM
would rewrite it under an exclusive lock).

The first run comes `first_delay_s` after start (readiness never waits for it), then one every
`interval_s`. A failed run is logged and tried again at the next one; it never stops the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spool import Spool, connect
from terminald import events
from terminald.receipts import jobs
from terminald.upstream.nhsa.calllog import prune_calls

__all__ = ["CHUNK", "DAY_S", "FIRST_RUN_DELAY_S", "Retention", "RetentionRun"]

log = logging.getLogger("terminald.retention")

DAY_S = 86_400.0
FIRST_RUN_DELAY_S = 5.0  # after start: the start-up work (tail check, first uploads) goes first
CHUNK = 2000  # records per prune transaction: tens of milliseconds of the writer's time


@dataclass(frozen=True)
class RetentionRun:
    """What one run removed, and where the spool's chain now starts."""

    records: int
    print_jobs: int  # deleted
    print_jobs_emptied: int  # kept (they mark the next receipt as a reprint), bytes dropped
    events: int
    checkpoint_seq: int  # the last pruned seq (0: nothing pruned ever)
    finished_at: datetime
    nhsa_calls: int = 0  # call-log rows of the national platform deleted


class Retention:
    def __init__(
        self,
        spool: Spool,
        db_path: Path,
        retention_days: int,
        *,
        interval_s: float = DAY_S,
        first_delay_s: float = FIRST_RUN_DELAY_S,
        chunk: int = CHUNK,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        if interval_s <= 0 or first_delay_s < 0 or chunk < 1:
            raise ValueError("interval_s and chunk must be positive, first_delay_s not negative")
        self._spool = spool
        self._db_path = Path(db_path)
        self.retention_days = retention_days
        self.interval_s = interval_s
        self.first_delay_s = first_delay_s
        self.chunk = chunk
        self._clock = clock
        self._stop = asyncio.Event()
        self._running = asyncio.Lock()  # a run_once() and the schedule never overlap
        self._task: asyncio.Task[None] | None = None
        self.runs = 0  # runs that completed
        self.failures = 0  # runs that raised (each retried at the next one)
        self.last: RetentionRun | None = None
        self.last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Schedule the runs on the running loop; returns at once."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._schedule(), name="retention")

    async def stop(self) -> None:
        """End the schedule. A run in progress prunes no further chunk of records; it finishes
        the chunk it is in and its two single-statement steps (print jobs, events)."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _schedule(self) -> None:
        delay = self.first_delay_s
        while not await self._stopped_within(delay):
            try:
                await self.run_once()
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("retention run failed, trying again in %.0f s: %s", self.interval_s,
                            self.last_error, exc_info=True)
            delay = self.interval_s

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        return self._stop.is_set()

    # -- one run -----------------------------------------------------------------------------
    async def run_once(self, now: datetime | None = None) -> RetentionRun:
        """Prune records, then print jobs, events and nhsa calls, as of ``now`` (default: the clock)."""
        async with self._running:
            moment = now if now is not None else self._clock()
            before = moment - timedelta(days=self.retention_days)
            records = 0
            while not self._stop.is_set():
                pruned = await asyncio.to_thread(
                    self._spool.prune, self.retention_days, moment, max_records=self.chunk)
                records += pruned
                if pruned:
                    await asyncio.to_thread(_checkpoint_wal, self._db_path)
                if pruned < self.chunk:
                    break
            deleted_jobs, emptied_jobs = await asyncio.to_thread(jobs.prune_before, self._db_path, before)
            deleted_events = await asyncio.to_thread(events.prune_before, self._db_path, before)
            calls = 0
            while not self._stop.is_set():
                # Chunked like the records: a first run may find a year of rows (a sign-in and
                # a few calls per sale), and the writer serves the sales meanwhile.
                gone = await asyncio.to_thread(prune_calls, self._spool, before, chunk=self.chunk)
                calls += gone
                if gone < self.chunk:
                    break
            checkpoint = await asyncio.to_thread(self._checkpoint_seq)
            run = RetentionRun(records, deleted_jobs, emptied_jobs, deleted_events, checkpoint,
                               datetime.now(UTC), calls)
            self.runs += 1
            self.last, self.last_error = run, None
            log.info(
                "retention (%d days): pruned %d records (chain checkpoint now seq %d), %d print jobs "
                "(%d more emptied), %d events, %d nhsa calls",
                self.retention_days, run.records, run.checkpoint_seq, run.print_jobs, run.print_jobs_emptied,
                run.events, run.nhsa_calls)
            return run

    def _checkpoint_seq(self) -> int:
        """The last pruned seq: the first kept record's predecessor, or the tail if none is kept."""
        first = self._spool.records(limit=1)
        return first[0].seq - 1 if first else self._spool.stats().last_seq


def _checkpoint_wal(db_path: Path) -> None:
    """Copy the WAL into the file now so the writer can start it from the top (see above).

    PASSIVE: never waits; frames a reader still needs stay for the spool's checkpointer.
    """
    conn = connect(db_path)
    try:
        # Appends that commit meanwhile leave frames behind: go again for those (a few, fast)
        # so the checkpoint is complete, which is what lets the next commit restart the WAL.
        for _ in range(5):
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy or copied >= frames:
                return
    finally:
        conn.close()

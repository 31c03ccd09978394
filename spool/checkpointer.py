"""Moves WAL frames into the main file off the append path, and keeps the WAL bounded.

SQLite's automatic checkpoint runs inside the commit that crosses the
threshold, so one unlucky append per thousand pages would pay for copying the
WAL and two more fsyncs. The writer turns that off and hints this thread
every ``HINT_EVERY_COMMITS`` commits instead; a PASSIVE checkpoint here never
waits for the writer or for readers, and its result row is read.

A PASSIVE checkpoint cannot copy frames newer than the oldest open read
snapshot, and a writer only starts the WAL from the top again when no reader
is using it, so under steady appends with overlapping readers the WAL file
grows without end. The backstop: when, after its PASSIVE pass, this thread
finds the WAL file larger than the limit (``WAL_LIMIT_BYTES`` unless given),
it marks a ``wal_checkpoint(TRUNCATE)`` as due. The writer thread runs it
right after its next commit (``run_due``), between transactions: there it
never has to win the write lock from a busy writer, and it only copies what
came since the PASSIVE pass. TRUNCATE waits for readers still on old snapshots
(new ones read the main file meanwhile), at most ``RESTART_BUSY_MS``, then
empties the WAL file. If the writer stays idle, this thread runs it itself.

Its result row says ``busy`` when a reader kept its snapshot past that wait
(or another process was checkpointing): the attempt is retried after a pause
of ``RETRY_FIRST_S`` doubling up to ``RETRY_MAX_S``, and a warning with the
WAL's size is logged, at most once every ``WARN_EVERY_S``. So a reader that
never lets go costs each attempt one short stall of the appends, and the WAL
grows meanwhile; the WAL is emptied at the first attempt after it lets go.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from spool.errors import SpoolError
from spool.store import BUSY_TIMEOUT_MS, connect

__all__ = ["HINT_EVERY_COMMITS", "RESTART_BUSY_MS", "WAL_LIMIT_BYTES", "Checkpointer"]

log = logging.getLogger(__name__)

HINT_EVERY_COMMITS = 100
WAL_LIMIT_BYTES = 64 * 1024 * 1024  # read when a Checkpointer is made: tests may patch it
RESTART_BUSY_MS = 200  # longest wait for old readers while the write lock is held
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0
WARN_EVERY_S = 60.0
_IDLE_SECONDS = 5.0


def _wal_size(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except OSError:
        return 0


class Checkpointer:
    def __init__(self, path: Path, wal_limit_bytes: int | None = None) -> None:
        self._path = path
        self.wal_limit_bytes = WAL_LIMIT_BYTES if wal_limit_bytes is None else wal_limit_bytes
        self._wake = threading.Event()
        self._stop = False
        # One checkpoint at a time from this process: a second one would get SQLITE_BUSY at once.
        self._lock = threading.Lock()
        self.due = False  # a TRUNCATE is wanted; read by the writer after each commit
        self._due_since = 0.0
        self._writer_seen = 0.0  # when the writer last came to run it (monotonic)
        self.checkpoints = 0  # PASSIVE passes that ran
        self.truncations = 0  # backstop TRUNCATEs that emptied the WAL
        self.busy_truncations = 0  # backstop attempts that came back busy
        self._retry_s = RETRY_FIRST_S
        self._next_attempt = 0.0  # monotonic time before which no backstop attempt is made
        self._last_warning = -WARN_EVERY_S
        self._thread = threading.Thread(target=self._loop, name="spool-checkpoint", daemon=True)
        self._thread.start()

    def hint(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()

    def run_due(self, conn: sqlite3.Connection) -> None:
        """On the writer thread, outside any transaction: run the due TRUNCATE on ``conn``.

        Skipped (and left due) while this thread is checkpointing: the next commit tries again.
        """
        if not self.due:
            return
        self._writer_seen = time.monotonic()
        if not self._lock.acquire(blocking=False):
            return
        try:
            if not self.due:
                return
            conn.execute(f"PRAGMA busy_timeout = {RESTART_BUSY_MS}")
            try:
                self._truncate(conn)
            finally:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:  # the commit before is durable: never fail it for this
            log.warning("spool WAL truncation of %s failed: %s", self._path, exc)
        finally:
            self._lock.release()

    def _truncate(self, conn: sqlite3.Connection) -> None:
        """Run the backstop on ``conn`` (the lock held); read its result row."""
        self.due = False
        wal_bytes = _wal_size(self._path)
        busy, log_frames, done_frames = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        now = time.monotonic()
        if not busy:
            self.truncations += 1
            self._retry_s = RETRY_FIRST_S
            self._last_warning = -WARN_EVERY_S  # the next trouble is news again
            log.info("spool WAL of %s was %d bytes (limit %d): checkpointed and truncated",
                     self._path, wal_bytes, self.wal_limit_bytes)
            return
        self.busy_truncations += 1
        wait = self._retry_s
        self._next_attempt = now + wait
        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning(
                "spool WAL of %s is %d bytes (limit %d) and could not be truncated: a reader still holds an "
                "old snapshot, or another process a lock (%s of %s frames copied; %d busy attempts so far); "
                "retrying in %.2f s",
                self._path, _wal_size(self._path), self.wal_limit_bytes, done_frames, log_frames,
                self.busy_truncations, wait)

    def _loop(self) -> None:
        conn: sqlite3.Connection | None = None
        timeout = _IDLE_SECONDS
        try:
            while not self._stop:
                self._wake.wait(timeout)
                self._wake.clear()
                if self._stop:
                    break
                try:
                    if conn is None:
                        conn = connect(self._path)
                        # Only a TRUNCATE calls the busy handler (PASSIVE never waits): it holds
                        # the write lock while it waits, so the wait must stay short.
                        conn.execute(f"PRAGMA busy_timeout = {RESTART_BUSY_MS}")
                    timeout = self._pass(conn)
                except (sqlite3.Error, SpoolError) as exc:
                    # Frames stay in the WAL and are retried; nothing committed is at risk.
                    log.warning("spool checkpoint of %s failed: %s", self._path, exc)
                    timeout = _IDLE_SECONDS
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            self.due = False
            if conn is not None:
                conn.close()

    def _pass(self, conn: sqlite3.Connection) -> float:
        """One PASSIVE checkpoint, then the backstop's bookkeeping; return the time to the next pass."""
        with self._lock:
            busy, log_frames, done_frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if busy:  # another process is checkpointing: it does the copying
                log.debug("spool checkpoint of %s busy (%s of %s frames)", self._path, done_frames, log_frames)
            if _wal_size(self._path) <= self.wal_limit_bytes:
                self.due = False
                self._retry_s = RETRY_FIRST_S
                return _IDLE_SECONDS
            now = time.monotonic()
            if now < self._next_attempt:
                return self._next_attempt - now
            if not self.due:
                self.due, self._due_since = True, now  # for the writer's next commit
                return RETRY_FIRST_S
            if min(now - self._due_since, now - self._writer_seen) < RETRY_FIRST_S:
                return RETRY_FIRST_S  # the writer is busy: it runs it after a commit
            # Due, and no commit for a while: with the writer idle this thread can have the
            # write lock without a fight.
            self._truncate(conn)
            return RETRY_FIRST_S

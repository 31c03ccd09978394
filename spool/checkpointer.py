"""Moves WAL frames into the main file off the append path, and keeps the WAL bounded.

SQLite's automatic checkpoint runs inside the commit that crosses the
threshold, so one unlucky append per thousand pages would pay for copying the
WAL and two more fsyncs. The writer turns that off and hints this thread
every ``HINT_EVERY_COMMITS`` commits instead; a PASSIVE checkpoint here never
waits for the writer or for readers.

A PASSIVE checkpoint cannot copy frames newer than the oldest open read
snapshot, and the writer only starts the WAL from the top again when no
reader is using it, so under steady appends with overlapping readers the WAL
file grows without end. The backstop: whenever this thread finds the WAL file
larger than the limit (``WAL_LIMIT_BYTES`` unless given), it runs
``wal_checkpoint(TRUNCATE)`` right after its PASSIVE pass. That takes the
write lock, copies what is left, waits for the readers still on old snapshots
(new readers read the main file meanwhile) and cuts the WAL to 0 bytes. It
waits at most ``RESTART_BUSY_MS`` (SQLite's busy handler): appends queue
behind the write lock for that long at most, plus the copying. If a reader
still holds an old snapshot, the result row says ``busy``: the attempt is
retried with a growing pause (``RETRY_FIRST_S`` doubling up to
``RETRY_MAX_S``), and a warning with the WAL's size is logged (at most once
every ``WARN_EVERY_S``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from spool.errors import SpoolError
from spool.store import connect

__all__ = ["HINT_EVERY_COMMITS", "RESTART_BUSY_MS", "WAL_LIMIT_BYTES", "Checkpointer"]

log = logging.getLogger(__name__)

HINT_EVERY_COMMITS = 100
WAL_LIMIT_BYTES = 64 * 1024 * 1024  # read when a Checkpointer is made: tests may patch it
RESTART_BUSY_MS = 200  # longest wait for old readers while holding the write lock
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
        self.checkpoints = 0  # PASSIVE passes that ran
        self.truncations = 0  # backstop TRUNCATEs that emptied the WAL
        self.busy_truncations = 0  # backstop attempts that came back busy
        self._retry_s = RETRY_FIRST_S
        self._next_truncate = 0.0  # monotonic time before which no backstop attempt is made
        self._last_warning = -WARN_EVERY_S
        self._thread = threading.Thread(target=self._loop, name="spool-checkpoint", daemon=True)
        self._thread.start()

    def hint(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()

    def _loop(self) -> None:
        conn: sqlite3.Connection | None = None
        timeout = _IDLE_SECONDS
        try:
            while not self._stop:
                self._wake.wait(timeout)
                self._wake.clear()
                if self._stop:
                    break
                timeout = _IDLE_SECONDS
                try:
                    if conn is None:
                        conn = connect(self._path)
                        # Only the backstop's TRUNCATE calls the busy handler (PASSIVE never waits):
                        # it holds the write lock while it waits, so the wait must stay short.
                        conn.execute(f"PRAGMA busy_timeout = {RESTART_BUSY_MS}")
                    busy, log_frames, done_frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    if busy:  # another connection (a CLI's, say) is checkpointing: it does the work
                        log.debug("spool checkpoint of %s busy (%s/%s frames)", self._path, done_frames, log_frames)
                    wal_bytes = _wal_size(self._path)
                    if wal_bytes > self.wal_limit_bytes:
                        timeout = self._backstop(conn, wal_bytes)
                    else:
                        self._retry_s = RETRY_FIRST_S
                except (sqlite3.Error, SpoolError) as exc:
                    # Frames stay in the WAL and are retried; nothing committed is at risk.
                    log.warning("spool checkpoint of %s failed: %s", self._path, exc)
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()

    def _backstop(self, conn: sqlite3.Connection, wal_bytes: int) -> float:
        """Try to empty a WAL over the limit; return how long to sleep before the next pass."""
        now = time.monotonic()
        if now < self._next_truncate:
            return self._next_truncate - now
        busy, log_frames, done_frames = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            self.truncations += 1
            self._retry_s = RETRY_FIRST_S
            self._last_warning = -WARN_EVERY_S  # the next trouble is news again
            log.info("spool WAL of %s was %d bytes (over %d): checkpointed and truncated",
                     self._path, wal_bytes, self.wal_limit_bytes)
            return _IDLE_SECONDS
        self.busy_truncations += 1
        wait = self._retry_s
        self._next_truncate = now + wait
        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning(
                "spool WAL of %s is %d bytes (limit %d) and could not be truncated: a reader holds an "
                "old snapshot (%s of %s frames copied; %d busy attempts so far); retrying in %.2f s",
                self._path, _wal_size(self._path), self.wal_limit_bytes, done_frames, log_frames,
                self.busy_truncations, wait)
        return wait

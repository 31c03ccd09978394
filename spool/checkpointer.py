"""Moves WAL frames into the main file off the append path.

SQLite's automatic checkpoint runs inside the commit that crosses the
threshold, so one unlucky append per thousand pages would pay for copying the
WAL and two more fsyncs. The writer turns that off and hints this thread
instead; a PASSIVE checkpoint here never blocks the writer or readers. If the
WAL still grows past ``WAL_LIMIT_BYTES`` (a checkpoint that never catches up
under constant load) the writer restarts it itself, see ``Writer``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from spool.errors import SpoolError
from spool.store import connect

__all__ = ["HINT_EVERY_COMMITS", "WAL_LIMIT_BYTES", "Checkpointer"]

log = logging.getLogger(__name__)

HINT_EVERY_COMMITS = 100
WAL_LIMIT_BYTES = 64 * 1024 * 1024
_IDLE_SECONDS = 5.0


class Checkpointer:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stop = False
        self.checkpoints = 0
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
        try:
            while not self._stop:
                self._wake.wait(_IDLE_SECONDS)
                self._wake.clear()
                if self._stop:
                    break
                try:
                    if conn is None:
                        conn = connect(self._path)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except (sqlite3.Error, SpoolError) as exc:
                    # Frames stay in the WAL and are retried; nothing committed is at risk.
                    log.warning("spool checkpoint of %s failed: %s", self._path, exc)
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()

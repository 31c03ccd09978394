"""A tiny side file ``<spool>-seq`` holding the last acknowledged seq and hash.

SQLite cannot tell a WAL that lost its last committed frames (truncated,
deleted, an old copy restored over the file) from one that never had them.
After every durable commit the writer overwrites this file in place with
``"<seq> <hash>"`` (fixed width, one ``pwrite``) before it acknowledges the
appends. Written only after the commit's fsync, it can lag behind the spool
but never run ahead of it: at open, a witness *ahead* of the file means
acknowledged records are missing, and the spool refuses to open instead of
reusing their seqs. After a deliberate restore from a backup, delete the
``-seq`` file to accept the older state.

Durability, without a second fsync on the append path: a thread of its own
``fdatasync``s the file whenever it changed, at most once every
``SYNC_INTERVAL_S``, so on disk the witness lags the last acknowledged append
by at most that interval plus one ``fdatasync`` (if the disk honours
``fdatasync``, as the WAL's durability assumes too); ``close`` syncs the last
value. At open (``start``) the file is made to hold the spool's tail and
synced before the first append; when the file is created, its directory is
fsynced once so the name survives a power cut too.
A witness missing or unreadable at open while the spool has records is
recreated with a warning: the check for a lost tail could not be made that
time (see docs/spool.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from spool.store import fsync_dir

__all__ = ["SYNC_INTERVAL_S", "Witness", "read_witness", "witness_path"]

log = logging.getLogger(__name__)

_SIZE = 96  # fixed width, so a shorter value never leaves stale bytes behind
SYNC_INTERVAL_S = 0.1  # read when a Witness is made: tests may patch it


def witness_path(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name + "-seq")


def read_witness(spool_path: Path) -> tuple[int, str] | None:
    """(seq, hash) from the side file, or None when absent or unreadable."""
    try:
        text = witness_path(spool_path).read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[1]) != 64:
        if text:
            log.warning("ignoring unreadable spool witness %s", witness_path(spool_path))
        return None
    return int(parts[0]), parts[1]


class Witness:
    """The writer's handle on the side file; failures are logged, never raised."""

    def __init__(self, spool_path: Path, sync_interval_s: float | None = None) -> None:
        self._path = witness_path(spool_path)
        self._interval = SYNC_INTERVAL_S if sync_interval_s is None else sync_interval_s
        self.found = read_witness(spool_path)  # what the file held before this handle wrote to it
        self.durable: tuple[int, str] | None = None  # the value as of the last completed fdatasync
        self.syncs = 0
        self._fd: int | None = None
        self._created = False
        self._cond = threading.Condition()
        self._latest: tuple[int, str] | None = None  # the value last written
        self._changes = 0  # writes so far
        self._synced_changes = 0  # writes covered by the last completed fdatasync
        self._closing = False
        self._idle = False  # the sync thread waits for a write (not out a pause): wake it
        self._sync_failing = False
        self._thread: threading.Thread | None = None
        try:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                self._created = True
            except FileExistsError:
                self._fd = os.open(self._path, os.O_RDWR)
        except OSError as exc:
            log.warning("spool witness %s unavailable: %s", self._path, exc)
            return
        self._thread = threading.Thread(target=self._sync_loop, name="spool-witness-sync", daemon=True)
        self._thread.start()

    def start(self, seq: int, hash_: str) -> None:
        """Before the first append: make the file hold the spool's tail ``(seq, hash_)``, durably."""
        if self._fd is None:
            return
        if self.found is None and seq > 0:
            log.warning(
                "spool witness %s was missing or unreadable at open: a lost WAL tail could not be detected "
                "this time; recreated at seq %d", self._path, seq)
        if (self.found is None or self.found[0] < seq) and self._put(seq, hash_):
            with self._cond:  # synced here and now: nothing for the sync thread to do
                self._latest = (seq, hash_)
                self._changes += 1
            self._sync()
        if self._created:
            try:  # the file's name must survive a power cut too, not only its content
                fsync_dir(self._path.parent)
            except OSError as exc:
                log.warning("spool witness directory %s not synced: %s", self._path.parent, exc)
            self._created = False

    def write(self, seq: int, hash_: str) -> None:
        """After a durable commit: overwrite the value; the sync thread syncs it within the interval."""
        if not self._put(seq, hash_):
            return
        with self._cond:
            self._latest = (seq, hash_)
            self._changes += 1
            if self._idle:  # a wake-up per commit would cost the writer the interpreter lock
                self._cond.notify()

    def _put(self, seq: int, hash_: str) -> bool:
        if self._fd is None:
            return False
        line = f"{seq} {hash_}".ljust(_SIZE - 1) + "\n"
        try:
            os.pwrite(self._fd, line.encode("ascii"), 0)
        except OSError as exc:  # the commit is durable already; never report it as failed
            log.warning("spool witness %s not updated: %s", self._path, exc)
            return False
        return True

    def close(self) -> None:
        if self._fd is None:
            return
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()  # it syncs the last value before it ends
        os.close(self._fd)
        self._fd = None

    # -- the sync thread ---------------------------------------------------------------------------
    def _sync_loop(self) -> None:
        last = float("-inf")
        while True:
            with self._cond:
                while self._changes == self._synced_changes and not self._closing:
                    self._idle = True
                    self._cond.wait()
                self._idle = False
                if self._changes == self._synced_changes:
                    return  # closing, nothing left to sync
                # Batch: at most one fdatasync per interval, however many commits came meanwhile.
                # Only close() interrupts the pause.
                until = last + self._interval
                while not self._closing and (pause := until - time.monotonic()) > 0:
                    self._cond.wait(pause)
                closing = self._closing
            self._sync()
            if closing:
                return  # one last try: a failing disk must not hang close()
            last = time.monotonic()

    def _sync(self) -> None:
        fd = self._fd
        if fd is None:
            return
        with self._cond:
            changes, latest = self._changes, self._latest
        try:
            os.fdatasync(fd)
        except OSError as exc:
            if not self._sync_failing:
                log.warning("spool witness %s not synced: %s", self._path, exc)
            self._sync_failing = True
            time.sleep(self._interval)  # no busy loop on a failing disk; the next pass retries
            return
        self._sync_failing = False
        self.syncs += 1
        with self._cond:
            self._synced_changes = max(self._synced_changes, changes)
            self.durable = latest

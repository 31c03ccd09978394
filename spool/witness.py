"""A tiny side file ``<spool>-seq`` holding the last acknowledged seq and hash.

SQLite cannot tell a WAL that lost its last committed frames (truncated,
deleted, an old copy restored over the file) from one that never had them.
After every durable commit the writer overwrites this file in place with
``"<seq> <hash>"``. It is written after the commit's fsync and never synced
itself, so it can lag behind the spool but never run ahead of it: at open, a
witness *ahead* of the file means acknowledged records are missing, and the
spool refuses to open instead of reusing their seqs. After a deliberate
restore from a backup, delete the ``-seq`` file to accept the older state.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["Witness", "read_witness", "witness_path"]

log = logging.getLogger(__name__)

_SIZE = 96  # fixed width, so a shorter value never leaves stale bytes behind


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

    def __init__(self, spool_path: Path) -> None:
        self._path = witness_path(spool_path)
        self._fd: int | None = None
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("spool witness %s unavailable: %s", self._path, exc)

    def write(self, seq: int, hash_: str) -> None:
        if self._fd is None:
            return
        line = f"{seq} {hash_}".ljust(_SIZE - 1) + "\n"
        try:
            os.pwrite(self._fd, line.encode("ascii"), 0)
        except OSError as exc:  # the commit is durable already; never report it as failed
            log.warning("spool witness %s not updated: %s", self._path, exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

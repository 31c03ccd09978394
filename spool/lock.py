"""Who may write a spool: an advisory lock held by one process at a time.

The process that owns a spool (the daemon, for its whole life) holds the lock;
a command that would write the same file alongside it (`terminald spool
drain`) tries it without waiting and refuses when it is taken, rather than
racing the owner (two uploaders on one backlog make central see a broken
chain). Read-only commands (check, list, show, export) and salvage (which
never writes its source) do not take it.

The lock is `flock` on a separate file, `<spool>.lock`, never on the database
itself: SQLite keeps POSIX (`fcntl`) locks on the database, and POSIX locks
belong to the process, so any other descriptor on the same file that this
process closed would drop them all. `flock` locks belong to the open file
description: the kernel releases this one when the holder exits, however it
exits (SIGKILL included), so a stale lock file never blocks anybody. The file
holds the holder's pid and name, to say who holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from spool.errors import SpoolError

__all__ = ["SpoolLock", "SpoolLocked", "lock_path"]


class SpoolLocked(SpoolError):
    """Another process holds the spool's lock: ``pid`` and ``holder`` as it wrote them (or None / "")."""

    def __init__(self, message: str, pid: int | None, holder: str) -> None:
        super().__init__(message)
        self.pid = pid
        self.holder = holder


def lock_path(spool_path: str | Path) -> Path:
    """``<spool>.lock``, beside the spool file."""
    path = Path(spool_path)
    return path.with_name(path.name + ".lock")


class SpoolLock:
    """A held lock; ``release()`` (or leaving the ``with`` block, or exiting) lets it go."""

    def __init__(self, path: Path, fd: int, holder: str) -> None:
        self.path = path
        self.holder = holder
        self._fd = fd

    @classmethod
    def acquire(cls, spool_path: str | Path, holder: str) -> SpoolLock:
        """Take the lock of ``spool_path`` now, or raise ``SpoolLocked`` naming who holds it.

        ``holder`` names the taker (``"terminald serve"``), for the refusal others get. The
        lock file is created if missing (0600; when created by root, given to the owner of its
        directory, so that the daemon's user can still open it). An ``OSError`` if the
        directory does not exist or cannot be written and the file cannot be opened.
        """
        path = lock_path(spool_path)
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid, who = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                name = who or "another process"
                raise SpoolLocked(f"{name} (pid {pid if pid is not None else 'unknown'}) holds {path}",
                                  pid, who) from None
            raise
        with contextlib.suppress(OSError):  # opened read-only (another user's file): the lock alone counts
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {holder}\n".encode(), 0)
        return cls(path, fd, holder)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # nobody holds it now: a reader finds no pid rather than a stale one
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> SpoolLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open(path: Path) -> int:
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o600)
    except FileExistsError:
        pass
    else:
        if os.geteuid() == 0:  # root (a CLI run with sudo): leave the file to the directory's owner
            with contextlib.suppress(OSError):
                st = os.stat(path.parent)
                os.fchown(fd, st.st_uid, st.st_gid)
        return fd
    try:
        return os.open(path, os.O_RDWR | flags)
    except PermissionError:
        return os.open(path, os.O_RDONLY | flags)  # flock works on a read-only descriptor too


def _read_holder(fd: int) -> tuple[int | None, str]:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace")
    except OSError:
        return None, ""
    first, _, rest = text.strip().partition(" ")
    return (int(first) if first.isdigit() else None), rest.strip()

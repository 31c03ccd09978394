"""Character-device (or plain file) transport: the kernel ``usblp`` driver's
``/dev/usb/lp0``, a parallel port, or a file that collects jobs.

URI grammar: ``file:///ABSOLUTE/PATH`` (no options)

The path must exist: a missing device means the printer is unplugged, and a
file is never created in its place. Jobs are appended. Status queries are
answered only by character devices that read back (usblp does).
"""

from __future__ import annotations

import errno
import os
import select
import stat

from drivers.errors import PrinterConfigError, PrinterUnavailable, PrintInterrupted

from .base import parse_options, split_uri

__all__ = ["FileTransport", "write_fd"]

GRAMMAR = "file:///ABSOLUTE/PATH"

# usblp answers a write with these when the printer is off or out of paper;
# if no byte went through yet, the job can safely wait and be retried.
NOT_READY = {errno.ENOSPC, errno.EIO, errno.ENODEV, errno.ENXIO, errno.EBUSY, errno.EAGAIN}


def write_fd(fd: int, data: bytes, what: str) -> None:
    """Write all of `data`, telling "nothing sent" from "partly sent" apart."""
    view = memoryview(data)
    sent = 0
    while sent < len(view):
        try:
            sent += os.write(fd, view[sent:])
        except OSError as exc:
            if sent == 0 and exc.errno in NOT_READY:
                raise PrinterUnavailable(f"{what} not ready: {exc.strerror}") from exc
            raise PrintInterrupted(
                f"{what} failed after {sent} of {len(view)} bytes: {exc.strerror}"
            ) from exc


class FileTransport:
    def __init__(self, uri: str) -> None:
        parts = split_uri(uri, "file", GRAMMAR)
        if parts.netloc or not parts.path.startswith("/") or parts.path.endswith("/"):
            raise PrinterConfigError(f"bad printer URI {uri!r}; expected {GRAMMAR}")
        parse_options(parts, {}, GRAMMAR)
        self.uri = uri
        self.path = parts.path

    def _open(self, flags: int) -> int:
        try:
            return os.open(self.path, flags | os.O_CLOEXEC)
        except OSError as exc:
            raise PrinterUnavailable(f"cannot open {self.path}: {exc.strerror}") from exc

    def write(self, data: bytes, *, job_id: str = "") -> None:
        fd = self._open(os.O_WRONLY | os.O_APPEND)
        try:
            write_fd(fd, data, self.path)
        finally:
            os.close(fd)

    def query(self, request: bytes, timeout_s: float) -> bytes | None:
        try:
            if not stat.S_ISCHR(os.stat(self.path).st_mode):
                return None
        except OSError as exc:
            raise PrinterUnavailable(f"cannot open {self.path}: {exc.strerror}") from exc
        fd = self._open(os.O_RDWR | os.O_NONBLOCK)
        try:
            os.write(fd, request)
            ready, _, _ = select.select([fd], [], [], timeout_s)
            if not ready:
                return None
            return os.read(fd, 64) or None
        except OSError:
            return None
        finally:
            os.close(fd)

    def close(self) -> None:
        """Nothing is held between calls."""

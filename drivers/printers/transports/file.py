"""Character-device (or plain file) transport: the kernel ``usblp`` driver's
``/dev/usb/lp0``, a parallel port, a FIFO, or a file that collects jobs.

URI grammar: ``file:///ABSOLUTE/PATH[?timeout=SECONDS]``

- ``timeout`` (default 10): how long the device may take no data before the
  job is given up (a printer out of paper that blocks instead of answering).

The path must exist: a missing device means the printer is unplugged, and a
file is never created in its place. Jobs are appended. Status queries are
answered only by character devices that read back (usblp does).

Writes never block: the device is opened ``O_NONBLOCK`` and each write waits
with ``poll()`` for the device to take more, up to ``timeout`` without
progress. A blocking ``write()`` into usblp with the paper out sleeps in the
kernel until paper comes back and cannot be cancelled; closing a non-blocking
usblp fd instead cancels the transfer, so a job given up does not print later.
A FIFO with no reader is an offline printer (``ENXIO`` on open).
"""

from __future__ import annotations

import errno
import os
import select
import stat
import time
from typing import NoReturn

from drivers.errors import (
    PrinterConfigError,
    PrinterTimeout,
    PrinterUnavailable,
    PrintInterrupted,
    PrintTimeout,
)

from .base import parse_options, positive_float, split_uri

__all__ = ["FileTransport", "open_for_write", "write_fd"]

GRAMMAR = "file:///ABSOLUTE/PATH[?timeout=SECONDS]"
DEFAULT_TIMEOUT_S = 10.0

# usblp answers a write with these when the printer is off or out of paper (a FIFO whose
# reader left: EPIPE); if no byte went through yet, the job can safely wait and be retried.
NOT_READY = {errno.ENOSPC, errno.EIO, errno.ENODEV, errno.ENXIO, errno.EBUSY, errno.EPIPE}
# Ready by poll() yet still EAGAIN (usblp reports POLLOUT while out of paper): wait this
# long before asking again, rather than spinning.
_RECHECK_S = 0.05
_POLL_FAILED = select.POLLERR | select.POLLNVAL


def open_for_write(path: str) -> int:
    """A non-blocking, write-only fd on an existing device, FIFO or file."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads, a device with nothing behind it
            raise PrinterUnavailable(f"{path} is offline: nothing is reading it") from exc
        raise PrinterUnavailable(f"cannot open {path}: {exc.strerror}") from exc


def write_fd(fd: int, data: bytes, what: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Write all of `data` to the non-blocking `fd`, telling "nothing sent" from "partly sent"
    apart, and giving up when the device takes no byte for `timeout_s`.

    When every byte is written, waits (same timeout) until the device has taken the last of
    it: a zero-length write succeeds only then (usblp answers EAGAIN while its last transfer
    is in flight, and closing the fd earlier would cancel that transfer)."""
    view = memoryview(data)
    total = len(view)
    sent = 0
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    stalled_until = time.monotonic() + timeout_s
    recheck = False
    while True:
        try:
            n = os.write(fd, view[sent:])
        except BlockingIOError:
            n = -1
        except OSError as exc:
            if sent == 0 and exc.errno in NOT_READY:
                raise PrinterUnavailable(f"{what} not ready: {exc.strerror}") from exc
            raise PrintInterrupted(f"{what} failed after {sent} of {total} bytes: {exc.strerror}") from exc
        if n >= 0:
            if sent == total:
                return  # the device is idle: it has taken everything
            if n > 0:
                sent += n
                stalled_until = time.monotonic() + timeout_s
                recheck = False
                continue
        remaining = stalled_until - time.monotonic()
        if remaining <= 0:
            _timed_out(what, sent, total, timeout_s)
        if recheck:
            time.sleep(min(_RECHECK_S, remaining))
            recheck = False
            continue
        events = poller.poll(max(1, int(remaining * 1000)))
        if not events:
            _timed_out(what, sent, total, timeout_s)
        if events[0][1] & _POLL_FAILED and not events[0][1] & select.POLLOUT:
            if sent == 0:
                raise PrinterUnavailable(f"{what} not ready: the device reports an error")
            raise PrintInterrupted(f"{what} failed after {sent} of {total} bytes")
        recheck = True  # writable now, says poll; if the write still cannot go, wait a little


def _timed_out(what: str, sent: int, total: int, timeout_s: float) -> NoReturn:
    if sent == 0:
        raise PrinterTimeout(f"{what} took no data for {timeout_s:g} s (paper out or offline?)")
    raise PrintTimeout(f"{what} stopped taking data for {timeout_s:g} s after {sent} of {total} bytes")


class FileTransport:
    def __init__(self, uri: str) -> None:
        parts = split_uri(uri, "file", GRAMMAR)
        if parts.netloc or not parts.path.startswith("/") or parts.path.endswith("/"):
            raise PrinterConfigError(f"bad printer URI {uri!r}; expected {GRAMMAR}")
        opts = parse_options(parts, {"timeout": positive_float}, GRAMMAR)
        self.uri = uri
        self.path = parts.path
        self.timeout_s: float = opts.get("timeout", DEFAULT_TIMEOUT_S)

    def _open(self, flags: int) -> int:
        try:
            return os.open(self.path, flags | os.O_CLOEXEC)
        except OSError as exc:
            raise PrinterUnavailable(f"cannot open {self.path}: {exc.strerror}") from exc

    def write(self, data: bytes, *, job_id: str = "") -> None:
        fd = open_for_write(self.path)
        try:
            write_fd(fd, data, self.path, self.timeout_s)
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

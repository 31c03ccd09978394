"""The mirror's own process: ``python -m terminald.mirror.child --fd N --parent PID``.

``MirrorService`` (service.py) starts it so that the copier shares no interpreter lock with the
sales: reading the spool and building batches cost tens of microseconds of Python per record,
which in the daemon's process came straight out of the API's time. Here it runs the unchanged
copier loop (copier.py) on the spool opened read-only (the daemon's writer keeps writing; WAL
readers never stand in its way) and talks to the daemon over one ``AF_UNIX`` ``SOCK_SEQPACKET``
socket whose end it inherits as fd ``N``: one message per datagram, a pickled tuple.

From the daemon:
    ("start", settings)   first, once: spool path, terminal id, DSN, password (never in argv or
                          the environment, where other processes could read it), copier settings
    ("wake", n, tail)     hint ``n``: the spool grew to ``tail`` (or a status changed)
    ("beat_soon",)        send the heartbeat at the next pass (the terminal's mode changed)
    ("beat", heartbeat)   the daemon's values for the fleet row, the answer to "beat?"
    ("stop",)             stop between two steps and exit

To the daemon:
    ("status", status, n) the copier's ``MirrorStatus`` and the last hint ``n`` taken by a pass (the
                          next commit needs a new one): after each pass, and every second as a sign
                          of life. One message a pass: each wakes a thread of the daemon's, which
                          then takes the interpreter lock from a sale for a moment
    ("beat?",)            the heartbeat is due: the daemon builds its values (its spool, its link)
    ("log", level, name, text)  a log record, for the daemon's own handlers

It ends when asked to, when the socket says the daemon is gone (EOF), or, where Linux allows,
at once by SIGKILL when the daemon dies (``PR_SET_PDEATHSIG``): a copier without its daemon would
hold a connection and a head row nobody watches. Killing it at any point is safe: each batch is
one transaction with the compare-and-set on the head row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import random
import signal
import socket
import sys
import threading
import time
from typing import Any

from spool import Spool, SpoolCorrupt
from terminald.mirror.copier import MirrorCopier
from terminald.mirror.heartbeat import Heartbeat

__all__ = ["MAX_MESSAGE", "decode", "encode", "main"]

MAX_MESSAGE = 64 * 1024  # a datagram's most; every message is far smaller (log text is cut below)
_LOG_TEXT_MAX = 8000
_STATUS_EVERY_S = 1.0  # the sign of life the daemon's watch counts on (service._SILENT_S)
_BEAT_WAIT_S = 5.0  # the daemon builds the heartbeat's values on a thread of its own: quick
_EXIT_AFTER_EOF_S = 5.0  # the daemon is gone: stop nicely if the loop answers, else exit anyway
_PR_SET_PDEATHSIG = 1
_OPEN_FOR_S = 15.0
_NICE = 10

log = logging.getLogger("terminald.mirror")


def encode(message: tuple[Any, ...]) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> tuple[Any, ...]:
    # Both ends are terminald's own code, run by the same user: pickle carries the dataclasses as they are.
    message = pickle.loads(data)
    if not isinstance(message, tuple) or not message:
        raise ValueError("not a mirror message")
    return message


class _Link:
    """The child's end of the socket: blocking sends (the daemon always reads), any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, message: tuple[Any, ...]) -> bool:
        try:
            self.sock.send(encode(message))  # one datagram: no interleaving between threads
        except OSError:  # the daemon is gone: the reader sees EOF and ends the process
            return False
        return True


class _ToParent(logging.Handler):
    """Log records go to the daemon, which formats, masks and writes them as its own."""

    def __init__(self, link: _Link) -> None:
        super().__init__()
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.link.send(("log", record.levelno, record.name, text[:_LOG_TEXT_MAX]))
        except Exception:
            self.handleError(record)


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the daemon dies, however it dies (Linux); elsewhere the EOF on the socket does it."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl took effect: nobody would ever say so
        os._exit(0)


def _open_spool(path: str, terminal_id: str) -> Spool:
    """The spool, read-only. Its open reads the file's tail, then the ``-seq`` witness: beside a
    writer that keeps appending, the witness may already name a commit the tail read did not
    see, and the open says "acknowledged records missing". A file really missing records stays
    so (and the daemon, which opened it first, would have refused it), so tries at random
    moments tell the two apart; the more sales per second, the more tries it may take."""
    deadline = time.monotonic() + _OPEN_FOR_S
    while True:
        try:
            return Spool.open_readonly(path, terminal_id)
        except SpoolCorrupt:
            if time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


class _Child:
    def __init__(self, link: _Link, settings: dict[str, Any]) -> None:
        self.link = link
        self.hint = 0  # the last hint received (the loop's thread only)
        self.taken = 0  # the last hint received when a pass started (it reads every commit before it)
        self.beat: Heartbeat | None = None
        self.beat_answered = threading.Event()
        self.spool = _open_spool(settings["spool_path"], settings["terminal_id"])
        self.copier = MirrorCopier(self.spool, settings["dsn"], password=settings["password"],
                                   heartbeat=self._heartbeat, on_take=self._taken, on_pass=self._send_status,
                                   **settings["copier"])
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.main = asyncio.current_task()
        with contextlib.suppress(NotImplementedError):  # systemd's stop, or an operator's kill
            self.loop.add_signal_handler(signal.SIGTERM, self.stop)
        threading.Thread(target=self._read, name="mirror-child-reader", daemon=True).start()
        copier = asyncio.create_task(self.copier.run(), name="mirror copier")
        try:
            while not copier.done():
                self._send_status()
                await asyncio.wait({copier}, timeout=_STATUS_EVERY_S)
        except asyncio.CancelledError:  # stop(): asked to, or the daemon is gone
            pass
        finally:
            copier.cancel()
            await asyncio.gather(copier, return_exceptions=True)
            self._send_status()
            self.spool.close()

    def stop(self) -> None:
        if self.main is not None:
            self.main.cancel()

    # -- from the daemon (the reader thread, handed to the loop) -----------------------------------
    def _read(self) -> None:
        while True:
            try:
                data = self.link.sock.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            try:
                message = decode(data)
            except Exception:
                log.exception("mirror child: a message it cannot read")
                continue
            if message[0] == "beat":  # answered here: the copier's thread waits for it, not the loop
                self.beat = message[1]
                self.beat_answered.set()
                continue
            loop = self.loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed: exiting anyway
                    loop.call_soon_threadsafe(self._handle, message)
        # EOF: the daemon stopped or died. Stop between two steps; if the loop does not answer,
        # exit anyway: a copier must never outlive its daemon.
        loop = self.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.stop)
        time.sleep(_EXIT_AFTER_EOF_S)
        os._exit(0)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "wake":
            self.hint = max(self.hint, int(message[1]))
            if message[2] is not None:
                self.copier.note_tail(int(message[2]))
            self.copier.wake()
        elif kind == "beat_soon":
            self.copier.beat_soon()
        elif kind == "stop":
            self.stop()

    # -- to the daemon -----------------------------------------------------------------------------
    def _taken(self) -> None:
        self.taken = self.hint

    def _send_status(self) -> None:
        self.link.send(("status", self.copier.status(), self.taken))

    def _heartbeat(self) -> Heartbeat | None:
        """The daemon's values, asked for when the copier is about to send them (a thread of the
        copier's: waiting here holds up no step of the loop)."""
        self.beat_answered.clear()
        if self.link.send(("beat?",)):
            self.beat_answered.wait(_BEAT_WAIT_S)
        return self.beat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m terminald.mirror.child")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    # Ctrl-C in a terminal reaches the whole process group: the daemon decides when this one stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(args.parent)
    # Behind the sales for the CPU too: on a busy counter PC the scheduler runs the daemon first.
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    sock = socket.socket(fileno=args.fd)
    data = sock.recv(MAX_MESSAGE)
    if not data:
        return 0
    kind, settings = decode(data)
    if kind != "start":
        return 2
    link = _Link(sock)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_ToParent(link))
    root.setLevel(int(settings.get("log_level", logging.INFO)))
    try:
        child = _Child(link, settings)
    except Exception:
        log.exception("the mirror's process could not start")
        return 1
    asyncio.run(child.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

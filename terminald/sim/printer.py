"""Receipt printer emulator: a raw TCP (port 9100 style) listener or a pty
serial port that records what it is sent, answers `DLE EOT n` with a state
tests can set, and turns what it printed into text and PNG.

    sim = PrinterSim()            # or PrinterSim(pty=True) for serial
    sim.start(); printer_uri = sim.uri
    sim.state = "paper_out"       # online, near_end, paper_out, cover_open, silent
    sim.jobs_text()               # one string per receipt (split at cuts)

While the paper is out or the cover open it answers queries but prints
nothing: whatever arrives is dropped into `discarded`, as paper that never
came out. `drop_next_connection_after(n)` resets the next connection after n
bytes, like a printer power-cycled mid-job.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import threading
import tty
from collections.abc import Callable
from pathlib import Path

from drivers.printers.decode import Cut, Document, decode, tokenize
from drivers.printers.render import render_png

__all__ = ["SIM_STATES", "PrinterSim", "run"]

# Replies to DLE EOT 1, 2 and 4 (0x12 = fixed bits only: all clear).
SIM_STATES: dict[str, tuple[int, int, int] | None] = {
    "online": (0x12, 0x12, 0x12),
    "near_end": (0x12, 0x12, 0x12 | 0x0C),
    "paper_out": (0x12 | 0x08, 0x12 | 0x20, 0x12 | 0x60),
    "cover_open": (0x12 | 0x08, 0x12 | 0x04, 0x12),
    "silent": None,
}
_NOT_PRINTING = frozenset({"paper_out", "cover_open"})
_POLL_S = 0.1


class PrinterSim:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, pty: bool = False) -> None:
        self.host, self.port, self.pty = host, port, pty
        self._state = "online"
        self._lock = threading.Lock()
        self._received = bytearray()
        self._discarded = bytearray()
        self._drop_after: int | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self.queries = 0
        self.connections = 0
        self.uri = ""

    # -- control ---------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        if value not in SIM_STATES:
            raise ValueError(f"printer sim state must be one of {sorted(SIM_STATES)}, not {value!r}")
        self._state = value

    @property
    def received(self) -> bytes:
        """Everything printed (real-time queries excluded)."""
        with self._lock:
            return bytes(self._received)

    @property
    def discarded(self) -> bytes:
        """What arrived while the paper was out or the cover open."""
        with self._lock:
            return bytes(self._discarded)

    def document(self) -> Document:
        return decode(self.received)

    def jobs_text(self, columns: int = 48) -> list[str]:
        """One text per receipt printed so far (split at each cut)."""
        return [doc.text(columns) for doc in self.document().jobs()]

    def png(self, columns: int = 48) -> bytes:
        return render_png(self.document(), columns)

    def drop_next_connection_after(self, n_bytes: int) -> None:
        """Reset (TCP RST) the next connection once it has carried n bytes."""
        if self.pty:
            raise ValueError("a pty port cannot drop a connection")
        if n_bytes < 0:
            raise ValueError("n_bytes must be >= 0")
        self._drop_after = n_bytes

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._discarded.clear()

    # -- lifecycle -------------------------------------------------------
    def start(self) -> PrinterSim:
        self._stop.clear()
        if self.pty:
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)  # no echo, no newline translation
            self.uri = f"serial://{os.ttyname(self._slave)}?baudrate=19200"
            self._spawn(self._serve_pty)
        else:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(8)
            sock.settimeout(_POLL_S)
            self._sock, self.port = sock, sock.getsockname()[1]
            host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
            self.uri = f"tcp://{host}:{self.port}"
            self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def __enter__(self) -> PrinterSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, daemon=True, name="printer-sim")
        self._threads.append(t)
        t.start()

    # -- the printer -----------------------------------------------------
    def _feed(self, buf: bytearray, final: bool) -> bytes:
        """Consume complete commands from `buf`; return the real-time replies."""
        tokens, used = tokenize(bytes(buf), final=final)
        del buf[:used]
        replies = bytearray()
        with self._lock:
            for name, raw in tokens:
                if name == "DLE EOT":
                    self.queries += 1
                    answers = SIM_STATES[self._state]
                    if answers is not None and raw[2] in (1, 2, 4):
                        replies.append(answers[{1: 0, 2: 1, 4: 2}[raw[2]]])
                elif name.startswith("DLE"):
                    continue  # other real-time commands: nothing to print
                elif self._state in _NOT_PRINTING:
                    self._discarded += raw
                else:
                    self._received += raw
        return bytes(replies)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            # One connection at a time, as on a real printer's port 9100.
            self._serve_conn(conn)

    def _serve_conn(self, conn: socket.socket) -> None:
        buf = bytearray()
        count = 0
        conn.settimeout(_POLL_S)
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                drop = self._drop_after
                if drop is not None and count + len(chunk) >= drop:
                    buf += chunk[: drop - count]
                    self._feed(buf, final=True)
                    self._drop_after = None
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return  # closing with linger 0 sends RST
                count += len(chunk)
                buf += chunk
                replies = self._feed(buf, final=False)
                if replies:
                    with contextlib.suppress(OSError):
                        conn.sendall(replies)
            self._feed(buf, final=True)

    def _serve_pty(self) -> None:
        assert self._master is not None
        master = self._master
        buf = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([master], [], [], _POLL_S)
            if not ready:
                if buf:
                    self._feed(buf, final=True)  # a pause ends a text run
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            buf += chunk
            replies = self._feed(buf, final=False)
            if replies:
                os.write(master, replies)


def _save(out: Path | None, label: str, number: int, doc: Document) -> None:
    text = doc.text()
    print(f"--- {label} receipt {number} ---\n{text}", flush=True)
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"{label}-{number:04d}"
    base.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    base.with_suffix(".png").write_bytes(render_png(doc))


def run(
    host: str = "127.0.0.1",
    port: int = 9100,
    pty: bool = False,
    out: Path | None = None,
    state: str = "online",
) -> None:
    """`terminald sim printer`: a TCP printer (and a pty serial one with
    `pty`) until SIGINT/SIGTERM, writing .txt/.png per receipt and
    the whole byte stream (.bin) into `out`."""
    sims = {"tcp": PrinterSim(host, port)}
    if pty:
        sims["serial"] = PrinterSim(pty=True)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    saved = dict.fromkeys(sims, 0)
    try:
        for label, sim in sims.items():
            sim.state = state
            sim.start()
            print(f"printer simulator ({label}) on {sim.uri}, state {sim.state}", flush=True)
        while not stop.wait(0.5):
            for label, sim in sims.items():
                raw = sim.received
                complete = [j for j in decode(raw).jobs() if j.items and isinstance(j.items[-1], Cut)]
                for doc in complete[saved[label] :]:
                    saved[label] += 1
                    _save(out, label, saved[label], doc)
                if complete and out is not None:
                    (out / f"{label}-received.bin").write_bytes(raw)
    except KeyboardInterrupt:
        pass
    finally:
        for sim in sims.values():
            sim.stop()

"""Every write to a printer has a deadline: a device that stops taking data (paper out on a
printer that blocks instead of answering) ends the job with a timeout, never a hang.

FIFOs stand in for ``/dev/usb/lp0``: with no reader they are an offline printer; a
reader that stops reading fills the pipe (64 KiB) like a printer that stops taking
data. Each write runs in a thread watched by `_finishes`, so a regression fails the
test instead of hanging it (and the watcher unblocks the write by closing the reader).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.errors import PrinterTimeout, PrinterUnavailable, PrintInterrupted, PrintTimeout
from drivers.printers import open_transport
from drivers.printers.transports.file import write_fd
from drivers.printers.transports.usb import UsbTransport

PIPE_BUFFER = 64 * 1024
JOB = b"\x1b@" + b"x" * (4 * PIPE_BUFFER) + b"\x1dV\x00"  # bigger than any pipe buffer
HANG_GUARD_S = 30.0  # far beyond the 0.3 s timeouts below: reaching it means the write hung


def _finishes(write: Callable[[], None], unblock: Callable[[], None]) -> BaseException | None:
    """Run `write` in a thread; the exception it raised (None if none). Fails if it hangs."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            write()
        except BaseException as exc:  # handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    if thread.is_alive():
        unblock()
        thread.join(HANG_GUARD_S)
        pytest.fail("the write blocked: no timeout")
    return outcome[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "lp0"
    os.mkfifo(path)
    return path


@pytest.fixture
def stalled_reader(fifo: Path) -> Iterator[int]:
    """The FIFO's read end, open, read by nobody after the test's first few bytes."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield fd
    finally:
        os.close(fd)


def test_fifo_without_a_reader_is_an_offline_printer(fifo: Path) -> None:
    t = open_transport(f"file://{fifo}?timeout=0.3")
    exc = _finishes(lambda: t.write(JOB), lambda: os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)))
    assert isinstance(exc, PrinterUnavailable) and not isinstance(exc, PrintInterrupted)
    assert "offline" in str(exc)


def test_a_reader_that_stops_reading_times_the_job_out(fifo: Path, stalled_reader: int) -> None:
    t = open_transport(f"file://{fifo}?timeout=0.3")

    def write_and_read_a_little() -> None:
        # the printer takes the first few bytes, then nothing more (paper out mid-job)
        started = threading.Thread(target=lambda: _read_some(stalled_reader, 16), daemon=True)
        started.start()
        t.write(JOB, job_id="j1")

    exc = _finishes(write_and_read_a_little, lambda: _drain(stalled_reader))
    assert isinstance(exc, PrintTimeout), exc
    assert exc.code == "print_timeout"
    assert isinstance(exc, PrintInterrupted)  # the print queue marks the job `unknown`
    assert "0.3 s" in str(exc) and f"of {len(JOB)} bytes" in str(exc)


def test_a_full_pipe_before_the_job_times_out_with_nothing_sent(fifo: Path, stalled_reader: int) -> None:
    t = open_transport(f"file://{fifo}?timeout=0.3")
    with pytest.raises(PrintTimeout):
        t.write(JOB)  # fills the pipe: the printer stopped taking data earlier
    exc = _finishes(lambda: t.write(b"second job"), lambda: _drain(stalled_reader))
    assert isinstance(exc, PrinterTimeout), exc
    assert exc.code == "printer_timeout"
    assert isinstance(exc, PrinterUnavailable)  # nothing sent: the print queue retries later


def test_the_printer_taking_data_again_lets_the_job_finish(fifo: Path, stalled_reader: int) -> None:
    got = bytearray()
    reading = threading.Thread(target=lambda: got.extend(_read_all(stalled_reader, len(JOB))), daemon=True)
    reading.start()
    t = open_transport(f"file://{fifo}?timeout=5")
    assert _finishes(lambda: t.write(JOB), lambda: _drain(stalled_reader)) is None
    reading.join(HANG_GUARD_S)
    assert bytes(got) == JOB


def test_write_fd_finishes_on_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    try:
        write_fd(fd, JOB, str(path), 0.3)
    finally:
        os.close(fd)
    assert path.read_bytes() == JOB


def test_file_uri_takes_a_timeout_option(tmp_path: Path) -> None:
    assert open_transport(f"file://{tmp_path}/lp0?timeout=2.5").timeout_s == 2.5  # type: ignore[attr-defined]
    assert open_transport(f"file://{tmp_path}/lp0").timeout_s == 10.0  # type: ignore[attr-defined]


def test_usb_through_usblp_times_out_too(tmp_path: Path, stalled_reader: int, fifo: Path) -> None:
    """usb:// with the kernel's usblp bound writes /dev/usb/lpN with the same deadline."""
    sysfs = tmp_path / "sys"
    device = sysfs / "devices" / "1-1"
    (device / "1-1:1.0").mkdir(parents=True)
    (device / "idVendor").write_text("0416\n")
    (device / "idProduct").write_text("5011\n")
    (sysfs / "usbmisc" / "lp0").mkdir(parents=True)
    (sysfs / "usbmisc" / "lp0" / "device").symlink_to(device / "1-1:1.0")
    t = UsbTransport("usb://0416:5011?timeout=0.3", usblp_root=sysfs / "usbmisc", usblp_dev_dir=fifo.parent)
    exc = _finishes(lambda: t.write(JOB), lambda: _drain(stalled_reader))
    assert isinstance(exc, PrintTimeout), exc
    assert "lp0" in str(exc)


def test_serial_port_that_stops_taking_data_times_out() -> None:
    """A pty whose other side never reads: pyserial's write and drain are bounded."""
    master, slave = os.openpty()
    try:
        t = open_transport(f"serial://{os.ttyname(slave)}?timeout=0.3")
        exc = _finishes(lambda: t.write(JOB * 4), lambda: _drain(master))
        assert isinstance(exc, PrintTimeout), exc
        assert exc.code == "print_timeout"
        assert _finishes(t.close, lambda: _drain(master)) is None  # closing does not wait either
    finally:
        os.close(master)
        os.close(slave)


def test_tcp_printer_that_stops_reading_times_out() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepted by the kernel, never read
        port = listener.getsockname()[1]
        t = open_transport(f"tcp://127.0.0.1:{port}?timeout=0.3")
        exc = _finishes(lambda: t.write(JOB * 128), lambda: None)
        assert isinstance(exc, PrintTimeout), exc


def _read_some(fd: int, n: int) -> None:
    import select

    select.select([fd], [], [], HANG_GUARD_S)
    os.read(fd, n)


def _read_all(fd: int, n: int) -> bytes:
    import select

    out = bytearray()
    while len(out) < n:
        select.select([fd], [], [], HANG_GUARD_S)
        try:
            out.extend(os.read(fd, n - len(out)))
        except BlockingIOError:
            continue
    return bytes(out)


def _drain(fd: int) -> None:
    """Unblock a hung writer: empty what it wrote so far (the test has already failed)."""
    try:
        while os.read(fd, 1 << 16):
            pass
    except OSError:
        pass

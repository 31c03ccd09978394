"""One contract suite over every transport: memory, a real TCP listener, a
real pty serial port, a file, the preview directory."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.errors import PrinterConfigError, PrinterUnavailable, PrintInterrupted
from drivers.printers import open_transport
from drivers.printers.escpos import EscposWriter
from drivers.printers.transports import SCHEMES, Transport
from terminald.sim.printer import PrinterSim


def receipt(text: str) -> bytes:
    w = EscposWriter(columns=32)
    w.init()
    w.line(text)
    w.cut()
    return w.getvalue()


@dataclass
class Rig:
    transport: Transport
    printed: Callable[[], bytes]
    answers_status: bool


@pytest.fixture(params=["memory", "tcp", "serial", "file", "preview"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    kind = request.param
    if kind == "memory":
        t = open_transport("memory://contract")
        yield Rig(t, lambda: t.data, True)  # type: ignore[attr-defined]
    elif kind in ("tcp", "serial"):
        sim = PrinterSim(pty=kind == "serial").start()
        t = open_transport(sim.uri)
        try:
            yield Rig(t, lambda: _settled(sim), True)
        finally:
            t.close()
            sim.stop()
    elif kind == "file":
        path = tmp_path / "lp0"
        path.write_bytes(b"")
        yield Rig(open_transport(f"file://{path}"), path.read_bytes, False)
    else:
        t = open_transport(f"preview://{tmp_path}/out")
        yield Rig(t, lambda: b"".join(p.read_bytes() for p in sorted((tmp_path / "out").glob("*.bin"))), True)


def _settled(sim: PrinterSim) -> bytes:
    import time

    deadline = time.monotonic() + 5
    last = b""
    while time.monotonic() < deadline:
        now = sim.received
        if now and now == last:
            return now
        last = now
        time.sleep(0.15)
    return sim.received


def test_write_delivers_exact_bytes(rig: Rig) -> None:
    data = receipt("第一张 first ¥1.00")
    rig.transport.write(data, job_id="job-1")
    assert rig.printed() == data


def test_jobs_arrive_in_order_and_close_keeps_it_usable(rig: Rig) -> None:
    a, b = receipt("一 one"), receipt("二 two")
    rig.transport.write(a, job_id="job-a")
    rig.transport.close()
    rig.transport.write(b, job_id="job-b")
    assert rig.printed() == a + b


def test_status_query(rig: Rig) -> None:
    reply = rig.transport.query(b"\x10\x04\x01", 1.0)
    if rig.answers_status:
        assert reply is not None and reply[-1] & 0x93 == 0x12
    else:
        assert reply is None


def test_tcp_reconnects_after_power_cycle() -> None:
    sim = PrinterSim().start()
    port = sim.port
    t = open_transport(sim.uri)
    t.write(receipt("before"))
    sim.stop()
    with pytest.raises(PrinterUnavailable):
        t.write(receipt("while off"))
    with pytest.raises(PrinterUnavailable):
        t.query(b"\x10\x04\x01", 0.3)
    sim2 = PrinterSim(port=port).start()
    try:
        t.write(receipt("after"))
        assert "after" in _settled(sim2).decode("latin-1")
    finally:
        sim2.stop()


def test_tcp_drop_mid_job_is_interrupted(printer_sim: PrinterSim) -> None:
    t = open_transport(printer_sim.uri)
    printer_sim.drop_next_connection_after(50)
    with pytest.raises(PrintInterrupted):
        t.write(receipt("长" * 2000))


def test_unreachable_devices_are_unavailable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        uris = [
            f"tcp://127.0.0.1:{port}?timeout=1",
            f"serial://{tmp_path}/ttyUSB9",
            f"file://{tmp_path}/missing-lp0",
        ]
        for uri in uris:
            t = open_transport(uri)
            with pytest.raises(PrinterUnavailable):
                t.write(b"x")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(PrinterUnavailable):
        open_transport(f"preview://{blocker}/sub").write(b"x", job_id="j")


def test_usb_without_device_is_a_clear_error() -> None:
    t = open_transport("usb://0416:5011/NOPE123")
    with pytest.raises(PrinterUnavailable, match="0416:5011"):
        t.write(b"x")


def test_file_is_never_created(tmp_path: Path) -> None:
    with pytest.raises(PrinterUnavailable):
        open_transport(f"file://{tmp_path}/lp0").write(b"x")
    assert not (tmp_path / "lp0").exists()


def test_preview_writes_bin_and_png(tmp_path: Path) -> None:
    t = open_transport(f"preview://{tmp_path}")
    data = receipt("预览 preview")
    t.write(data, job_id="../evil/job 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_evil_job_1.bin", "_evil_job_1.png"]
    assert (tmp_path / "_evil_job_1.bin").read_bytes() == data
    assert (tmp_path / "_evil_job_1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("uri", "grammar"),
    [
        ("tcp://printer:9100?speed=fast", "tcp://HOST[:PORT]"),
        ("tcp://printer:99999", "tcp://HOST[:PORT]"),
        ("tcp://:9100", "tcp://HOST[:PORT]"),
        ("tcp://printer:9100?timeout=-1", "tcp://HOST[:PORT]"),
        ("serial:///dev/ttyUSB0?baudrate=12345", "serial:///DEVICE/PATH"),
        ("serial:///dev/ttyUSB0?flow=magic", "serial:///DEVICE/PATH"),
        ("serial://dev/ttyUSB0", "serial:///DEVICE/PATH"),
        ("serial:///dev/ttyUSB0?baudrate=9600&baudrate=19200", "serial:///DEVICE/PATH"),
        ("usb://0416-5011", "usb://VID:PID"),
        ("usb://0416:5011/a/b", "usb://VID:PID"),
        ("usb://0416:5011?x=1", "usb://VID:PID"),
        ("file://relative/lp0", "file:///ABSOLUTE/PATH"),
        ("file:///dev/usb/lp0?mode=raw", "file:///ABSOLUTE/PATH"),
        ("preview://host/dir", "preview:///ABSOLUTE/DIRECTORY"),
        ("memory://x?status=zz", "memory://"),
    ],
)
def test_bad_uris_restate_the_grammar(uri: str, grammar: str) -> None:
    with pytest.raises(PrinterConfigError, match=grammar.replace("[", r"\[").replace("]", r"\]")):
        open_transport(uri)


@pytest.mark.parametrize("uri", ["lpt://1", "nothing", "", "http://printer/", "tcp://[::1"])
def test_unknown_schemes_name_the_known_ones(uri: str) -> None:
    with pytest.raises(PrinterConfigError):
        open_transport(uri)


def test_scheme_table_is_explicit() -> None:
    assert set(SCHEMES) == {"tcp", "serial", "usb", "file", "preview", "memory"}
    for scheme in SCHEMES:
        assert isinstance(open_transport(_sample(scheme)), Transport)


def _sample(scheme: str) -> str:
    return {
        "tcp": "tcp://127.0.0.1:9",
        "serial": "serial:///dev/serial/by-id/usb-printer-if00-port0?baudrate=19200&flow=rtscts",
        "usb": "usb://04b8:0202",
        "file": "file:///dev/usb/lp0",
        "preview": f"preview://{os.sep}nonexistent",
        "memory": "memory://",
    }[scheme]

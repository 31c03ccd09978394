"""`Printer` against the emulator: TCP and a real pty serial port."""

from __future__ import annotations

import time

import pytest

from drivers.errors import PrinterConfigError, PrinterUnavailable, PrintInterrupted
from drivers.printers import Printer, PrinterConfig
from drivers.printers import __all__ as public
from drivers.printers.transports.memory import MemoryTransport
from terminald.receipts.templates import render_receipt
from terminald.sim.printer import PrinterSim

from ..receipts.samples import DOCUMENTS


def receipt(columns: int = 42) -> bytes:
    tx, _ = DOCUMENTS["online"]
    return render_receipt(
        tx, institution="示例大药房", terminal_id="T0001", columns=columns, chinese="fs", language="zh-CN"
    )


def wait_jobs(sim: PrinterSim, n: int, timeout_s: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = sim.jobs_text(42)
        if len(jobs) >= n:
            return jobs
        time.sleep(0.05)
    return sim.jobs_text(42)


def test_public_interface_is_pinned() -> None:
    assert sorted(public) == sorted(
        [
            "SCHEMES",
            "STATES",
            "PrintInterrupted",
            "Printer",
            "PrinterConfig",
            "PrinterUnavailable",
            "Transport",
            "open_transport",
        ]
    )


@pytest.mark.parametrize(
    "kwargs", [{"chinese": "big5"}, {"columns": 80}, {"language": "fr"}, {"name": ""}, {"uri": "lpt://1"}]
)
def test_config_is_validated(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"name": "r", "uri": "memory://"}
    with pytest.raises(PrinterConfigError):
        Printer(PrinterConfig(**{**base, **kwargs}))  # type: ignore[arg-type]


@pytest.mark.parametrize("sim_fixture", ["printer_sim", "serial_printer_sim"])
def test_prints_and_reports_every_state(sim_fixture: str, request: pytest.FixtureRequest) -> None:
    sim: PrinterSim = request.getfixturevalue(sim_fixture)
    printer = Printer(PrinterConfig(name="r", uri=sim.uri, columns=42))
    try:
        assert printer.status() == "ok"
        printer.print_bytes(receipt(), "job-1")
        jobs = wait_jobs(sim, 1)
        assert len(jobs) == 1 and "阿莫西林胶囊" in jobs[0] and "110101********1234" in jobs[0]
        expected = {
            "near_end": "paper_near_end",
            "paper_out": "paper_out",
            "cover_open": "cover_open",
            "silent": "unknown",
            "online": "ok",
        }
        for state, status in expected.items():
            sim.state = state
            assert printer.status() == status
    finally:
        printer.close()


@pytest.mark.parametrize("state", ["paper_out", "cover_open"])
def test_blocking_states_send_nothing(printer_sim: PrinterSim, state: str) -> None:
    printer = Printer(PrinterConfig(name="r", uri=printer_sim.uri))
    printer_sim.state = state
    with pytest.raises(PrinterUnavailable, match=state.replace("_", " ")):
        printer.print_bytes(receipt(), "job-1")
    time.sleep(0.2)
    assert printer_sim.received == b"" and printer_sim.discarded == b""


def test_silent_printer_still_prints(printer_sim: PrinterSim) -> None:
    printer_sim.state = "silent"
    printer = Printer(PrinterConfig(name="r", uri=printer_sim.uri))
    printer.status_timeout_s = 0.1
    printer.print_bytes(receipt(), "job-1")
    assert len(wait_jobs(printer_sim, 1)) == 1


def test_drop_mid_job_is_interrupted_and_partly_printed(printer_sim: PrinterSim) -> None:
    printer = Printer(PrinterConfig(name="r", uri=printer_sim.uri))
    printer_sim.drop_next_connection_after(200)
    with pytest.raises(PrintInterrupted):
        printer.print_bytes(receipt() * 30, "job-1")
    assert 0 < len(printer_sim.received) <= 200


def test_printer_off_then_back(printer_sim: PrinterSim) -> None:
    port = printer_sim.port
    printer = Printer(PrinterConfig(name="r", uri=printer_sim.uri))
    printer_sim.stop()
    assert printer.status() == "offline"
    with pytest.raises(PrinterUnavailable):
        printer.print_bytes(receipt(), "job-1")
    with PrinterSim(port=port) as back:
        assert printer.status() == "ok"
        printer.print_bytes(receipt(), "job-2")
        assert len(wait_jobs(back, 1)) == 1


def test_serial_port_that_vanishes_is_offline_and_found_again() -> None:
    sim = PrinterSim(pty=True).start()
    printer = Printer(PrinterConfig(name="r", uri=sim.uri))
    assert printer.status() == "ok"
    sim.stop()
    assert printer.status() in ("offline", "unknown")
    printer.close()


def test_memory_transport_failures_are_passed_through() -> None:
    printer = Printer(PrinterConfig(name="r", uri="memory://?status=none"))
    assert printer.status() == "unknown"
    transport = printer.transport
    assert isinstance(transport, MemoryTransport)
    transport.fail_next = PrintInterrupted("cut")
    with pytest.raises(PrintInterrupted):
        printer.print_bytes(b"x", "j")
    printer.print_bytes(b"y", "j2")
    assert transport.jobs == [("j2", b"y")]

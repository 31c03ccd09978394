"""The libusb side of `usb://` against a fake pyusb device: what open() takes (detaches a
kernel driver, claims the interface) close() gives back, exactly, and a USB error or a
timeout gives it back too. No USB hardware needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import PrinterTimeout, PrinterUnavailable, PrintInterrupted, PrintTimeout
from drivers.printers import Printer, PrinterConfig
from drivers.printers.transports.usb import UsbTransport


class FakeUSBError(Exception):
    pass


class FakeUSBTimeout(FakeUSBError):
    pass


# Field names are pyusb's descriptor names.


@dataclass
class Endpoint:
    bEndpointAddress: int
    device: FakeDevice
    fail_after_writes: int | None = None
    failure: type[Exception] = FakeUSBError

    def write(self, data: bytes, timeout: int) -> int:
        n = sum(1 for c in self.device.calls if c[0] == "write")
        if self.fail_after_writes is not None and n >= self.fail_after_writes:
            raise self.failure("transfer failed")
        self.device.calls.append(("write", len(data)))
        self.device.received += data
        return len(data)

    def read(self, size: int, timeout: int) -> bytes:
        self.device.calls.append(("read", size))
        return b"\x12"


@dataclass
class Interface:
    bInterfaceNumber: int
    bInterfaceClass: int
    endpoints: list[Endpoint]
    bAlternateSetting: int = 0

    def __iter__(self) -> Any:
        return iter(self.endpoints)


@dataclass
class FakeDevice:
    """Records every call; `kernel_bound` is the set of interfaces a kernel driver holds."""

    kernel_bound: set[int] = field(default_factory=lambda: {0, 1})
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    received: bytes = b""
    interfaces: list[Interface] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.interfaces:
            self.interfaces = [
                Interface(0, 3, [Endpoint(0x81, self)]),  # a HID interface the printer also has
                Interface(1, 7, [Endpoint(0x02, self), Endpoint(0x82, self)]),  # the printer class
            ]

    def get_active_configuration(self) -> list[Interface]:
        return self.interfaces

    def is_kernel_driver_active(self, number: int) -> bool:
        return number in self.kernel_bound

    def detach_kernel_driver(self, number: int) -> None:
        self.calls.append(("detach", number))
        self.kernel_bound.discard(number)

    def attach_kernel_driver(self, number: int) -> None:
        self.calls.append(("attach", number))
        self.kernel_bound.add(number)


class FakeBackend:
    errors: tuple[type[BaseException], ...] = (FakeUSBError,)
    timeout_errors: tuple[type[BaseException], ...] = (FakeUSBTimeout,)

    def __init__(self, device: FakeDevice | None, claim_fails: bool = False) -> None:
        self.device = device
        self.claim_fails = claim_fails
        self.claimed: set[int] = set()
        self.finds = 0

    def find(self, vid: int, pid: int, serial: str) -> FakeDevice | None:
        self.finds += 1
        return self.device

    def claim_interface(self, dev: FakeDevice, number: int) -> None:
        if self.claim_fails:
            raise FakeUSBError("busy")
        dev.calls.append(("claim", number))
        self.claimed.add(number)

    def release_interface(self, dev: FakeDevice, number: int) -> None:
        dev.calls.append(("release", number))
        self.claimed.discard(number)

    def dispose_resources(self, dev: FakeDevice) -> None:
        dev.calls.append(("dispose",))


def _transport(backend: FakeBackend, tmp_path: Path, uri: str = "usb://0416:5011") -> UsbTransport:
    # an empty sysfs: no usblp bound, so the transport goes through libusb
    return UsbTransport(uri, backend=backend, usblp_root=tmp_path / "no-usbmisc")


def _session(dev: FakeDevice) -> list[tuple[Any, ...]]:
    return [c for c in dev.calls if c[0] != "write" and c[0] != "read"]


def test_close_gives_back_exactly_what_open_took(tmp_path: Path) -> None:
    dev = FakeDevice(kernel_bound={0, 1})
    backend = FakeBackend(dev)
    t = _transport(backend, tmp_path)
    t.write(b"receipt one")
    t.write(b"receipt two")  # kept between jobs: one claim
    assert _session(dev) == [("detach", 1), ("claim", 1)]
    assert dev.received == b"receipt onereceipt two"
    t.close()
    assert _session(dev) == [("detach", 1), ("claim", 1), ("release", 1), ("attach", 1), ("dispose",)]
    assert dev.kernel_bound == {0, 1} and backend.claimed == set()  # as it was found
    t.close()  # twice: nothing more
    assert len(_session(dev)) == 5


def test_no_kernel_driver_detached_none_reattached(tmp_path: Path) -> None:
    dev = FakeDevice(kernel_bound={0})  # only the HID interface has a driver
    t = _transport(FakeBackend(dev), tmp_path)
    t.write(b"x")
    t.close()
    assert _session(dev) == [("claim", 1), ("release", 1), ("dispose",)]
    assert dev.kernel_bound == {0}


def test_the_next_job_after_close_looks_the_printer_up_again(tmp_path: Path) -> None:
    dev = FakeDevice()
    backend = FakeBackend(dev)
    t = _transport(backend, tmp_path)
    t.write(b"a")
    t.close()
    t.write(b"b")
    assert backend.finds == 2
    t.close()
    assert dev.calls.count(("attach", 1)) == 2 and backend.claimed == set()


def test_a_usb_error_mid_job_releases_the_interface(tmp_path: Path) -> None:
    dev = FakeDevice()
    dev.interfaces[1].endpoints[0].fail_after_writes = 1
    t = _transport(FakeBackend(dev), tmp_path)
    with pytest.raises(PrintInterrupted):
        t.write(b"y" * 10_000)  # 3 chunks: the second fails
    assert _session(dev)[-3:] == [("release", 1), ("attach", 1), ("dispose",)]
    assert dev.kernel_bound == {0, 1}


@pytest.mark.parametrize(("writes_before", "error"), [(0, PrinterTimeout), (1, PrintTimeout)])
def test_a_transfer_timeout_is_the_timeout_error_and_releases(
    tmp_path: Path, writes_before: int, error: type[Exception]
) -> None:
    dev = FakeDevice()
    out = dev.interfaces[1].endpoints[0]
    out.fail_after_writes, out.failure = writes_before, FakeUSBTimeout
    t = _transport(FakeBackend(dev), tmp_path, "usb://0416:5011?timeout=0.5")
    with pytest.raises(error) as info:
        t.write(b"z" * 10_000)
    assert type(info.value) is error
    assert ("release", 1) in dev.calls and ("attach", 1) in dev.calls


def test_a_claim_that_fails_reattaches_what_it_detached(tmp_path: Path) -> None:
    dev = FakeDevice(kernel_bound={1})
    t = _transport(FakeBackend(dev, claim_fails=True), tmp_path)
    with pytest.raises(PrinterUnavailable, match="cannot claim"):
        t.write(b"x")
    assert _session(dev) == [("detach", 1), ("attach", 1), ("dispose",)]
    assert dev.kernel_bound == {1}


def test_status_query_through_libusb_and_printer_close(tmp_path: Path) -> None:
    dev = FakeDevice()
    printer = Printer(PrinterConfig(name="usb", uri="usb://0416:5011"))
    printer.transport = _transport(FakeBackend(dev), tmp_path)
    assert printer.status() == "ok"
    printer.print_bytes(b"job", "job-1")
    printer.close()  # the daemon's shutdown
    assert _session(dev) == [("detach", 1), ("claim", 1), ("release", 1), ("attach", 1), ("dispose",)]
    assert dev.received.endswith(b"job")


def test_no_device_is_unavailable_and_claims_nothing(tmp_path: Path) -> None:
    t = _transport(FakeBackend(None), tmp_path)
    with pytest.raises(PrinterUnavailable, match="0416:5011"):
        t.write(b"x")
    t.close()

"""USB printer transport: the kernel ``usblp`` device when it is bound,
otherwise libusb through pyusb.

URI grammar: ``usb://VID:PID[/SERIAL][?timeout=SECONDS]``

- VID and PID are 4 hex digits (``usb://0416:5011``); SERIAL picks one of
  several identical printers by its USB serial number.
- ``timeout`` (default 10): per-transfer timeout, and how long the usblp
  device may take no data before the job is given up.

A printer plugged in (or power cycled) after start-up is found without a
restart: the usblp device is looked up on every job, and through libusb the
device is looked up when nothing is claimed. libusb: the printer interface is
claimed on first use (detaching a kernel driver that held it) and kept between
jobs; a USB error or :meth:`UsbTransport.close` releases the interface, gives
the interface back to the kernel driver it was taken from, and disposes of
pyusb's handle, so the next job looks the printer up again.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from drivers.errors import (
    PrinterConfigError,
    PrinterTimeout,
    PrinterUnavailable,
    PrintInterrupted,
    PrintTimeout,
)

from .base import parse_options, positive_float, split_uri
from .file import open_for_write, write_fd

__all__ = ["PyUsbBackend", "UsbBackend", "UsbTransport", "find_usblp"]

log = logging.getLogger(__name__)

GRAMMAR = "usb://VID:PID[/SERIAL][?timeout=SECONDS]"
SYSFS_USBMISC = Path("/sys/class/usbmisc")
USBLP_DEV_DIR = Path("/dev/usb")
CHUNK = 4096
PRINTER_CLASS = 7
_DIR_IN = 0x80


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def find_usblp(
    vid: int, pid: int, serial: str, root: Path = SYSFS_USBMISC, dev_dir: Path = USBLP_DEV_DIR
) -> Path | None:
    """/dev/usb/lpN of a usblp-bound printer with these ids, if there is one."""
    if not root.is_dir():
        return None
    for entry in sorted(root.glob("lp*")):
        usb_dev = (entry / "device").resolve().parent  # interface -> device
        if _read(usb_dev / "idVendor") != f"{vid:04x}" or _read(usb_dev / "idProduct") != f"{pid:04x}":
            continue
        if serial and _read(usb_dev / "serial") != serial:
            continue
        return dev_dir / entry.name
    return None


class UsbBackend(Protocol):
    """What the transport needs from pyusb beyond the device object itself (the device's own
    methods are used directly: ``get_active_configuration``, ``is_kernel_driver_active``,
    ``detach_kernel_driver``, ``attach_kernel_driver``; endpoints' ``write``/``read``)."""

    errors: tuple[type[BaseException], ...]  # what the device and its endpoints raise
    timeout_errors: tuple[type[BaseException], ...]  # the subset meaning "transfer timed out"

    def find(self, vid: int, pid: int, serial: str) -> Any | None: ...
    def claim_interface(self, dev: Any, number: int) -> None: ...
    def release_interface(self, dev: Any, number: int) -> None: ...
    def dispose_resources(self, dev: Any) -> None: ...


class PyUsbBackend:
    """The real thing: pyusb's ``usb.core`` and ``usb.util`` (imported on first use)."""

    def __init__(self) -> None:
        try:
            import usb.core
            import usb.util
        except ImportError as exc:  # pragma: no cover - pyusb is a dependency
            raise PrinterUnavailable("pyusb is not installed") from exc
        self._core, self._util = usb.core, usb.util
        self.errors: tuple[type[BaseException], ...] = (usb.core.USBError, NotImplementedError)
        self.timeout_errors: tuple[type[BaseException], ...] = (usb.core.USBTimeoutError,)

    def find(self, vid: int, pid: int, serial: str) -> Any | None:
        get_string = self._util.get_string
        return self._core.find(
            idVendor=vid,
            idProduct=pid,
            custom_match=(lambda d: get_string(d, d.iSerialNumber) == serial) if serial else None,
        )

    def claim_interface(self, dev: Any, number: int) -> None:
        self._util.claim_interface(dev, number)

    def release_interface(self, dev: Any, number: int) -> None:
        self._util.release_interface(dev, number)

    def dispose_resources(self, dev: Any) -> None:
        self._util.dispose_resources(dev)


@dataclass
class _Claim:
    dev: Any
    interface: int
    detached: bool  # a kernel driver held the interface: it gets it back on release
    out: Any
    inp: Any | None


class UsbTransport:
    def __init__(
        self,
        uri: str,
        *,
        backend: UsbBackend | None = None,
        usblp_root: Path = SYSFS_USBMISC,
        usblp_dev_dir: Path = USBLP_DEV_DIR,
    ) -> None:
        """``backend``, ``usblp_root`` and ``usblp_dev_dir`` are for tests: a fake pyusb, a fake
        sysfs and a directory standing in for /dev/usb."""
        parts = split_uri(uri, "usb", GRAMMAR)
        m = re.fullmatch(r"([0-9A-Fa-f]{4}):([0-9A-Fa-f]{4})", parts.netloc)
        serial = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not m or "/" in serial:
            raise PrinterConfigError(f"bad printer URI {uri!r}; expected {GRAMMAR}")
        opts = parse_options(parts, {"timeout": positive_float}, GRAMMAR)
        self.uri = uri
        self.vid, self.pid = int(m.group(1), 16), int(m.group(2), 16)
        self.serial = serial
        self.timeout_s = opts.get("timeout", 10.0)
        self.usblp_root = usblp_root
        self.usblp_dev_dir = usblp_dev_dir
        self._backend = backend
        self._claim: _Claim | None = None

    @property
    def _name(self) -> str:
        return f"USB printer {self.vid:04x}:{self.pid:04x}" + (
            f" serial {self.serial}" if self.serial else ""
        )

    @property
    def backend(self) -> UsbBackend:
        if self._backend is None:
            self._backend = PyUsbBackend()
        return self._backend

    # -- libusb: claim and release ------------------------------------------------------------
    def _open(self) -> _Claim:
        """The claimed printer interface with its (OUT, IN or None) bulk endpoints."""
        if self._claim is not None:
            return self._claim
        backend = self.backend
        or_bad_value: tuple[type[BaseException], ...] = (*backend.errors, ValueError, StopIteration)
        try:
            dev = backend.find(self.vid, self.pid, self.serial)
        except or_bad_value as exc:
            raise PrinterUnavailable(f"cannot search USB for the {self._name}: {exc}") from exc
        if dev is None:
            raise PrinterUnavailable(f"no {self._name} is connected")
        number: int | None = None
        detached = claimed = False
        try:
            interfaces = [i for i in dev.get_active_configuration() if getattr(i, "bAlternateSetting", 0) == 0]
            if not interfaces:
                raise PrinterUnavailable(f"the {self._name} has no interface")
            intf = next((i for i in interfaces if i.bInterfaceClass == PRINTER_CLASS), interfaces[0])
            number = int(intf.bInterfaceNumber)
            if dev.is_kernel_driver_active(number):
                dev.detach_kernel_driver(number)
                detached = True
            backend.claim_interface(dev, number)
            claimed = True
            endpoints = list(intf)
            out = next((e for e in endpoints if not e.bEndpointAddress & _DIR_IN), None)
            inp = next((e for e in endpoints if e.bEndpointAddress & _DIR_IN), None)
            if out is None:
                raise PrinterUnavailable(f"the {self._name} has no bulk OUT endpoint")
        except PrinterUnavailable:
            self._release(dev, number, claimed=claimed, detached=detached)
            raise
        except or_bad_value as exc:
            self._release(dev, number, claimed=claimed, detached=detached)
            raise PrinterUnavailable(f"cannot claim the {self._name}: {exc}") from exc
        self._claim = _Claim(dev, number, detached, out, inp)
        return self._claim

    def _release(self, dev: Any, number: int | None, *, claimed: bool, detached: bool) -> None:
        """Undo what _open did, step by step; a step that fails (printer unplugged) is logged
        and the others still run."""
        backend = self.backend
        steps: list[tuple[str, Any]] = []
        if claimed and number is not None:
            steps.append(("release the interface", lambda: backend.release_interface(dev, number)))
        if detached and number is not None:
            steps.append(("reattach the kernel driver", lambda: dev.attach_kernel_driver(number)))
        steps.append(("dispose of the device handle", lambda: backend.dispose_resources(dev)))
        or_bad_value: tuple[type[BaseException], ...] = (*backend.errors, ValueError)
        for what, step in steps:
            try:
                step()
            except or_bad_value as exc:
                log.debug("%s: cannot %s: %s", self._name, what, exc)

    def close(self) -> None:
        """Release the claimed interface (and give it back to its kernel driver); the transport
        stays usable: the next job looks the printer up again."""
        claim, self._claim = self._claim, None
        if claim is not None:
            self._release(claim.dev, claim.interface, claimed=True, detached=claim.detached)

    # -- jobs ---------------------------------------------------------------------------------
    def write(self, data: bytes, *, job_id: str = "") -> None:
        lp = find_usblp(self.vid, self.pid, self.serial, self.usblp_root, self.usblp_dev_dir)
        if lp is not None:
            self.close()
            fd = open_for_write(str(lp))
            try:
                write_fd(fd, data, str(lp), self.timeout_s)
            finally:
                os.close(fd)
            return
        claim = self._open()
        backend = self.backend
        sent = 0
        timeout_ms = int(self.timeout_s * 1000)
        try:
            while sent < len(data):
                sent += claim.out.write(data[sent : sent + CHUNK], timeout=timeout_ms)
        except backend.errors as exc:
            self.close()
            timed_out = isinstance(exc, backend.timeout_errors)
            if sent == 0:
                if timed_out:
                    raise PrinterTimeout(f"the {self._name} took no data for {self.timeout_s:g} s") from exc
                raise PrinterUnavailable(f"the {self._name} did not take data: {exc}") from exc
            if timed_out:
                raise PrintTimeout(
                    f"the {self._name} stopped taking data for {self.timeout_s:g} s after {sent} of {len(data)} bytes"
                ) from exc
            raise PrintInterrupted(f"the {self._name} failed after {sent} of {len(data)} bytes") from exc

    def query(self, request: bytes, timeout_s: float) -> bytes | None:
        if find_usblp(self.vid, self.pid, self.serial, self.usblp_root, self.usblp_dev_dir) is not None:
            return None  # usblp exposes no reliable read-back through the lp node
        claim = self._open()
        if claim.inp is None:
            return None
        try:
            claim.out.write(request, timeout=int(timeout_s * 1000))
            return bytes(claim.inp.read(64, timeout=int(timeout_s * 1000))) or None
        except self.backend.errors as exc:
            if not isinstance(exc, self.backend.timeout_errors):
                self.close()  # unplugged or reset: look it up again next time
            return None

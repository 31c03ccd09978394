"""USB printer transport: the kernel ``usblp`` device when it is bound,
otherwise libusb through pyusb.

URI grammar: ``usb://VID:PID[/SERIAL][?timeout=SECONDS]``

- VID and PID are 4 hex digits (``usb://0416:5011``); SERIAL picks one of
  several identical printers by its USB serial number.
- ``timeout`` (default 10): per-transfer timeout.

The device is looked up on every job, so a printer plugged in (or power
cycled) after start-up is found without a restart.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from drivers.errors import PrinterConfigError, PrinterUnavailable, PrintInterrupted

from .base import parse_options, positive_float, split_uri
from .file import write_fd

__all__ = ["UsbTransport", "find_usblp"]

GRAMMAR = "usb://VID:PID[/SERIAL][?timeout=SECONDS]"
SYSFS_USBMISC = Path("/sys/class/usbmisc")
CHUNK = 4096


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def find_usblp(vid: int, pid: int, serial: str, root: Path = SYSFS_USBMISC) -> Path | None:
    """/dev/usb/lpN of a usblp-bound printer with these ids, if there is one."""
    if not root.is_dir():
        return None
    for entry in sorted(root.glob("lp*")):
        usb_dev = (entry / "device").resolve().parent  # interface -> device
        if _read(usb_dev / "idVendor") != f"{vid:04x}" or _read(usb_dev / "idProduct") != f"{pid:04x}":
            continue
        if serial and _read(usb_dev / "serial") != serial:
            continue
        return Path("/dev/usb") / entry.name
    return None


class UsbTransport:
    def __init__(self, uri: str) -> None:
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

    @property
    def _name(self) -> str:
        return f"USB printer {self.vid:04x}:{self.pid:04x}" + (
            f" serial {self.serial}" if self.serial else ""
        )

    def _endpoints(self) -> tuple[Any, Any]:
        """(OUT, IN or None) bulk endpoints of the printer interface via libusb."""
        try:
            import usb.core
            import usb.util
        except ImportError as exc:  # pragma: no cover - pyusb is a dependency
            raise PrinterUnavailable("pyusb is not installed") from exc
        try:
            dev = usb.core.find(
                idVendor=self.vid,
                idProduct=self.pid,
                custom_match=(lambda d: usb.util.get_string(d, d.iSerialNumber) == self.serial)
                if self.serial
                else None,
            )
        except (usb.core.NoBackendError, usb.core.USBError, ValueError) as exc:
            raise PrinterUnavailable(f"cannot search USB for the {self._name}: {exc}") from exc
        if dev is None:
            raise PrinterUnavailable(f"no {self._name} is connected")
        try:
            cfg = dev.get_active_configuration()
            intf = next((i for i in cfg if i.bInterfaceClass == 7), cfg[(0, 0)])
            if dev.is_kernel_driver_active(intf.bInterfaceNumber):
                dev.detach_kernel_driver(intf.bInterfaceNumber)
            direction = usb.util.endpoint_direction
            out = usb.util.find_descriptor(
                intf, custom_match=lambda e: direction(e.bEndpointAddress) == usb.util.ENDPOINT_OUT
            )
            inp = usb.util.find_descriptor(
                intf, custom_match=lambda e: direction(e.bEndpointAddress) == usb.util.ENDPOINT_IN
            )
        except (usb.core.USBError, NotImplementedError, StopIteration) as exc:
            raise PrinterUnavailable(f"cannot claim the {self._name}: {exc}") from exc
        if out is None:
            raise PrinterUnavailable(f"the {self._name} has no bulk OUT endpoint")
        return out, inp

    def write(self, data: bytes, *, job_id: str = "") -> None:
        lp = find_usblp(self.vid, self.pid, self.serial)
        if lp is not None:
            try:
                fd = os.open(lp, os.O_WRONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise PrinterUnavailable(f"cannot open {lp}: {exc.strerror}") from exc
            try:
                write_fd(fd, data, str(lp))
            finally:
                os.close(fd)
            return
        import usb.core

        out, _ = self._endpoints()
        sent = 0
        timeout_ms = int(self.timeout_s * 1000)
        try:
            while sent < len(data):
                sent += out.write(data[sent : sent + CHUNK], timeout=timeout_ms)
        except usb.core.USBError as exc:
            if sent == 0:
                raise PrinterUnavailable(f"the {self._name} did not take data: {exc}") from exc
            raise PrintInterrupted(f"the {self._name} failed after {sent} of {len(data)} bytes") from exc

    def query(self, request: bytes, timeout_s: float) -> bytes | None:
        if find_usblp(self.vid, self.pid, self.serial) is not None:
            return None  # usblp exposes no reliable read-back through the lp node
        import usb.core

        out, inp = self._endpoints()
        if inp is None:
            return None
        try:
            out.write(request, timeout=int(timeout_s * 1000))
            return bytes(inp.read(64, timeout=int(timeout_s * 1000))) or None
        except usb.core.USBError:
            return None

    def close(self) -> None:
        """Nothing is held between calls."""

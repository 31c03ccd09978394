"""Serial (RS-232, USB-serial) transport over pyserial.

URI grammar: ``serial:///DEVICE/PATH[?baudrate=N&flow=none|rtscts|xonxoff|dsrdtr&timeout=SECONDS]``

- DEVICE/PATH is absolute: ``/dev/ttyUSB0`` or, better, a stable
  ``/dev/serial/by-id/...`` link.
- ``baudrate`` (default 9600), ``flow`` (default none), ``timeout`` (default
  10): how long a write, and then the wait for the port to send it all, may
  be held up by flow control (a printer out of paper drops CTS or sends XOFF)
  before the job is given up (``PrintTimeout``: outcome unknown).

The port is opened on first use and reopened when the device node changed
(USB-serial adapter unplugged or printer power-cycled) or after an error.
Nothing waits without a deadline: pyserial's ``flush()`` (``tcdrain``) would
block for as long as the printer holds flow control, so the output queue is
watched instead, and a job given up has its unsent bytes discarded before the
port is closed (it does not print later, and closing does not wait for it).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import serial as pyserial

from drivers.errors import PrinterConfigError, PrinterUnavailable, PrintInterrupted, PrintTimeout

from .base import parse_options, positive_float, split_uri

__all__ = ["SerialTransport"]

GRAMMAR = "serial:///DEVICE/PATH[?baudrate=N&flow=none|rtscts|xonxoff|dsrdtr&timeout=SECONDS]"
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
FLOWS = ("none", "rtscts", "xonxoff", "dsrdtr")
_DRAIN_POLL_S = 0.01


def _baudrate(value: str) -> int:
    rate = int(value)
    if rate not in BAUDRATES:
        raise ValueError(value)
    return rate


def _flow(value: str) -> str:
    if value not in FLOWS:
        raise ValueError(value)
    return value


class SerialTransport:
    def __init__(self, uri: str) -> None:
        parts = split_uri(uri, "serial", GRAMMAR)
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise PrinterConfigError(f"bad printer URI {uri!r}; expected {GRAMMAR}")
        opts: dict[str, Any] = parse_options(
            parts, {"baudrate": _baudrate, "flow": _flow, "timeout": positive_float}, GRAMMAR
        )
        self.uri = uri
        self.path = parts.path
        self.baudrate: int = opts.get("baudrate", 9600)
        self.flow: str = opts.get("flow", "none")
        self.timeout_s: float = opts.get("timeout", 10.0)
        self._port: pyserial.Serial | None = None
        self._ident: tuple[int, int] | None = None

    def _open(self) -> pyserial.Serial:
        if self._port is not None and self._same_device():
            return self._port
        self.close()
        try:
            ident = os.stat(self.path)
            port = pyserial.Serial(
                port=self.path,
                baudrate=self.baudrate,
                rtscts=self.flow == "rtscts",
                xonxoff=self.flow == "xonxoff",
                dsrdtr=self.flow == "dsrdtr",
                timeout=self.timeout_s,
                write_timeout=self.timeout_s,
                exclusive=True,
            )
        except (OSError, pyserial.SerialException, ValueError) as exc:
            raise PrinterUnavailable(f"cannot open serial port {self.path}: {exc}") from exc
        self._port, self._ident = port, (ident.st_dev, ident.st_ino)
        return port

    def _same_device(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._ident

    def write(self, data: bytes, *, job_id: str = "") -> None:
        port = self._open()
        try:
            port.write(data)  # bounded by write_timeout
            if not self._drain(port, self.timeout_s):
                raise pyserial.SerialTimeoutException("output not sent")
        except pyserial.SerialTimeoutException as exc:
            self.close(discard=True)
            raise PrintTimeout(
                f"serial port {self.path} did not take the job within {self.timeout_s:g} s"
                " (flow control held: paper out or printer offline?)"
            ) from exc
        except (OSError, pyserial.SerialException) as exc:
            self.close(discard=True)
            raise PrintInterrupted(f"serial port {self.path} failed while sending: {exc}") from exc

    @staticmethod
    def _drain(port: pyserial.Serial, timeout_s: float) -> bool:
        """Wait until the driver's output queue is empty (``flush()`` without its unbounded
        wait); False when it is not empty within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while port.out_waiting:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_DRAIN_POLL_S)
        return True

    def query(self, request: bytes, timeout_s: float) -> bytes | None:
        port = self._open()
        try:
            port.reset_input_buffer()
            port.write_timeout = timeout_s
            port.write(request)
            if not self._drain(port, timeout_s):
                self.close(discard=True)
                return None
            port.timeout = timeout_s
            first = port.read(1)
            if not first:
                return None
            return bytes(first) + bytes(port.read(port.in_waiting))
        except (OSError, pyserial.SerialException):
            self.close(discard=True)
            return None
        finally:
            if self._port is not None:
                self._port.timeout = self.timeout_s
                self._port.write_timeout = self.timeout_s

    def close(self, discard: bool = False) -> None:
        """Close the port; ``discard``: drop output still queued first (a job given up), so
        the close does not wait for flow control and the bytes never print later."""
        port, self._port, self._ident = self._port, None, None
        if port is not None:
            # The device may already be gone; then there is nothing to release.
            with contextlib.suppress(OSError, pyserial.SerialException, ValueError):
                if discard:
                    port.reset_output_buffer()
            with contextlib.suppress(OSError, pyserial.SerialException):
                port.close()

"""Receipt printers: configuration, the `Printer` the daemon calls, and the
transport chosen by URI.

    printer = Printer(PrinterConfig(name="receipt", uri="tcp://10.0.0.5:9100"))
    printer.status()                      # "ok", "paper_out", ... never raises
    printer.print_bytes(data, job_id)     # PrinterUnavailable: nothing sent, retry
                                          # PrintInterrupted: outcome unknown

Encoding lives in `drivers.printers.escpos`, status in `.status`, previews in
`.decode` / `.render`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from drivers.errors import PrinterConfigError, PrinterUnavailable, PrintInterrupted

from .escpos import CHINESE_MODES, COLUMNS
from .status import BLOCKING, STATES, query_status
from .transports import SCHEMES, Transport, open_transport

__all__ = [
    "SCHEMES",
    "STATES",
    "PrintInterrupted",
    "Printer",
    "PrinterConfig",
    "PrinterUnavailable",
    "Transport",
    "open_transport",
]


@dataclass(frozen=True)
class PrinterConfig:
    name: str
    uri: str
    profile: str = "default"
    chinese: str = "fs"
    columns: int = 48
    language: str = "zh-CN"

    def __post_init__(self) -> None:
        if not self.name:
            raise PrinterConfigError("a printer needs a name")
        if self.chinese not in CHINESE_MODES:
            raise PrinterConfigError(f"printer {self.name}: chinese must be one of {CHINESE_MODES}")
        if self.columns not in COLUMNS:
            raise PrinterConfigError(f"printer {self.name}: columns must be one of {COLUMNS}")
        if self.language not in ("zh-CN", "en"):
            raise PrinterConfigError(f"printer {self.name}: language must be zh-CN or en")


class Printer:
    """One configured printer. Construction validates the URI but touches no
    hardware: a printer that is off at start-up is simply `offline` until it
    comes back. Calls are serialised per printer."""

    status_timeout_s = 0.5

    def __init__(self, cfg: PrinterConfig) -> None:
        self.cfg = cfg
        self.transport: Transport = open_transport(cfg.uri)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.cfg.name

    def status(self) -> str:
        """One of STATES; never raises."""
        with self._lock:
            return query_status(self.transport, self.status_timeout_s)

    def print_bytes(self, data: bytes, job_id: str) -> None:
        """Send one job. Raises PrinterUnavailable when the printer reports
        paper out, cover open or offline, or cannot be reached (nothing was
        sent); PrintInterrupted when the transfer broke (outcome unknown)."""
        with self._lock:
            state = query_status(self.transport, self.status_timeout_s)
            if state in BLOCKING:
                raise PrinterUnavailable(f"printer {self.name} is {state.replace('_', ' ')}")
            self.transport.write(data, job_id=job_id)

    def close(self) -> None:
        with self._lock:
            self.transport.close()

"""In-memory transport, for tests only (like pyserial's ``loop://``).

URI grammar: ``memory://[NAME][?status=HEX]``

- ``status`` (default 12, i.e. 0x12 = "all clear"): the byte answered to
  every ``DLE EOT n`` query; ``none`` makes the printer silent.

Tests reach the instance through ``Printer.transport`` and may set
``status_byte`` or ``fail_next`` (an exception raised by the next write).
"""

from __future__ import annotations

from drivers.errors import PrinterConfigError

from .base import parse_options, split_uri

__all__ = ["MemoryTransport"]

GRAMMAR = "memory://[NAME][?status=HEX|none]"


def _status(value: str) -> int | None:
    if value == "none":
        return None
    b = int(value, 16)
    if not 0 <= b <= 0xFF:
        raise ValueError(value)
    return b


class MemoryTransport:
    def __init__(self, uri: str) -> None:
        parts = split_uri(uri, "memory", GRAMMAR)
        if parts.path not in ("", "/"):
            raise PrinterConfigError(f"bad printer URI {uri!r}; expected {GRAMMAR}")
        opts = parse_options(parts, {"status": _status}, GRAMMAR)
        self.uri = uri
        self.name = parts.netloc
        self.status_byte: int | None = opts.get("status", 0x12)
        self.fail_next: Exception | None = None
        self.jobs: list[tuple[str, bytes]] = []
        self.closed = False

    @property
    def data(self) -> bytes:
        return b"".join(d for _, d in self.jobs)

    def write(self, data: bytes, *, job_id: str = "") -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.jobs.append((job_id, bytes(data)))

    def query(self, request: bytes, timeout_s: float) -> bytes | None:
        if len(request) == 3 and request[:2] == b"\x10\x04" and self.status_byte is not None:
            return bytes([self.status_byte])
        return None

    def close(self) -> None:
        self.closed = True

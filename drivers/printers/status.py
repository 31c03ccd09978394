"""Printer status over the real-time `DLE EOT n` requests.

A reply byte is valid only if ``b & 0x93 == 0x12`` (bits 1 and 4 set, 0 and
7 clear); anything else (noise, an ASB packet, an echo) is ignored. Status is
best effort: no valid reply within the timeout is ``unknown``, which never
stops a print; a printer that cannot be reached at all is ``offline``.

    n=1 printer   bit 3: offline
    n=2 cause     bit 2: cover open, bit 5: stopped for paper end
    n=4 paper     bits 2-3: paper near end, bits 5-6: paper end
"""

from __future__ import annotations

from drivers.errors import PrinterError, PrinterUnavailable

from .transports import Transport

__all__ = ["BLOCKING", "STATES", "classify", "query_status", "reply_byte", "valid"]

STATES = ("ok", "paper_near_end", "paper_out", "cover_open", "offline", "unknown")
# States in which sending a job would lose it or leave it half printed.
BLOCKING = frozenset({"paper_out", "cover_open", "offline"})

DLE_EOT = b"\x10\x04"


def valid(b: int) -> bool:
    return b & 0x93 == 0x12


def reply_byte(reply: bytes | None) -> int | None:
    """The last valid status byte of a reply, if any."""
    if not reply:
        return None
    for b in reversed(reply):
        if valid(b):
            return b
    return None


def classify(printer: int | None, cause: int | None, paper: int | None) -> str:
    """The state from the (already validated or None) replies to n=1, 2, 4."""
    if printer is None:
        return "unknown"
    if printer & 0x08:
        if cause is not None and cause & 0x04:
            return "cover_open"
        if (cause is not None and cause & 0x20) or (paper is not None and paper & 0x60):
            return "paper_out"
        return "offline"
    if paper is not None and paper & 0x60:
        return "paper_out"
    if paper is not None and paper & 0x0C:
        return "paper_near_end"
    # Online; a printer that answers n=1 but not n=4 is taken as ready.
    return "ok"


def _ask(transport: Transport, n: int, timeout_s: float) -> int | None:
    return reply_byte(transport.query(DLE_EOT + bytes((n,)), timeout_s))


def query_status(transport: Transport, timeout_s: float = 0.5) -> str:
    """One of STATES; never raises."""
    try:
        printer = _ask(transport, 1, timeout_s)
        if printer is None:
            return "unknown"
        cause = _ask(transport, 2, timeout_s) if printer & 0x08 else None
        paper = _ask(transport, 4, timeout_s)
    except PrinterUnavailable:
        return "offline"
    except (PrinterError, OSError):
        return "unknown"
    return classify(printer, cause, paper)

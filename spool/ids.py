"""Record ids and timestamps.

``record_id`` uses the UUIDv7 layout (48-bit Unix milliseconds, version 7,
12 bits of sub-millisecond order, variant, 62 random bits): ids sort by
creation time, which helps central's indexes and people reading logs.
Python 3.11 has no ``uuid.uuid7``; this one is monotonic within a process.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime

__all__ = ["now_rfc3339", "uuid7"]

_lock = threading.Lock()
_last_ms = 0
_last_counter = 0


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A time-ordered UUID (version 7); strictly increasing within this process."""
    global _last_ms, _last_counter
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    random = int.from_bytes(os.urandom(10), "big")  # one system call: 62 bits for rand_b, 10 for a counter
    with _lock:
        if ms <= _last_ms:
            # Same (or a stepped-back) millisecond: keep order by counting up.
            ms, counter = _last_ms, _last_counter + 1
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
        else:
            counter = (random >> 64) & 0x3FF  # room left to count up
        _last_ms, _last_counter = ms, counter
    rand_b = random & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


# (Unix second, its local "YYYY-MM-DDTHH:MM:SS", its UTC offset): every append takes the
# time, and the local time and offset of a second are worked out once, not per call.
_second: tuple[int, str, str] = (-1, "", "")


def now_rfc3339() -> str:
    """Local wall-clock time, RFC 3339 with milliseconds and the UTC offset."""
    global _second
    second, nanos = divmod(time.time_ns(), 1_000_000_000)
    known = _second
    if known[0] != second:
        text = datetime.fromtimestamp(second).astimezone().isoformat(timespec="seconds")
        known = _second = (second, text[:19], text[19:])
    return f"{known[1]}.{nanos // 1_000_000:03d}{known[2]}"

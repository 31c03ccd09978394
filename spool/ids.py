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
    with _lock:
        if ms <= _last_ms:
            # Same (or a stepped-back) millisecond: keep order by counting up.
            ms, counter = _last_ms, _last_counter + 1
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
        else:
            counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # room left to count up
        _last_ms, _last_counter = ms, counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def now_rfc3339() -> str:
    """Local wall-clock time, RFC 3339 with milliseconds and the UTC offset."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")

"""Times as the API shows them: in the terminal's zone (`terminal.timezone`).

What is stored stays as it was written (the spool's `spooled_at` and history
times are hashed or part of the record, in the zone of the machine that wrote
them; print jobs and the event log keep UTC or whatever their writer used).
Every time that leaves through the API passes through `local_iso` on its way
out, so a POS never sees `created_at` in UTC beside a `business_time` in
+08:00. The instant is never changed, only the offset it is written with.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

__all__ = ["local_iso", "local_times", "zone"]

T = TypeVar("T")
_FRACTION = re.compile(r"T\d\d:\d\d(?::\d\d)?[.,](\d+)")


@lru_cache(maxsize=16)
def zone(name: str) -> tzinfo:
    """The zone named `name` (an IANA name such as "Asia/Shanghai")."""
    return ZoneInfo(name)


def _tz(tz: tzinfo | str) -> tzinfo:
    return zone(tz) if isinstance(tz, str) else tz


def local_iso(value: T, tz: tzinfo | str | None) -> T | str:
    """`value` (an RFC 3339 time with an offset) as the same instant in `tz`, same precision.

    `tz` None: `value` as it is (a caller that shows stored times as stored, the CLI say).

    Anything else (None, a date, text that is not a time with an offset) comes back unchanged:
    a time the daemon cannot read is shown as it was stored rather than guessed at.
    """
    if tz is None:
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value
        return value.astimezone(_tz(tz)).isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    if not isinstance(value, str) or "T" not in value[:11]:
        return value
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        return value
    found = _FRACTION.search(value)
    digits = len(found.group(1)) if found else 0
    timespec = "seconds" if digits == 0 else "milliseconds" if digits <= 3 else "microseconds"
    return parsed.astimezone(_tz(tz)).isoformat(timespec=timespec)


def local_times(obj: T, tz: tzinfo | str | None) -> T:
    """A copy of the dict `obj` with each top-level time (`at` and `*_at` keys) in `tz`.

    Not a dict (None, a list): returned as it is. Nested objects are left alone: each API
    answer converts the objects it shows (a transaction's `resolution`, `refund`...).
    """
    if tz is None or not isinstance(obj, dict):
        return obj
    out: dict[Any, Any] = {}
    for key, value in obj.items():
        if isinstance(key, str) and (key == "at" or key.endswith("_at")):
            out[key] = local_iso(value, tz)
        else:
            out[key] = value
    return out  # type: ignore[return-value]

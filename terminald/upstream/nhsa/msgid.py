"""The sender's message id: `fixmedins_code` (12) + `yyyyMMddHHmmss` (14) + a 4-digit counter.

    H44030500123 20260315093012 0001
    └ institution └ local time   └ counter: 0001..9999 within that second

Several terminals of one institution (one fixmedins_code) each keep their own call log, so
their counters would collide in the same second: `[nhsa] msgid_slot` (0 to 3 digits, one per
terminal) leads the counter and only the rest counts (slot "07": 0701..0799; slot "": the
whole 0001..9999).

The time is the call's, in the terminal's zone (`terminal.timezone`); the envelope's `inf_time`
is the same second (`inf_time`). Unique per call and never reused, across threads, processes
and restarts: the counter is not kept in memory but taken from the call log, in the same
transaction that writes the call's row (`calllog.CallLog.begin`): the next free counter of that
second there (within the slot). A clock set back after a restart lands on seconds the log has
already used, and their counters go on from the highest one used. A second whose counters are
all used raises MsgidExhausted: the client waits for the next second and takes one there.

Public code that calls the platform draws the 4 digits at random (a collision is then only
unlikely) or leaves them out; neither is good enough for a key that a reversal (2601 `omsgid`)
must find again.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from terminald.upstream.nhsa.errors import EnvelopeError, MsgidExhausted

__all__ = [
    "COUNTER_MAX",
    "MSGID_LENGTH",
    "MsgId",
    "check_fixmedins_code",
    "format_msgid",
    "inf_time",
    "msgid_prefix",
    "next_counter",
    "parse_msgid",
    "slot_range",
]

MSGID_LENGTH = 30
COUNTER_MAX = 9999
_CODE = re.compile(r"[A-Za-z0-9]{12}")
_MSGID = re.compile(r"([A-Za-z0-9]{12})([0-9]{14})([0-9]{4})")
_STAMP = "%Y%m%d%H%M%S"
_SLOT = re.compile(r"[0-9]{0,3}")


@dataclass(frozen=True)
class MsgId:
    fixmedins_code: str
    local_time: datetime  # naive: the wall-clock second in the terminal's zone
    counter: int

    @property
    def prefix(self) -> str:
        return self.fixmedins_code + self.local_time.strftime(_STAMP)


def check_fixmedins_code(code: str) -> str:
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise EnvelopeError(f"fixmedins_code must be 12 letters or digits, not {code!r}")
    return code


def msgid_prefix(fixmedins_code: str, at: datetime, tz: tzinfo) -> str:
    """The first 26 characters: the institution and the second `at` in zone `tz`."""
    check_fixmedins_code(fixmedins_code)
    if at.tzinfo is None:
        raise EnvelopeError("a msgid needs an aware time (with its zone), not a naive one")
    return fixmedins_code + at.astimezone(tz).strftime(_STAMP)


def slot_range(slot: str = "") -> tuple[int, int]:
    """The counters of `slot` (0 to 3 digits leading the 4-digit counter), lowest and highest:
    "" -> 1..9999, "07" -> 701..799, "123" -> 1231..1239. Never 0000."""
    if not isinstance(slot, str) or not _SLOT.fullmatch(slot):
        raise EnvelopeError(f"msgid_slot must be 0 to 3 digits, not {slot!r}")
    rest = 4 - len(slot)
    base = int(slot or "0") * 10**rest
    return base + 1, base + 10**rest - 1


def next_counter(highest_used: int | None, slot: str = "") -> int:
    """The counter after `highest_used` in `slot` (None: none of the slot used in that second yet)."""
    low, high = slot_range(slot)
    counter = low if highest_used is None else highest_used + 1
    if counter > high:
        raise MsgidExhausted(f"all {high - low + 1} message ids of this second (msgid_slot {slot!r}) are used")
    return counter


def format_msgid(prefix: str, counter: int) -> str:
    if len(prefix) != MSGID_LENGTH - 4 or not 1 <= counter <= COUNTER_MAX:
        raise EnvelopeError(f"no msgid from prefix {prefix!r} and counter {counter!r}")
    msgid = f"{prefix}{counter:04d}"
    parse_msgid(msgid)
    return msgid


def parse_msgid(msgid: str) -> MsgId:
    found = _MSGID.fullmatch(msgid) if isinstance(msgid, str) else None
    if found is None:
        raise EnvelopeError(f"{msgid!r} is not a msgid (12 + 14 + 4 characters)")
    try:
        local = _local_time(found.group(2))
    except ValueError as exc:
        raise EnvelopeError(f"msgid {msgid!r} does not hold a valid time") from exc
    counter = int(found.group(3))
    if counter < 1:
        raise EnvelopeError(f"msgid {msgid!r}: the counter starts at 0001")
    return MsgId(found.group(1), local, counter)


@functools.lru_cache(maxsize=64)
def _local_time(stamp: str) -> datetime:
    # strptime is slow and every call parses its msgid several times (log, envelope, inf_time),
    # all within a few seconds: the same few stamps.
    return datetime.strptime(stamp, _STAMP)


def inf_time(msgid: str) -> str:
    """The envelope's `inf_time` ("yyyy-MM-dd HH:mm:ss") for the call named `msgid`."""
    return parse_msgid(msgid).local_time.strftime("%Y-%m-%d %H:%M:%S")

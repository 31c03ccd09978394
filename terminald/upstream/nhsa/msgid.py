"""The sender's message id: `fixmedins_code` (12) + `yyyyMMddHHmmss` (14) + a 4-digit counter.

    H44030500123 20260315093012 0001
    └ institution └ local time   └ counter: 0001..9999 within that second

The time is the call's, in the terminal's zone (`terminal.timezone`); the envelope's `inf_time`
is the same second (`inf_time`). Unique per call and never reused, across threads, processes
and restarts: the counter is not kept in memory but taken from the call log, in the same
transaction that writes the call's row (`calllog.CallLog.begin`): the next free counter of that
second there. A clock set back after a restart lands on seconds the log has already used, and
their counters go on from the highest one used. 9,999 calls in one second raise MsgidExhausted.

Public code that calls the platform draws the 4 digits at random (a collision is then only
unlikely) or leaves them out; neither is good enough for a key that a reversal (2601 `omsgid`)
must find again.
"""

from __future__ import annotations

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
]

MSGID_LENGTH = 30
COUNTER_MAX = 9999
_CODE = re.compile(r"[A-Za-z0-9]{12}")
_MSGID = re.compile(r"([A-Za-z0-9]{12})([0-9]{14})([0-9]{4})")
_STAMP = "%Y%m%d%H%M%S"


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


def next_counter(highest_used: int | None) -> int:
    """The counter after `highest_used` (None: none used in that second yet)."""
    counter = 1 if highest_used is None else highest_used + 1
    if counter > COUNTER_MAX:
        raise MsgidExhausted(f"all {COUNTER_MAX} message ids of this second are used")
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
        local = datetime.strptime(found.group(2), _STAMP)
    except ValueError as exc:
        raise EnvelopeError(f"msgid {msgid!r} does not hold a valid time") from exc
    counter = int(found.group(3))
    if counter < 1:
        raise EnvelopeError(f"msgid {msgid!r}: the counter starts at 0001")
    return MsgId(found.group(1), local, counter)


def inf_time(msgid: str) -> str:
    """The envelope's `inf_time` ("yyyy-MM-dd HH:mm:ss") for the call named `msgid`."""
    return parse_msgid(msgid).local_time.strftime("%Y-%m-%d %H:%M:%S")

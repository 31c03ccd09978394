"""Time helpers of the upstream link: working days, downtime windows, timestamps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

__all__ = ["WorkCalendar", "active_window", "now_iso", "parse_time", "working_days_between"]


def now_iso(tz: tzinfo) -> str:
    return datetime.now(tz).isoformat(timespec="milliseconds")


def parse_time(value: str) -> datetime | None:
    """An RFC 3339 time with offset, or None when it is not one."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo is not None else None


class WorkCalendar:
    """Which days are working days: Monday to Friday, less the public holidays, plus the
    make-up working days (调休, a Saturday or Sunday worked) that the offices announce."""

    def __init__(self, holidays: Iterable[date] = (), workdays: Iterable[date] = ()) -> None:
        self._holidays = frozenset(holidays)
        self._workdays = frozenset(workdays)

    def is_working(self, day: date) -> bool:
        if day in self._workdays:
            return True
        return day.weekday() < 5 and day not in self._holidays

    def between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end`; 0 when end <= start."""
        if end <= start:
            return 0
        days = (end - start).days
        weeks, rest = divmod(days, 7)
        count = weeks * 5
        for offset in range(1, rest + 1):
            if (start + timedelta(days=offset)).weekday() < 5:
                count += 1
        # The exceptions are few: correct the plain count by each one inside the span.
        count -= sum(1 for d in self._holidays if start < d <= end and d.weekday() < 5)
        count += sum(1 for d in self._workdays if start < d <= end and d.weekday() >= 5)
        return count

    def add(self, start: date, working_days: int) -> date:
        """The day `working_days` working days after `start` (the deadline of a 补录 window)."""
        day, left = start, working_days
        while left > 0:
            day += timedelta(days=1)
            if self.is_working(day):
                left -= 1
        return day


def working_days_between(start: date, end: date, calendar: WorkCalendar | None = None) -> int:
    """Working days after `start` up to and including `end`; 0 when end <= start."""
    return (calendar or WorkCalendar()).between(start, end)


def active_window(windows: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, Any] | None:
    """The window (with `start`, `end` as RFC 3339 strings or datetimes) containing `now`, if any."""
    for window in windows:
        start, end = window.get("start"), window.get("end")
        start_dt = start if isinstance(start, datetime) else parse_time(str(start))
        end_dt = end if isinstance(end, datetime) else parse_time(str(end))
        if start_dt is None or end_dt is None:
            continue
        if start_dt <= now < end_dt:
            return {
                "start": start_dt.isoformat(),
                "end": end_dt.isoformat(),
                "reason": str(window.get("reason", "")),
                "source": str(window.get("source", "config")),
            }
    return None

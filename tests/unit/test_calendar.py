"""Working days for the re-entry and refund deadlines: holidays off, make-up working days on."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from terminald.upload.calendar import WorkCalendar, working_days_between

NATIONAL_DAY = [date(2026, 10, 1) + timedelta(days=n) for n in range(7)]  # Thu 1 to Wed 7 October
MAKE_UP = [date(2026, 9, 27), date(2026, 10, 10)]  # a Sunday and a Saturday worked instead


def test_a_plain_week() -> None:
    cal = WorkCalendar()
    assert cal.add(date(2026, 12, 4), 1) == date(2026, 12, 7)  # Friday + 1 working day = Monday
    assert cal.between(date(2026, 12, 4), date(2026, 12, 7)) == 1


def test_holidays_are_skipped_and_make_up_days_count() -> None:
    cal = WorkCalendar(NATIONAL_DAY, MAKE_UP)
    # A sale on Tuesday 29 September with 10 working days: Wed 30, then the holiday week is off,
    # Thu 8, Fri 9, Sat 10 (made up), Mon 12 to Fri 16, Mon 19.
    assert cal.add(date(2026, 9, 29), 10) == date(2026, 10, 19)
    assert cal.between(date(2026, 9, 29), date(2026, 10, 19)) == 10
    assert not cal.is_working(date(2026, 10, 5)) and cal.is_working(date(2026, 10, 10))


@given(st.dates(date(2025, 1, 1), date(2027, 12, 31)), st.integers(0, 40))
def test_add_and_between_agree(start: date, days: int) -> None:
    cal = WorkCalendar(NATIONAL_DAY, MAKE_UP)
    end = cal.add(start, days)
    assert cal.between(start, end) == days
    assert working_days_between(start, end, cal) == days

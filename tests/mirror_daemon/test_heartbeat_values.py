"""The heartbeat's overdue re-entries: pending records past the deadline, counted in working days
(no PostgreSQL needed)."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from spool import Outcome, Spool
from terminald.mirror.service import overdue_reentries
from terminald.upload.calendar import WorkCalendar
from tests.spool.factory import make_request


def test_overdue_reentries_counts_pending_records_past_the_deadline(tmp_spool: Spool) -> None:
    old = [tmp_spool.append(make_request(f"old{i}", business_time="2026-11-02T10:00:00+08:00")).record
           for i in range(3)]
    tmp_spool.append(make_request("recent", business_time="2026-11-20T10:00:00+08:00"))
    tmp_spool.apply_outcomes([Outcome(old[0].seq, "settled", {})])  # decided: no longer waiting
    tz = ZoneInfo("Asia/Shanghai")
    today = date(2026, 11, 23)  # a Monday: 15 working days after Nov 2, 1 after Nov 20
    assert overdue_reentries(tmp_spool, 10, tz, today) == 2
    assert overdue_reentries(tmp_spool, 20, tz, today) == 0
    # Holidays are not working days: with six of them Nov 2 is 9 working days back, not overdue.
    holidays = WorkCalendar(holidays=[date(2026, 11, d) for d in (3, 4, 5, 6, 9, 10)])
    assert overdue_reentries(tmp_spool, 10, tz, today, holidays) == 0

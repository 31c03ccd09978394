"""Strict parsing of central's answers, Retry-After, backoff and the working-day calendar."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tenacity import RetryCallState

from terminald.upload.calendar import active_window, working_days_between
from terminald.upload.errors import BadAnswer, ServerBusy, Unreachable
from terminald.upload.retry import Backoff
from terminald.upstream.v1.answers import SentRecord, parse_batch, parse_cursor, parse_notices, parse_totals
from terminald.upstream.v1.client import parse_retry_after

SETTLEMENT = {"central_ref": "C1", "fund_paid_fen": 1, "account_paid_fen": 0, "cash_paid_fen": 2}
SENT = [SentRecord(1, "a", 3), SentRecord(2, "b", 3)]


def test_good_batch() -> None:
    answer = parse_batch(
        {
            "results": [
                {"seq": 1, "record_id": "a", "status": "accepted", "settlement": SETTLEMENT},
                {
                    "seq": 2,
                    "record_id": "b",
                    "status": "duplicate",
                    "outcome": "rejected",
                    "reason": {"code": "card_frozen", "message": "x"},
                },
            ],
            "last_seq": 2,
        },
        SENT,
    )
    assert [r.final for r in answer.results] == ["settled", "rejected"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "x",
        {"results": []},
        {"results": [], "last_seq": 2},
        {"results": [{"seq": 1, "record_id": "a", "status": "accepted"}] * 2, "last_seq": 2},
        {
            "results": [
                {"seq": 1, "record_id": "a", "status": "accepted", "settlement": SETTLEMENT},
                {"seq": 3, "record_id": "b", "status": "accepted", "settlement": SETTLEMENT},
            ],
            "last_seq": 3,
        },
        {
            "results": [
                {"seq": 1, "record_id": "a", "status": "weird", "settlement": SETTLEMENT},
                {"seq": 2, "record_id": "b", "status": "accepted", "settlement": SETTLEMENT},
            ],
            "last_seq": 2,
        },
        {
            "results": [
                {"seq": 1, "record_id": "a", "status": "accepted", "settlement": {"central_ref": 1}},
                {"seq": 2, "record_id": "b", "status": "accepted", "settlement": SETTLEMENT},
            ],
            "last_seq": 2,
        },
        {
            "results": [
                {"seq": 1, "record_id": "a", "status": "rejected", "settlement": SETTLEMENT},
                {"seq": 2, "record_id": "b", "status": "accepted", "settlement": SETTLEMENT},
            ],
            "last_seq": 2,
        },
        {
            "results": [
                {"seq": 1, "record_id": "a", "status": "accepted", "settlement": SETTLEMENT},
                {"seq": 2, "record_id": "b", "status": "accepted", "settlement": SETTLEMENT},
            ],
            "last_seq": 1,
        },
        {
            "results": [
                {"seq": True, "record_id": "a", "status": "accepted", "settlement": SETTLEMENT},
                {"seq": 2, "record_id": "b", "status": "accepted", "settlement": SETTLEMENT},
            ],
            "last_seq": 2,
        },
    ],
)
def test_bad_batches_are_bad_answers(body: Any) -> None:
    with pytest.raises(BadAnswer):
        parse_batch(body, SENT)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=12,
    )
)
def test_any_json_is_parsed_or_refused_as_bad_answer(body: Any) -> None:
    for parse in (lambda b: parse_batch(b, SENT), parse_cursor, parse_notices, parse_totals):
        with contextlib.suppress(BadAnswer):
            parse(body)


def test_cursor_and_notices() -> None:
    assert parse_cursor({"last_seq": 0, "last_hash": "0" * 64}).last_seq == 0
    with pytest.raises(BadAnswer):
        parse_cursor({"last_seq": 0, "last_hash": "xyz"})
    full = parse_notices(
        {
            "downtime": [{"start": "a", "end": "b", "reason": "r"}],
            "frozen_cards": {"version": 3, "card_numbers": ["A"]},
        }
    )
    assert full.frozen.full and full.frozen.card_numbers == ("A",) and full.downtime[0].reason == "r"
    delta = parse_notices({"downtime": [], "frozen_cards": {"version": 4, "added": ["B"], "removed": []}})
    assert not delta.frozen.full and delta.frozen.added == ("B",)
    with pytest.raises(BadAnswer):
        parse_notices({"downtime": [], "frozen_cards": {"version": 4}})


def test_retry_after() -> None:
    now = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Mon, 23 Nov 2026 08:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def _state(exc: BaseException, attempt: int) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def test_backoff_full_jitter_capped_and_retry_after_honoured() -> None:
    backoff = Backoff(0.5, 60.0)
    waits = [backoff(_state(Unreachable("x"), 30)) for _ in range(200)]
    assert all(0 <= w <= 60 for w in waits) and max(waits) > 30 and min(waits) < 30
    assert backoff(_state(ServerBusy(429, 12.0), 1)) == 12.0


def test_working_days() -> None:
    monday = date(2026, 11, 2)
    assert working_days_between(monday, monday) == 0
    assert working_days_between(monday, date(2026, 11, 6)) == 4
    assert working_days_between(monday, date(2026, 11, 8)) == 4  # the weekend does not count
    assert working_days_between(monday, date(2026, 11, 16)) == 10


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.integers(0, 400))
def test_working_days_match_counting_one_by_one(start: date, span: int) -> None:
    end = start + timedelta(days=span)
    slow = sum(1 for i in range(1, span + 1) if (start + timedelta(days=i)).weekday() < 5)
    assert working_days_between(start, end) == slow


def test_active_window_bounds() -> None:
    w = [
        {"start": "2026-12-01T18:00:00+08:00", "end": "2026-12-11T22:00:00+08:00", "reason": "切换"},
        {"start": "garbage", "end": "x"},
    ]
    inside = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert active_window(w, inside) is not None and active_window(w, inside)["reason"] == "切换"  # type: ignore[index]
    assert active_window(w, datetime(2026, 12, 11, 14, 0, tzinfo=UTC)) is None  # end is exclusive
    assert active_window(w, datetime(2026, 12, 1, 9, 59, tzinfo=UTC)) is None

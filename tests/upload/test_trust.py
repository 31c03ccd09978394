"""Central is trusted less: every answer is checked against what was sent, and bounded.

Pure parsing here (answers.py, notices.py); the same rules against the real
simulator are in test_trust_central.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from terminald.upload.errors import BadAnswer
from terminald.upload.notices import DowntimeNotice, FrozenCards, NoticeBook, Notices, window_problem
from terminald.upload.state import UploadState
from terminald.upstream.v1.answers import SentRecord, parse_batch, parse_cursor, parse_notices, parse_results

TZ = ZoneInfo("Asia/Shanghai")


def _accepted(settlement: dict[str, Any], seq: int = 1, record_id: str = "a") -> dict[str, Any]:
    return {"seq": seq, "record_id": record_id, "status": "accepted", "settlement": settlement}


def _split(fund: int, account: int, cash: int, ref: str = "C1") -> dict[str, Any]:
    return {"central_ref": ref, "fund_paid_fen": fund, "account_paid_fen": account, "cash_paid_fen": cash}


def _one(result: dict[str, Any], total: int) -> Any:
    return parse_batch({"results": [result], "last_seq": 1}, [SentRecord(1, "a", total)]).results[0]


def test_the_parts_must_add_up_to_the_records_total() -> None:
    assert _one(_accepted(_split(700, 100, 200)), 1000).settlement == _split(700, 100, 200)
    for wrong in (_split(700, 100, 201), _split(700, 100, 199), _split(0, 0, 0)):
        with pytest.raises(BadAnswer, match="total_fen 1000"):
            _one(_accepted(wrong), 1000)


def test_no_negative_part_in_a_sale() -> None:
    with pytest.raises(BadAnswer, match=">= 0"):
        _one(_accepted(_split(1100, -100, 0)), 1000)


def test_a_revokes_parts_are_all_negative_and_add_up_to_its_negative_total() -> None:
    """A revoke's total_fen is the negative of its original's; central answers the negative of
    the original's split, part by part (docs/upstream.md, "What is checked in an answer")."""
    assert _one(_accepted(_split(-700, -100, -200)), -1000).settlement == _split(-700, -100, -200)
    with pytest.raises(BadAnswer, match="<= 0"):
        _one(_accepted(_split(700, 100, 200)), -1000)  # the magnitude is not the total
    with pytest.raises(BadAnswer, match="total_fen -1000"):
        _one(_accepted(_split(-700, -100, -199)), -1000)
    with pytest.raises(BadAnswer, match="<= 0"):
        _one(_accepted(_split(-1100, 100, 0)), -1000)


def test_a_duplicate_is_checked_like_a_fresh_answer() -> None:
    duplicate = {"seq": 1, "record_id": "a", "status": "duplicate", "settlement": _split(1, 1, 1)}
    with pytest.raises(BadAnswer):
        _one(duplicate, 4)
    assert _one(duplicate, 3).final == "settled"


def test_only_documented_fields_are_kept() -> None:
    settlement = {**_split(7, 0, 3), "patient_phone": "13800138000", "html": "<b>"}
    result = _one({**_accepted(settlement), "debug": {"x": 1}}, 10)
    assert result.settlement == _split(7, 0, 3)
    reason = {"code": "card_frozen", "message": "卡已冻结", "sql": "select 1", "nested": {"a": 1}}
    rejected = _one({"seq": 1, "record_id": "a", "status": "rejected", "reason": reason}, 10)
    assert rejected.reason == {"code": "card_frozen", "message": "卡已冻结"}


def test_strings_are_bounded_and_cleaned() -> None:
    def rejected(reason: dict[str, Any]) -> Any:
        return _one({"seq": 1, "record_id": "a", "status": "rejected", "reason": reason}, 10).reason

    assert rejected({"code": "not_insured"}) == {"code": "not_insured", "message": ""}
    dirty = "未参保\x1b[31m\r\n第二行\x00\u202e" + "长" * 600
    message = rejected({"code": "not_insured", "message": dirty})["message"]
    assert message.startswith("未参保[31m  第二行") and len(message) == 500
    assert not any(ord(ch) < 32 or ch == "\u202e" for ch in message)
    for code in ("Card_Frozen", "", "x" * 65, "card frozen", "card_frozen\n", 7):
        with pytest.raises(BadAnswer, match="code"):
            rejected({"code": code, "message": "m"})
    for ref in ("", "R" * 65, "C1\n", 12):
        with pytest.raises(BadAnswer, match="central_ref"):
            _one(_accepted(_split(7, 0, 3, ref=ref)), 10)  # type: ignore[arg-type]
    assert _one(_accepted(_split(7, 0, 3, ref="R" * 64)), 10).settlement["central_ref"] == "R" * 64


def test_gap_results_are_checked_against_the_records_sent() -> None:
    sent = [SentRecord(1, "a", 10), SentRecord(2, "b", 20)]
    assert len(parse_results([_accepted(_split(7, 0, 3))], sent)) == 1
    with pytest.raises(BadAnswer, match="total_fen 20"):
        parse_results([_accepted(_split(7, 0, 3)), _accepted(_split(7, 0, 3), 2, "b")], sent)
    with pytest.raises(BadAnswer, match="3 results for 2"):
        parse_results([_accepted(_split(7, 0, 3))] * 3, sent)


def test_the_sent_total_is_read_from_the_wire_record() -> None:
    wire = {"seq": 4, "record_id": "r", "payload": {"total_fen": -1250}}
    assert SentRecord.of(wire) == SentRecord(4, "r", -1250)
    assert SentRecord.of({"seq": 4, "record_id": "r", "payload": {"total_fen": True}}).total_fen == 0


def test_cursor_and_notices_are_bounded() -> None:
    with pytest.raises(BadAnswer):
        parse_cursor({"last_seq": 2**63, "last_hash": "0" * 64})
    window = {"start": "2026-12-01T18:00:00+08:00", "end": "2026-12-02T06:00:00+08:00", "reason": "升级\n\x07"}
    frozen = {"version": 1, "card_numbers": ["A1"]}
    assert parse_notices({"downtime": [window], "frozen_cards": frozen}).downtime[0].reason == "升级"
    for bad in (
        {"downtime": [window] * 101, "frozen_cards": frozen},
        {"downtime": [{**window, "start": "x" * 65}], "frozen_cards": frozen},
        {"downtime": [{**window, "reason": 3}], "frozen_cards": frozen},
        {"downtime": [], "frozen_cards": {"version": 1, "card_numbers": ["A" * 33]}},
        {"downtime": [], "frozen_cards": {"version": 1, "added": ["A\n"]}},
    ):
        with pytest.raises(BadAnswer):
            parse_notices(bad)


def test_window_bounds() -> None:
    assert window_problem("2026-12-01T18:00:00+08:00", "2026-12-31T18:00:00+08:00") is None
    assert window_problem("2026-12-01T18:00:00+08:00", "2027-01-01T18:00:00+08:00") is None  # 31 days
    assert "31 days" in str(window_problem("2026-12-01T18:00:00+08:00", "2027-01-01T18:00:01+08:00"))
    assert "after it starts" in str(window_problem("2026-12-01T18:00:00+08:00", "2026-12-01T18:00:00+08:00"))
    assert "after it starts" in str(window_problem("2026-12-02T00:00:00+08:00", "2026-12-01T00:00:00+08:00"))
    assert "RFC 3339" in str(window_problem("2026-12-01 18:00", "2026-12-02T00:00:00+08:00"))


def test_notice_book_keeps_only_sound_windows_and_forgets_cleared_ones_when_they_end(tmp_path: Any) -> None:
    from spool import Spool

    Spool.open(tmp_path / "s.db", "T0001").close()
    state = UploadState(tmp_path / "s.db")
    try:
        book = NoticeBook(state, [])
        now = datetime(2026, 12, 1, 12, 0, tzinfo=TZ)

        def w(start_h: float, hours: float, reason: str = "r") -> DowntimeNotice:
            start = now + timedelta(hours=start_h)
            return DowntimeNotice(start.isoformat(), (start + timedelta(hours=hours)).isoformat(), reason)

        good, future = w(-1, 2, "good"), w(24, 2, "future")
        sent = [good, future, w(-1, -0.5), w(-1, 40 * 24), w(-5, 2, "over")]
        ignored = book.apply(Notices(sent, FrozenCards(1, True)), now)
        assert [(i.window["reason"], i.suspicious) for i in ignored] == [
            ("r", True), ("r", True), ("over", False)
        ]
        assert book.downtime_at(now) is not None and book.downtime_at(now)["reason"] == "good"  # type: ignore[index]
        assert state.notice_downtime() == [
            {"start": x.start, "end": x.end, "reason": x.reason} for x in (good, future)
        ]
        cleared = book.clear_central(now)
        assert [c["reason"] for c in cleared] == ["good"]  # the one in force, not the future one
        assert book.downtime_at(now) is None
        again = book.apply(Notices([good, future], FrozenCards(1, True)), now)
        assert [(i.window["reason"], i.why) for i in again] == [("good", "staff cleared it")]
        assert book.downtime_at(now) is None and book.downtime_at(now + timedelta(hours=24.5)) is not None
        # A restart remembers both; once the cleared window has ended, it is forgotten.
        later = now + timedelta(hours=3)
        reopened = NoticeBook(state, [])
        assert reopened.downtime_at(now) is None
        reopened.apply(Notices([future], FrozenCards(1, True)), later)
        assert state.dismissed_downtime() == []
    finally:
        state.close()

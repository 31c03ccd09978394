"""msgid: 12 + 14 + 4, in the terminal's zone, unique across threads, handles and restarts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from spool import Spool, connect
from terminald.upstream.nhsa.calllog import CallLog
from terminald.upstream.nhsa.errors import EnvelopeError, MsgidExhausted
from terminald.upstream.nhsa.msgid import (
    COUNTER_MAX,
    MSGID_LENGTH,
    format_msgid,
    inf_time,
    msgid_prefix,
    next_counter,
    parse_msgid,
    slot_range,
)
from tests.nhsa.helpers import CODE, T0, Clock

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_layout_and_local_time() -> None:
    prefix = msgid_prefix(CODE, T0, SHANGHAI)
    msgid = format_msgid(prefix, 7)
    assert msgid == "H44030500123" "20260315093012" "0007"
    assert len(msgid) == MSGID_LENGTH
    parsed = parse_msgid(msgid)
    assert (parsed.fixmedins_code, parsed.counter, parsed.prefix) == (CODE, 7, prefix)
    assert parsed.local_time == datetime(2026, 3, 15, 9, 30, 12)
    assert inf_time(msgid) == "2026-03-15 09:30:12"


def test_zone_is_the_terminals() -> None:
    assert msgid_prefix(CODE, T0, UTC).endswith("20260315013012")
    assert msgid_prefix(CODE, T0, timezone(timedelta(hours=-5))).endswith("20260314203012")


@pytest.mark.parametrize("code", ["H4403050012", "H440305001234", "H44030500 12", "", "示例44030500123"])
def test_fixmedins_code_is_twelve_letters_or_digits(code: str) -> None:
    with pytest.raises(EnvelopeError):
        msgid_prefix(code, T0, SHANGHAI)


def test_naive_times_are_refused() -> None:
    with pytest.raises(EnvelopeError, match="aware"):
        msgid_prefix(CODE, datetime(2026, 1, 1), SHANGHAI)


@pytest.mark.parametrize("msgid", [
    "H44030500123202603150930120000",  # counter 0000
    "H4403050012320260315093012001",  # 29
    "H44030500123202613150930120001",  # month 13
    "H44030500123202603150930120001x",
    12345,
])
def test_parse_refuses_what_is_not_a_msgid(msgid: object) -> None:
    with pytest.raises(EnvelopeError):
        parse_msgid(msgid)  # type: ignore[arg-type]


def test_counter_runs_out_at_9999() -> None:
    assert next_counter(None) == 1
    assert next_counter(COUNTER_MAX - 1) == COUNTER_MAX
    with pytest.raises(MsgidExhausted):
        next_counter(COUNTER_MAX)
    with pytest.raises(EnvelopeError):
        format_msgid(msgid_prefix(CODE, T0, SHANGHAI), COUNTER_MAX + 1)


# -- allocation through the call log ---------------------------------------------------------------

def _burst(logs: list[CallLog], per_thread: int) -> list[str]:
    got: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(logs))

    def work(log: CallLog) -> None:
        start.wait()
        mine = [log.begin("1101") for _ in range(per_thread)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=work, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_unique_under_concurrency_on_separate_connections(tmp_path: Path) -> None:
    clock = Clock()  # every call in the same second: the counter alone tells them apart
    logs = [CallLog(tmp_path / "spool.db", fixmedins_code=CODE, clock=clock) for _ in range(8)]
    try:
        got = _burst(logs, 25)
    finally:
        for log in logs:
            log.close()
    assert len(got) == len(set(got)) == 200
    assert sorted(parse_msgid(m).counter for m in got) == list(range(1, 201))


def test_unique_under_concurrency_through_the_spool_writer(tmp_path: Path) -> None:
    clock = Clock()
    with Spool.open(tmp_path / "spool.db", "T0001", background_check=False) as spool:
        log = CallLog(spool, fixmedins_code=CODE, clock=clock)
        try:
            got = _burst([log] * 8, 25)
        finally:
            log.close()
    assert len(set(got)) == 200
    assert sorted(parse_msgid(m).counter for m in got) == list(range(1, 201))


def test_never_reused_across_a_restart_or_a_clock_set_back(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    clock = Clock()
    with CallLog(path, fixmedins_code=CODE, clock=clock) as log:
        first = [log.begin("1101") for _ in range(3)]
        clock.advance(1)
        first.append(log.begin("1101"))
    assert [parse_msgid(m).counter for m in first] == [1, 2, 3, 1]
    # Restarted with the clock back on the first second (NTP stepped it back, or the same second).
    clock.set(T0)
    with CallLog(path, fixmedins_code=CODE, clock=clock) as log:
        again = log.begin("1101")
        clock.advance(1)
        later = log.begin("1101")
        clock.advance(1)
        fresh = log.begin("1101")
    assert parse_msgid(again).counter == 4 and parse_msgid(again).prefix == parse_msgid(first[0]).prefix
    assert parse_msgid(later).counter == 2
    assert parse_msgid(fresh).counter == 1
    assert len({*first, again, later, fresh}) == 7


def test_a_full_second_raises_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    clock = Clock()
    with CallLog(path, fixmedins_code=CODE, clock=clock) as log:
        taken = log.begin("1101")
        prefix = parse_msgid(taken).prefix
        conn = connect(path)
        conn.execute(
            "INSERT INTO nhsa_calls (msgid, msgid_prefix, msgid_counter, infno, state, sent_at)"
            " VALUES (?, ?, 9999, '1101', 'ok', 'x')", (format_msgid(prefix, 9999), prefix))
        conn.close()
        with pytest.raises(MsgidExhausted):
            log.begin("1101")
        clock.advance(1)
        assert parse_msgid(log.begin("1101")).counter == 1
        assert len(log.unfinished()) == 2


# -- msgid_slot: terminals of one institution ------------------------------------------------------

def test_a_slot_leads_the_counter() -> None:
    assert slot_range("") == (1, 9999)
    assert slot_range("07") == (701, 799)
    assert slot_range("0") == (1, 999)
    assert slot_range("123") == (1231, 1239)
    assert next_counter(None, "07") == 701 and next_counter(798, "07") == 799
    with pytest.raises(MsgidExhausted):
        next_counter(799, "07")
    for bad in ("1234", "a", " 1"):
        with pytest.raises(EnvelopeError):
            slot_range(bad)


def test_two_terminals_of_one_institution_never_share_a_msgid(tmp_path: Path) -> None:
    """Each keeps its own call log (its own spool): without slots both would send ...0001 in the
    same second."""
    clock = Clock()
    first = CallLog(tmp_path / "a.db", fixmedins_code=CODE, clock=clock, msgid_slot="01")
    second = CallLog(tmp_path / "b.db", fixmedins_code=CODE, clock=clock, msgid_slot="02")
    try:
        a = [first.begin("1101") for _ in range(5)]
        b = [second.begin("1101") for _ in range(5)]
    finally:
        first.close()
        second.close()
    assert not set(a) & set(b)
    assert [parse_msgid(m).counter for m in a] == [101, 102, 103, 104, 105]
    assert [m[-4:] for m in b] == ["0201", "0202", "0203", "0204", "0205"]


def test_a_slot_runs_out_within_its_second_and_not_before(tmp_path: Path) -> None:
    clock = Clock()
    log = CallLog(tmp_path / "spool.db", fixmedins_code=CODE, clock=clock, msgid_slot="123")
    try:
        got = [log.begin("1101") for _ in range(9)]
        with pytest.raises(MsgidExhausted):
            log.begin("1101")
        clock.advance(1)
        assert parse_msgid(log.begin("1101")).counter == 1231
    finally:
        log.close()
    assert [parse_msgid(m).counter for m in got] == list(range(1231, 1240))

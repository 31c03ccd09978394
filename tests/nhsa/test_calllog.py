"""The call log: states, the transitions allowed, queries, masking, its own migration namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from spool import Spool, connect
from terminald.upstream.nhsa.calllog import MIGRATIONS, NAMESPACE, CallLog
from terminald.upstream.nhsa.errors import CallLogError
from tests.nhsa.helpers import CODE, PSN_NO, Clock


@pytest.fixture(params=["path", "spool"])
def log(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = Clock()
    if request.param == "path":
        with CallLog(tmp_path / "spool.db", fixmedins_code=CODE, clock=clock) as made:
            yield made
    else:
        with Spool.open(tmp_path / "spool.db", "T0001", background_check=False) as spool, \
                CallLog(spool, fixmedins_code=CODE, clock=clock) as made:
            yield made


def _settle(log: CallLog, record_id: str = "r1") -> str:
    return log.begin("2102", record_id=record_id, psn_no=PSN_NO, insuplc_admdvs="440300")


def test_begin_writes_a_sent_row_with_everything_a_later_2601_needs(log: CallLog) -> None:
    msgid = _settle(log)
    call = log.get(msgid)
    assert call is not None
    assert (call.infno, call.record_id, call.psn_no, call.insuplc_admdvs, call.state) == (
        "2102", "r1", PSN_NO, "440300", "sent")
    assert call.sent_at.startswith("2026-03-15T01:30:12.250") and call.completed_at is None
    assert call.open
    assert log.unfinished() == [call]


@pytest.mark.parametrize("state", ["ok", "failed", "unknown"])
def test_complete_records_the_outcome_once(log: CallLog, state: str) -> None:
    msgid = _settle(log)
    log.complete(msgid, state, inf_refmsgid="440300202603150930120000000001", err_msg="x")  # type: ignore[arg-type]
    log.complete(msgid, state, err_msg="again")  # type: ignore[arg-type]  # the same state: no-op
    call = log.get(msgid)
    assert call is not None and call.state == state and call.err_msg == "x"
    assert call.inf_refmsgid == "440300202603150930120000000001" and call.completed_at
    other = {"ok": "failed", "failed": "unknown", "unknown": "ok"}[state]
    with pytest.raises(CallLogError, match=f"is {state}"):
        log.complete(msgid, other)  # type: ignore[arg-type]
    assert (call in log.unfinished()) == (state == "unknown")


def test_complete_refuses_other_states_and_unknown_msgids(log: CallLog) -> None:
    msgid = _settle(log)
    with pytest.raises(CallLogError):
        log.complete(msgid, "reversed")  # type: ignore[arg-type]
    with pytest.raises(CallLogError, match="no call"):
        log.complete("H44030500123202603150930129999", "ok")


def _reversal(log: CallLog, target: str, outcome: str = "ok") -> str:
    call = log.get(target)
    assert call is not None
    by = log.begin("2601", record_id=call.record_id, psn_no=call.psn_no,
                   insuplc_admdvs=call.insuplc_admdvs, omsgid=target)
    log.complete(by, outcome)  # type: ignore[arg-type]
    return by


@pytest.mark.parametrize("left", ["sent", "unknown"])
@pytest.mark.parametrize("answer", ["ok", "failed"])  # reversed, or "nothing to reverse"
def test_a_call_left_open_is_reversed_by_a_definite_2601(log: CallLog, left: str, answer: str) -> None:
    msgid = _settle(log)
    if left == "unknown":
        log.complete(msgid, "unknown", err_msg="timeout")
    by = _reversal(log, msgid, answer)
    log.mark_reversed(msgid, by=by)
    log.mark_reversed(msgid, by=by)  # again: no-op
    call = log.get(msgid)
    assert call is not None and call.state == "reversed" and call.reversed_by == by and call.reversed_at
    assert log.unfinished() == []
    assert [c.infno for c in log.for_record("r1")] == ["2102", "2601"]
    assert log.get(by).omsgid == msgid  # type: ignore[union-attr]


def test_reversal_needs_a_definite_2601_of_that_call(log: CallLog) -> None:
    msgid = _settle(log)
    other = _settle(log, "r2")
    with pytest.raises(CallLogError, match="not a 2601"):
        log.mark_reversed(msgid, by=other)
    wrong = _reversal(log, other)
    with pytest.raises(CallLogError, match="not a 2601 of"):
        log.mark_reversed(msgid, by=wrong)
    pending = log.begin("2601", record_id="r1", psn_no=PSN_NO, insuplc_admdvs="440300", omsgid=msgid)
    with pytest.raises(CallLogError, match="no definite answer"):
        log.mark_reversed(msgid, by=pending)
    log.complete(pending, "unknown")
    with pytest.raises(CallLogError, match="no definite answer"):
        log.mark_reversed(msgid, by=pending)
    assert log.get(msgid).state == "sent"  # type: ignore[union-attr]


@pytest.mark.parametrize("state", ["ok", "failed"])
def test_definite_calls_are_never_reversed(log: CallLog, state: str) -> None:
    msgid = _settle(log)
    log.complete(msgid, state)  # type: ignore[arg-type]
    by = _reversal(log, msgid)
    with pytest.raises(CallLogError, match=f"is {state}"):
        log.mark_reversed(msgid, by=by)


def test_unfinished_filters_by_transaction_oldest_first(log: CallLog) -> None:
    person = log.begin("1101")
    first = _settle(log, "r1")
    revoke = log.begin("2103", record_id="r0", psn_no=PSN_NO, insuplc_admdvs="440300")
    done = _settle(log, "r3")
    log.complete(done, "ok")
    log.complete(revoke, "unknown")
    assert [c.msgid for c in log.unfinished()] == [person, first, revoke]
    assert [c.msgid for c in log.unfinished({"2102", "2103"})] == [first, revoke]
    assert log.unfinished(()) == []
    assert [c.msgid for c in log.for_record("r3")] == [done]
    assert log.for_record("nothing") == [] and log.get("nothing") is None


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"infno": "21O2"}, "4 digits"),
    ({"infno": "2102", "insuplc_admdvs": "4403"}, "6 digits"),
    ({"infno": "2601"}, "omsgid"),
    ({"infno": "2102", "omsgid": "x"}, "omsgid"),
    ({"infno": "2102", "psn_no": "9" * 65}, "too long"),
])
def test_begin_refuses_bad_rows(log: CallLog, kwargs: dict[str, str], match: str) -> None:
    rest = dict(kwargs)
    infno = rest.pop("infno")
    with pytest.raises(CallLogError, match=match):
        log.begin(infno, **rest)
    assert log.unfinished() == []


def test_messages_are_masked_before_they_are_stored(log: CallLog) -> None:
    msgid = _settle(log)
    log.complete(msgid, "failed", err_msg="张三丰(身份证号110101199003071234,卡号A12345678)已冻结",
                 redact=("张三丰",))
    stored = log.get(msgid).err_msg  # type: ignore[union-attr]
    assert "110101199003071234" not in stored and "A12345678" not in stored and "张三丰" not in stored
    assert "110101********1234" in stored and "张*丰" in stored and "已冻结" in stored


def test_own_namespace_and_idempotent_migration(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, "T0001", background_check=False):
        pass
    for _ in range(2):
        CallLog(path, fixmedins_code=CODE).close()
    conn = connect(path)
    try:
        rows = conn.execute("SELECT namespace, COUNT(*) FROM schema_migrations GROUP BY namespace").fetchall()
    finally:
        conn.close()
    counts = dict(rows)
    assert counts[NAMESPACE] == len(MIGRATIONS)
    assert counts["spool"] >= 1  # the spool's own steps are untouched, beside ours


def test_closed_log_refuses(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "spool.db", fixmedins_code=CODE)
    log.close()
    log.close()
    with pytest.raises(CallLogError, match="closed"):
        log.begin("1101")

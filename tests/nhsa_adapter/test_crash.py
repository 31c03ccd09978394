"""Crash windows: what a kill -9 leaves in the call log, and what the next run makes of it.

A crash is simulated by an exception no handler catches (`Crash`, a BaseException) at the
moment in question, then a new adapter on the same spool (the restart)."""

from __future__ import annotations

from typing import Any

import pytest

from terminald.upload.results import RecordResult
from terminald.upstream.nhsa.calllog import CallLog
from tests.nhsa_adapter.helpers import CODE, Bench, Tap, age_calls, card_of, drain, revoke, run, sale


class Crash(BaseException):
    """kill -9: nothing after this point runs."""


def _crash_after(infno: str) -> Tap:
    """The request reaches the platform (and commits); the process dies before the answer."""
    crashed: list[str] = []

    def after(envelope: dict[str, Any]) -> None:
        if envelope["infno"] == infno and not crashed:
            crashed.append(envelope["msgid"])
            raise Crash

    return Tap(after=after)


def _crashed_run(bench: Bench, infno: str) -> None:
    """A run that dies right after its first `infno` reached the platform (`_crash_after`)."""

    async def first_run() -> None:
        adapter = bench.adapter(_crash_after(infno))
        with pytest.raises(Crash):
            await adapter.upload()
        await adapter.aclose()

    run(first_run)


def test_a_2102_left_sent_by_a_crash_is_reversed_at_restart(bench: Bench) -> None:
    record = sale(bench.spool, card_of(bench.sim.person("A10000123")))

    async def restart() -> None:
        async with bench.opened() as adapter:
            await adapter.sync()  # the 2102 left `sent` is reversed here, before anything else
            assert [c["infcode"] for c in bench.sim.calls("2601")] == [0]
            assert await drain(adapter) == 1

    _crashed_run(bench, "2102")
    assert bench.call_states(record.record_id) == [("1101", "ok"), ("2102", "sent")]
    assert len(bench.sim.standing_settlements()) == 1  # it did settle: the answer was lost
    age_calls(bench.spool, 2.0)  # the restart comes after the mock profile's reversal_delay_s (1 s)
    run(restart)
    assert bench.record(record).status == "settled"
    assert bench.call_states(record.record_id) == [("1101", "ok"), ("2102", "reversed"), ("2601", "ok"),
                                                   ("1101", "ok"), ("2102", "ok")]
    bench.check_money()


def test_a_restart_within_the_reversal_delay_does_not_send_the_2601_early(bench: Bench) -> None:
    """The gateway may still be at work on a 2102 the crash left `sent`: a restart right away
    must not reverse it before reversal_delay_s has passed since its sent_at (a 2601 that
    overtakes it answers "nothing to reverse", and the 2102 commits after all)."""
    zhang, zhao = bench.sim.person("A10000123"), bench.sim.person("D40000321")
    record = sale(bench.spool, card_of(zhang))

    async def restart() -> None:
        import time

        async with bench.opened() as adapter:
            started = time.monotonic()
            await adapter.sync()
            assert bench.sim.calls("2601") == []  # not yet: the 2102 left sent is too young
            # Zhao's sale goes on meanwhile; zhang's round waits for the delay, then reverses.
            assert await drain(adapter) == 2
            assert time.monotonic() - started >= 0.5

    _crashed_run(bench, "2102")
    with CallLog(bench.spool, fixmedins_code=CODE) as log:
        [open_call] = log.unfinished({"2102"})
    other = sale(bench.spool, card_of(zhao))  # taken after the restart
    run(restart)
    [reversal] = bench.sim.calls("2601")
    assert reversal["request"]["input"]["data"]["omsgid"] == open_call.msgid and reversal["infcode"] == 0
    zhaos = min(c["id"] for c in bench.sim.calls("2102") if c["psn_no"] == zhao.psn_no)
    assert zhaos < reversal["id"]  # zhao did not wait for zhang's delay
    assert [bench.record(r).status for r in (record, other)] == ["settled", "settled"]
    bench.check_money()


def test_a_row_written_but_never_sent_is_reversed_as_nothing(bench: Bench) -> None:
    """kill -9 right after the call log's row was committed, before the request left."""
    zhang = bench.sim.person("A10000123")
    record = sale(bench.spool, card_of(zhang))
    with CallLog(bench.spool, fixmedins_code=CODE) as log:
        log.begin("2102", record_id=record.record_id, psn_no=zhang.psn_no, insuplc_admdvs=zhang.insuplc_admdvs)

    # The restart. No sync: the record's own open call is found before any money call for it.
    assert bench.drain() == 1
    [reversal] = bench.sim.calls("2601")
    assert reversal["infcode"] == -1 and "无需冲正" in reversal["err_msg"]
    assert [s for _, s in bench.call_states(record.record_id)] == ["reversed", "failed", "ok", "ok"]
    bench.check_money()


@pytest.mark.parametrize("kind", ["settlement", "revoke"])
def test_an_ok_answer_not_yet_applied_is_applied_from_the_call_log(bench: Bench, kind: str) -> None:
    """kill -9 between "ok" in the call log and the outcome in the spool: no second call."""
    original = sale(bench.spool, card_of(bench.sim.person("A10000123")))
    money = "2102" if kind == "settlement" else "2103"

    def crash_once(result: RecordResult) -> None:
        bench.host.fail_apply = None
        raise Crash

    async def first_run() -> Any:
        async with bench.opened() as adapter:
            if kind == "revoke":
                await drain(adapter)
                target = revoke(bench.spool, bench.record(original))
            else:
                target = original
            bench.host.fail_apply = crash_once
            with pytest.raises(Crash):
                await adapter.upload()
            return target

    async def restart() -> None:
        adapter = bench.adapter()
        bench.sim.control(down=True)  # the stored answer needs no call at all
        try:
            assert await adapter.upload() == 1
        finally:
            await adapter.aclose()
            bench.sim.control(down=False)

    target = run(first_run)
    assert bench.record(target).status == "pending" and bench.call_states(target.record_id)[-1] == (money, "ok")
    run(restart)
    done = bench.record(target)
    assert done.status == "settled"
    assert len(bench.sim.calls(money)) == 1
    held = bench.sim.standing_settlements() if kind == "settlement" else bench.sim.standing_revokes()
    assert [h["setl_id"] for h in held] == [(done.outcome or {})["central_ref"]]
    if kind == "revoke":
        before = bench.record(original).outcome or {}
        assert (done.outcome or {})["fund_paid_fen"] == -before["fund_paid_fen"]
    bench.check_money()


def test_a_2103_left_sent_is_reversed_and_the_revoke_stands_once(bench: Bench) -> None:
    original = sale(bench.spool, card_of(bench.sim.person("A10000123")))

    async def first_run() -> Any:
        async with bench.opened(_crash_after("2103")) as adapter:
            await drain(adapter)
            later = revoke(bench.spool, bench.record(original))
            with pytest.raises(Crash):
                await adapter.upload()
            return later

    later = run(first_run)
    assert bench.drain(sync=True) == 1  # the restart
    assert bench.record(later).status == "settled"
    assert len(bench.sim.calls("2103")) == 2 and len(bench.sim.standing_revokes()) == 1
    bench.check_money()

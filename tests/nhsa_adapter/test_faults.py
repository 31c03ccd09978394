"""Every fault of the platform: after recovery each sale stands exactly once (sim money check)."""

from __future__ import annotations

import pytest

from terminald.upload.errors import Transient, Unreachable
from tests.nhsa_adapter.helpers import Bench, card_of, drain, run, sale


@pytest.mark.parametrize(("fault", "committed"), [
    ("drop_after_commit", True),   # committed, then the connection reset instead of the answer
    ("gateway_timeout", True),     # committed, then -1 "…超时，交易结果未知"
    ("garbage", True),             # committed, then a body that is not the envelope
    ("error", False),              # HTTP 503, nothing done
    ("reset", False),              # reset before handling, nothing done
])
def test_an_unknown_2102_is_reversed_then_sent_again_with_a_new_msgid(bench: Bench, fault: str,
                                                                      committed: bool) -> None:
    record = sale(bench.spool, card_of(bench.sim.person("A10000123")))
    bench.sim.control(fault_infnos=["2102"], next={fault: 1})

    assert bench.drain(sync=True) == 1
    assert bench.record(record).status == "settled"
    first, second = bench.sim.calls("2102")
    assert first["fault"] == [fault] and first["msgid"] != second["msgid"]
    [reversal] = bench.sim.calls("2601")
    assert reversal["request"]["input"]["data"]["omsgid"] == first["msgid"]
    assert reversal["infcode"] == (0 if committed else -1)
    answered = "ok" if committed else "failed"
    # The gateway may have been at work on it still: the 2601 waited for reversal_delay_s, and
    # the record then started over (1101 again).
    assert bench.call_states(record.record_id) == [("1101", "ok"), ("2102", "reversed"), ("2601", answered),
                                                   ("1101", "ok"), ("2102", "ok")]
    [held] = bench.sim.standing_settlements()
    assert held["msgid"] == second["msgid"]
    bench.check_money()


def test_a_busy_platform_backs_off_and_the_sale_settles_later(bench: Bench) -> None:
    record = sale(bench.spool, card_of(bench.sim.person("A10000123")))
    bench.sim.control(fault_infnos=["2102"], next={"busy": 1})

    async def go() -> None:
        async with bench.opened() as adapter:
            with pytest.raises(Transient):
                await adapter.upload()
            assert bench.record(record).status == "pending"
            assert await drain(adapter) == 1

    run(go)
    assert bench.record(record).status == "settled"
    assert bench.sim.calls("2601") == []  # a -1 is definite: nothing to reverse
    bench.check_money()


def test_an_expired_sign_in_signs_in_again_and_calls_again(bench: Bench) -> None:
    first = sale(bench.spool, card_of(bench.sim.person("A10000123")))

    async def go() -> None:
        async with bench.opened() as adapter:
            await adapter.sync()
            assert await drain(adapter) == 1
            bench.sim.control(sign_in_expiry=True)
            sale(bench.spool, card_of(bench.sim.person("D40000321")))
            assert await drain(adapter) == 1

    run(go)
    assert bench.record(first).status == "settled"
    assert len(bench.sim.calls("9001")) == 2
    assert [c["infno"] for c in bench.sim.calls()][-4:] == ["1101", "9001", "1101", "2102"]
    bench.check_money()


def test_an_unreachable_platform_is_transient_and_nothing_is_decided(bench: Bench) -> None:
    record = sale(bench.spool, card_of(bench.sim.person("A10000123")))
    bench.sim.control(down=True)

    async def go() -> None:
        async with bench.opened() as adapter:
            with pytest.raises(Unreachable):
                await adapter.probe()
            with pytest.raises(Transient):
                await adapter.upload()
            bench.sim.control(down=False)
            await adapter.probe()
            await adapter.sync()
            assert await drain(adapter) == 1

    run(go)
    assert bench.record(record).status == "settled"
    bench.check_money()


def test_a_dropped_2103_is_reversed_and_revoked_once(bench: Bench) -> None:
    from tests.nhsa_adapter.helpers import revoke

    original = sale(bench.spool, card_of(bench.sim.person("A10000123")))

    async def go() -> None:
        async with bench.opened() as adapter:
            await drain(adapter)
            later = revoke(bench.spool, bench.record(original))
            bench.sim.control(fault_infnos=["2103"], next={"drop_after_commit": 1})
            assert await drain(adapter) == 1
            assert bench.record(later).status == "settled"

    run(go)
    assert len(bench.sim.calls("2103")) == 2 and len(bench.sim.standing_revokes()) == 1
    bench.check_money()


def test_a_split_that_does_not_add_up_is_not_trusted(bench: Bench) -> None:
    """A 2102 answered 0 whose parts are not the sale's total: reversed and sent again."""
    import json

    from tests.nhsa_adapter.helpers import Tap

    record = sale(bench.spool, card_of(bench.sim.person("A10000123")))
    tampered: list[str] = []

    def on_answer(envelope: dict, body: bytes) -> bytes:
        if envelope["infno"] != "2102" or tampered:
            return body
        answer = json.loads(body)
        answer["output"]["setlinfo"]["psn_cash_pay"] = 1.00
        tampered.append(envelope["msgid"])
        return json.dumps(answer).encode()

    assert bench.drain(Tap(on_answer)) == 1
    assert bench.record(record).status == "settled"
    [reversal] = bench.sim.calls("2601")
    assert reversal["request"]["input"]["data"]["omsgid"] == tampered[0] and reversal["infcode"] == 0
    bench.check_money()


def test_a_client_timeout_after_the_platform_settled_is_reversed(bench: Bench) -> None:
    import httpx

    from tests.nhsa_adapter.helpers import Tap

    record = sale(bench.spool, card_of(bench.sim.person("A10000123")))
    timed_out: list[str] = []

    def after(envelope: dict) -> None:
        if envelope["infno"] == "2102" and not timed_out:
            timed_out.append(envelope["msgid"])
            raise httpx.ReadTimeout("no answer within the client's timeout")

    assert bench.drain(Tap(after=after)) == 1
    assert bench.record(record).status == "settled"
    [reversal] = bench.sim.calls("2601")
    assert reversal["request"]["input"]["data"]["omsgid"] == timed_out[0] and reversal["infcode"] == 0
    assert bench.call_states(record.record_id)[1] == ("2102", "reversed")
    bench.check_money()

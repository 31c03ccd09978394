"""2103 (revoke) and 2601 (reversal): what stands after every path, and the money check."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.settings import (
    MSG_ALREADY_REVERSED,
    MSG_ALREADY_REVOKED,
    MSG_NOTHING_TO_REVERSE,
    MSG_SETTLEMENT_NOT_FOUND,
    MSG_SETTLEMENT_REVERSED,
)
from tests.sim_nhsa.helpers import Caller, new_msgid, sale_data

LINES = [("2", "12.50"), ("1", "33.33")]
WHEN = "2026-11-23 10:15:00"
# A connection reset reaches httpx as one of these, depending on when the RST arrives.
LOST = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError)


@pytest.fixture
def caller(nhsa_sim: NhsaSim) -> Iterator[Caller]:
    c = Caller(nhsa_sim)
    c.sign_in()
    yield c
    c.close()


def _lost_settlement(nhsa_sim: NhsaSim, caller: Caller, sale_id: str, infno: str = "2102") -> str:
    """Send a 2102 whose answer the platform drops after committing; returns its msgid."""
    person = nhsa_sim.person("A10000123")
    nhsa_sim.control(next={"drop_after_commit": 1}, fault_infnos=[infno])
    env = caller.envelope("2102", sale_data(person, LINES, sale_id=sale_id, business_time=WHEN),
                          insuplc=person.insuplc_admdvs)
    with pytest.raises(LOST):
        caller.send(env)
    nhsa_sim.control(fault_infnos=[])
    return str(env["msgid"])


def test_a_revoke_cancels_its_settlement_once(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    setlinfo = caller.settle(person, LINES, sale_id="S1")[1]["output"]["setlinfo"]
    assert nhsa_sim.balance_fen("A10000123") == 50000 - 1167
    _, answer = caller.revoke(person, setlinfo)
    assert answer["infcode"] == 0, answer
    revoked = answer["output"]["setlinfo"]
    assert revoked["setl_id"] != setlinfo["setl_id"] and revoked["mdtrt_id"] == setlinfo["mdtrt_id"]
    assert [str(revoked[k]) for k in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay", "balc")] == [
        "-58.33", "-40.83", "-11.67", "-5.83", "500.00"]
    assert nhsa_sim.balance_fen("A10000123") == 50000
    [settlement], [revoke] = nhsa_sim.standing_settlements(), nhsa_sim.standing_revokes()
    assert settlement["revoked_by"] == revoke["setl_id"] and revoke["original_setl_id"] == setlinfo["setl_id"]
    assert nhsa_sim.standing_settlements(include_revoked=False) == []
    _, again = caller.revoke(person, setlinfo)
    assert (again["infcode"], again["err_msg"]) == (-1, MSG_ALREADY_REVOKED)
    _, unknown = caller.revoke(person, {**setlinfo, "setl_id": "309999999999"})
    assert unknown["err_msg"] == MSG_SETTLEMENT_NOT_FOUND
    _, wrong = caller.revoke(person, {**setlinfo, "mdtrt_id": "319999999999"})
    assert "就诊ID" in wrong["err_msg"]
    nhsa_sim.assert_money_consistent({"S1": {"revoked": True}})


def test_a_dropped_settlement_is_reversed_then_retried(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    msgid = _lost_settlement(nhsa_sim, caller, "S1")
    # Committed although the caller never heard: exactly the unknown outcome 2601 exists for.
    [settlement] = nhsa_sim.standing_settlements()
    assert settlement["msgid"] == msgid and nhsa_sim.calls("2102")[0]["fault"] == ["drop_after_commit"]
    assert nhsa_sim.balance_fen("A10000123") == 50000 - 1167
    reversal = caller.reverse(person, msgid)
    assert (reversal["infcode"], reversal["err_msg"]) == (0, ""), reversal
    assert nhsa_sim.standing_settlements() == [] and nhsa_sim.balance_fen("A10000123") == 50000
    [reversed_settlement] = nhsa_sim.settlements()
    assert reversed_settlement["status"] == "reversed"
    assert nhsa_sim.calls("2102")[0]["reversed_by"] == nhsa_sim.calls("2601")[0]["msgid"]
    # A second reversal of the same msgid is definite too: already reversed.
    again = caller.reverse(person, msgid)
    assert (again["infcode"], again["err_msg"]) == (-1, MSG_ALREADY_REVERSED)
    # The retry with a new msgid settles the sale once.
    assert caller.settle(person, LINES, sale_id="S1")[1]["infcode"] == 0
    nhsa_sim.assert_money_consistent({"S1": {"business_time": WHEN, "medfee_fen": 5833, "revoked": False}})


def test_a_dropped_reversal_answers_already_reversed_next_time(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    msgid = _lost_settlement(nhsa_sim, caller, "S1")
    nhsa_sim.control(next={"drop_after_commit": 1}, fault_infnos=["2601"])
    with pytest.raises(LOST):
        caller.reverse(person, msgid)
    assert nhsa_sim.standing_settlements() == []
    assert caller.reverse(person, msgid)["err_msg"] == MSG_ALREADY_REVERSED


def test_nothing_to_reverse_when_the_call_committed_nothing(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    # Never arrived.
    assert caller.reverse(person, new_msgid())["err_msg"] == MSG_NOTHING_TO_REVERSE
    # Reset before the platform handled it, answered 5xx, busy, or refused.
    omsgids = []
    for fault in ("reset", "error", "busy"):
        nhsa_sim.control(next={fault: 1}, fault_infnos=["2102"])
        env = caller.envelope("2102", sale_data(person, LINES, sale_id=f"S-{fault}", business_time=WHEN),
                              insuplc=person.insuplc_admdvs)
        with contextlib.suppress(*LOST):
            caller.send(env)
        omsgids.append(env["msgid"])
    nhsa_sim.control(fault_infnos=[], frozen=["A10000123"])
    omsgids.append(caller.settle(person, LINES, sale_id="S-frozen")[0]["msgid"])
    nhsa_sim.control(frozen=[])
    for omsgid in omsgids:
        answer = caller.reverse(person, omsgid)
        assert (answer["infcode"], answer["err_msg"]) == (-1, MSG_NOTHING_TO_REVERSE), omsgid
    assert nhsa_sim.settlements() == []


def test_a_dropped_revoke_is_reversed(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    setlinfo = caller.settle(person, LINES, sale_id="S1")[1]["output"]["setlinfo"]
    nhsa_sim.control(next={"drop_after_commit": 1}, fault_infnos=["2103"])
    env = caller.envelope("2103", {"setl_id": setlinfo["setl_id"], "mdtrt_id": setlinfo["mdtrt_id"],
                                   "psn_no": person.psn_no}, insuplc=person.insuplc_admdvs)
    with pytest.raises(LOST):
        caller.send(env)
    assert len(nhsa_sim.standing_revokes()) == 1
    # The settlement cannot be reversed under a standing revoke: reverse the revoke first.
    settle_msgid = nhsa_sim.standing_settlements()[0]["msgid"]
    assert "先冲正撤销" in caller.reverse(person, settle_msgid)["err_msg"]
    assert caller.reverse(person, env["msgid"], "2103")["infcode"] == 0
    assert nhsa_sim.standing_revokes() == [] and nhsa_sim.standing_settlements()[0]["revoked_by"] is None
    assert nhsa_sim.balance_fen("A10000123") == 50000 - 1167
    # The retried revoke stands once.
    assert caller.revoke(person, setlinfo)[1]["infcode"] == 0
    nhsa_sim.assert_money_consistent({"S1": {"revoked": True}})


def test_reversal_refusals(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person, other = nhsa_sim.person("A10000123"), nhsa_sim.person("C30000789")
    env, answer = caller.settle(person, LINES, sale_id="S1")
    assert "oinfno" in caller.reverse(person, env["msgid"], "2103")["err_msg"]
    assert "不支持冲正" in caller.reverse(person, env["msgid"], "1101")["err_msg"]
    assert "人员编号" in caller.reverse(other, env["msgid"])["err_msg"]
    assert caller.reverse(person, env["msgid"])["infcode"] == 0
    # A reversed settlement cannot be revoked.
    assert caller.revoke(person, answer["output"]["setlinfo"])[1]["err_msg"] == MSG_SETTLEMENT_REVERSED
    # Another institution cannot reverse our calls.
    stranger = Caller(nhsa_sim, fixmedins_code="P11010500009")
    stranger.sign_in()
    assert stranger.reverse(person, env["msgid"])["err_msg"] == MSG_NOTHING_TO_REVERSE
    stranger.close()


def test_2101_is_reversible_where_the_region_says_so_but_never_commits(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    env, _ = caller.settle(person, LINES, sale_id="S1", infno="2101")
    assert "不支持冲正" in caller.reverse(person, env["msgid"], "2101")["err_msg"]
    nhsa_sim.control(reversible_infnos=["2101", "2102", "2103"])
    assert caller.reverse(person, env["msgid"], "2101")["err_msg"] == MSG_NOTHING_TO_REVERSE


def test_the_money_check_sees_a_sale_settled_twice(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    _lost_settlement(nhsa_sim, caller, "S1")
    # A caller that retries without reversing first: the platform has no idempotency key.
    assert caller.settle(person, LINES, sale_id="S1")[1]["infcode"] == 0
    problems = nhsa_sim.money_problems()
    assert any("sale 'S1' stands 2 times" in p for p in problems)
    assert any("feedetl_sn 'S1.2' stands in 2 settlements" in p for p in problems)
    with pytest.raises(AssertionError, match="stands 2 times"):
        nhsa_sim.assert_money_consistent()
    check = httpx.get(nhsa_sim.url + "/_control/check", timeout=10).json()
    assert check["problems"] == problems


def test_the_money_check_sees_unexpected_sales(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    caller.settle(person, LINES, sale_id="S1")
    caller.settle(person, LINES, sale_id="S2")
    nhsa_sim.assert_money_consistent()
    with pytest.raises(AssertionError, match="'S2' stands but was not expected"):
        nhsa_sim.assert_money_consistent({"S1": {}})


def test_a_custom_sale_key(tmp_path: Path) -> None:
    sim = NhsaSim(tmp_path / "n.db", sale_key=lambda data: str(data["medfee_sumamt"]))
    sim.start()
    try:
        caller = Caller(sim)
        caller.sign_in()
        caller.settle(sim.person("A10000123"), LINES, sale_id="S1")
        assert sim.standing_settlements()[0]["sale_id"] == "58.33"
        caller.close()
    finally:
        sim.stop()

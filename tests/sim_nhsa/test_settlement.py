"""2101 and 2102: the deterministic split, exact to the fen, the business time as sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.settings import split
from tests.sim_nhsa.helpers import Caller, decimal_json, sale_data

LINES = [("2", "12.50"), ("1", "33.33")]  # 58.33 yuan


@pytest.fixture
def caller(nhsa_sim: NhsaSim) -> Iterator[Caller]:
    c = Caller(nhsa_sim)
    c.sign_in()
    yield c
    c.close()


def _parts(setlinfo: dict[str, Any]) -> tuple[Decimal, ...]:
    return tuple(setlinfo[k] for k in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay", "balc"))


def test_the_split_is_exact_and_the_same_on_another_platform(tmp_path: Path) -> None:
    answers = []
    for name in ("one", "two"):
        sim = NhsaSim(tmp_path / f"{name}.db")
        sim.start()
        try:
            caller = Caller(sim)
            caller.sign_in()
            _, answer = caller.settle(sim.person("A10000123"), LINES, sale_id="S1")
            caller.close()
        finally:
            sim.stop()
        assert answer["infcode"] == 0, answer
        answers.append(answer["output"]["setlinfo"])
    # 70 % of 58.33 = 40.831 -> 40.83; 20 % = 11.666 -> 11.67 (balance 500.00); cash the rest.
    expected = tuple(Decimal(x) for x in ("58.33", "40.83", "11.67", "5.83", "488.33"))
    assert _parts(answers[0]) == _parts(answers[1]) == expected
    assert all(isinstance(v, Decimal) for v in _parts(answers[0]))
    assert answers[0]["setl_id"] == answers[1]["setl_id"] and len(answers[0]["setl_id"]) == 12
    assert answers[0]["psn_part_amt"] == Decimal("17.50")


def test_amounts_on_the_wire_are_two_decimal_numbers_or_strings(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    env = caller.envelope("2102", sale_data(person, [("1", "10.00")], sale_id="N1",
                                            business_time="2026-11-23 10:15:00"), insuplc=person.insuplc_admdvs)
    # The caller may send numbers too (here written by hand: no float ever touches them).
    text = json.dumps(env).replace('"det_item_fee_sumamt": "10.00"', '"det_item_fee_sumamt": 10.00')
    text = text.replace('"medfee_sumamt": "10.00"', '"medfee_sumamt": 10')
    text = text.replace('"cnt": "1"', '"cnt": 1.000')  # trailing zeros are exact
    raw = caller.http.post("/", content=text.encode()).content
    assert b'"medfee_sumamt":10.00,' in raw and b'"acct_pay":2.00,' in raw and b'"balc":498.00' in raw
    nhsa_sim.control(amounts_as="string")
    _, answer = caller.settle(person, [("1", "10.00")], sale_id="N2")
    assert answer["output"]["setlinfo"]["medfee_sumamt"] == "10.00"
    assert answer["output"]["setlinfo"]["balc"] == "496.00"


@pytest.mark.parametrize(("field", "value", "says"), [
    ("medfee_sumamt", "58.333", "medfee_sumamt"),
    ("medfee_sumamt", "5.833e1", "medfee_sumamt"),
    ("medfee_sumamt", "58.34", "费用明细合计"),
    ("medfee_sumamt", "-58.33", "medfee_sumamt"),
    ("medfee_sumamt", "0", "大于0"),
    ("acct_used_flag", "2", "acct_used_flag"),
    ("insutype", "390", "险种类型"),
    ("mdtrt_cert_no", "B20000456", "就诊凭证"),
    ("begntime", "2026-11-23", "begntime"),
    ("drugdetail", [], "drugdetail"),
    ("psn_no", "11010000000000000000000000", "人员编号"),
])
def test_a_settlement_that_does_not_add_up_is_refused(nhsa_sim: NhsaSim, caller: Caller, field: str, value: Any,
                                                       says: str) -> None:
    person = nhsa_sim.person("A10000123")
    data = sale_data(person, LINES, sale_id="S1", business_time="2026-11-23 10:15:00")
    data[field] = value
    _, answer = caller.call("2102", data, insuplc=person.insuplc_admdvs)
    assert answer["infcode"] == -1 and says in answer["err_msg"], answer
    assert nhsa_sim.settlements() == []


@pytest.mark.parametrize(("change", "says"), [
    ({"det_item_fee_sumamt": "25.01"}, "数量×单价"),
    ({"det_item_fee_sumamt": 25.001}, "两位小数"),
    ({"cnt": "0"}, "数量"),
    ({"sel_retn_time": "2026/11/23 10:15:00"}, "sel_retn_time"),
    ({"feedetl_sn": "S1.2"}, "重复"),
    ({"sel_retn_flag": "2"}, "sel_retn_flag"),
])
def test_every_line_is_checked(nhsa_sim: NhsaSim, caller: Caller, change: dict[str, Any], says: str) -> None:
    person = nhsa_sim.person("A10000123")
    data = sale_data(person, LINES, sale_id="S1", business_time="2026-11-23 10:15:00")
    data["drugdetail"][0].update(change)
    env = caller.envelope("2102", data, insuplc=person.insuplc_admdvs)
    text = json.dumps(env, default=str).replace('"25.001"', "25.001")
    answer = decimal_json(caller.http.post("/", content=text.encode()))
    assert answer["infcode"] == -1 and says in answer["err_msg"], answer


def test_the_insured_area_must_be_in_the_envelope(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    data = sale_data(person, LINES, sale_id="S1", business_time="2026-11-23 10:15:00")
    _, answer = caller.call("2102", data, insuplc="")
    assert answer["infcode"] == -1 and "insuplc_admdvs" in answer["err_msg"]


def test_2101_quotes_and_commits_nothing(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    _, quote = caller.settle(person, LINES, sale_id="S1", infno="2101")
    _, again = caller.settle(person, LINES, sale_id="S1", infno="2101")
    assert quote["infcode"] == 0 and quote["output"]["setlinfo"]["setl_id"] == ""
    assert _parts(quote["output"]["setlinfo"]) == _parts(again["output"]["setlinfo"])
    assert nhsa_sim.settlements() == [] and nhsa_sim.balance_fen("A10000123") == 50000
    assert [c["committed"] for c in nhsa_sim.calls("2101")] == [False, False]
    _, settled = caller.settle(person, LINES, sale_id="S1")
    assert _parts(settled["output"]["setlinfo"]) == _parts(quote["output"]["setlinfo"])


def test_the_business_time_is_kept_as_sent(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    caller.settle(person, LINES, sale_id="S1", business_time="2025-12-31 23:59:58")
    [settlement] = nhsa_sim.standing_settlements()
    assert settlement["begntime"] == "2025-12-31 23:59:58"
    assert [d["sel_retn_time"] for d in settlement["details"]] == ["2025-12-31 23:59:58"] * 2
    assert [d["feedetl_sn"] for d in settlement["details"]] == ["S1", "S1.2"] and settlement["sale_id"] == "S1"
    nhsa_sim.assert_money_consistent({"S1": {"business_time": "2025-12-31 23:59:58", "medfee_fen": 5833}})
    with pytest.raises(AssertionError, match="begntime/sel_retn_time"):
        nhsa_sim.assert_money_consistent({"S1": {"business_time": "2026-01-01 00:00:01"}})
    with pytest.raises(AssertionError, match="medfee 5833 fen, expected 5834"):
        nhsa_sim.assert_money_consistent({"S1": {"medfee_fen": 5834}})
    with pytest.raises(AssertionError, match="'S2' stands 0 times"):
        nhsa_sim.assert_money_consistent({"S1": {}, "S2": {}})


def test_the_account_pays_up_to_its_balance(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    nhsa_sim.control(balance_fen={"A10000123": 500})
    first = caller.settle(person, [("1", "100.00")], sale_id="S1")[1]["output"]["setlinfo"]
    assert _parts(first) == tuple(Decimal(x) for x in ("100.00", "70.00", "5.00", "25.00", "0.00"))
    second = caller.settle(person, [("1", "100.00")], sale_id="S2")[1]["output"]["setlinfo"]
    assert (second["acct_pay"], second["psn_cash_pay"]) == (Decimal("0.00"), Decimal("30.00"))
    nhsa_sim.control(balance_fen={"A10000123": 100000})
    no_account = caller.settle(person, [("1", "100.00")], sale_id="S3", acct_used_flag="0")[1]
    assert no_account["output"]["setlinfo"]["acct_pay"] == Decimal("0.00")
    assert nhsa_sim.balance_fen("A10000123") == 100000
    assert caller.person_info(person)["output"]["insuinfo"][0]["balc"] == Decimal("1000.00")


def test_a_resident_has_no_account(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("B20000456")
    assert person.insutype == "390"
    setlinfo = caller.settle(person, [("3", "3.33")], sale_id="R1")[1]["output"]["setlinfo"]
    # 50 % of 9.99 = 4.995 -> 5.00 (half up); no account.
    assert _parts(setlinfo) == tuple(Decimal(x) for x in ("9.99", "5.00", "0.00", "4.99", "0.00"))


def test_the_deductible_belongs_to_the_year_of_the_business_time(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    nhsa_sim.control(deductible_fen=10000)

    def fund(sale: str, amount: str, when: str) -> tuple[Decimal, Decimal]:
        setlinfo = caller.settle(person, [("1", amount)], sale_id=sale, business_time=when)[1]["output"]["setlinfo"]
        return setlinfo["act_pay_dedc"], setlinfo["hifp_pay"]

    assert fund("S1", "80.00", "2025-12-31 09:00:00") == (Decimal("80.00"), Decimal("0.00"))
    assert fund("S2", "80.00", "2026-01-02 09:00:00") == (Decimal("80.00"), Decimal("0.00"))
    assert fund("S3", "50.00", "2025-12-30 09:00:00") == (Decimal("20.00"), Decimal("21.00"))
    # A revoke gives its deductible back to that year.
    s1 = next(s for s in nhsa_sim.settlements() if s["sale_id"] == "S1")
    assert caller.revoke(person, s1)[1]["infcode"] == 0
    assert fund("S4", "60.00", "2025-06-01 09:00:00") == (Decimal("60.00"), Decimal("0.00"))


def test_fund_pay_sumamt_may_include_the_account(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(fund_includes_acct=True)
    setlinfo = caller.settle(nhsa_sim.person("A10000123"), LINES, sale_id="S1")[1]["output"]["setlinfo"]
    assert (setlinfo["fund_pay_sumamt"], setlinfo["hifp_pay"], setlinfo["acct_pay"]) == (
        Decimal("52.50"), Decimal("40.83"), Decimal("11.67"))
    [settlement] = nhsa_sim.standing_settlements()
    assert (settlement["fund_fen"], settlement["acct_fen"]) == (4083, 1167)


@given(total=st.integers(1, 10**9), fund_pct=st.integers(0, 100), acct_pct=st.integers(0, 100),
       balance=st.integers(-100, 10**9), left=st.integers(-100, 10**9), use=st.booleans())
def test_the_split_always_adds_up(total: int, fund_pct: int, acct_pct: int, balance: int, left: int,
                                  use: bool) -> None:
    parts = split(total, fund_pct=fund_pct, acct_pct=min(acct_pct, 100 - fund_pct), use_acct=use,
                  balance=balance, deductible_left=left)
    assert parts.deductible + (parts.total - parts.deductible) == total
    assert parts.fund + parts.acct + parts.cash == total
    assert min(parts.deductible, parts.fund, parts.acct, parts.cash) >= 0
    assert parts.acct <= max(balance, 0) and (use or parts.acct == 0)

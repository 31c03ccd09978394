"""3201: the institution's totals against the settlements in force (net of revokes and reversals)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from terminald.sim.nhsa import NhsaSim
from tests.sim_nhsa.helpers import Caller, sale_data


@pytest.fixture
def caller(nhsa_sim: NhsaSim) -> Iterator[Caller]:
    c = Caller(nhsa_sim)
    c.sign_in()
    yield c
    c.close()


def _reconcile(caller: Caller, *, begin: str, end: str, count: int, medfee: str, fund: str, acct: str,
               insutype: str = "310") -> dict[str, Any]:
    data = {"insutype": insutype, "clr_type": "41", "setl_optins": "110100", "stmt_begndate": begin,
            "stmt_enddate": end, "medfee_sumamt": medfee, "fund_pay_sumamt": fund, "acct_pay": acct,
            "fixmedins_setl_cnt": count}
    _, answer = caller.call("3201", data)
    assert answer["infcode"] == 0, answer
    stmtinfo: dict[str, Any] = answer["output"]["stmtinfo"]
    return stmtinfo


def _day(nhsa_sim: NhsaSim, caller: Caller) -> None:
    """2026-11-23: three sales stand, one of them revoked, and one dropped settlement reversed;
    2026-11-24: one sale. A resident's sale (insutype 390) on the 23rd."""
    zhang, wang = nhsa_sim.person("A10000123"), nhsa_sim.person("B20000456")
    for sale in ("S1", "S2", "S3"):
        caller.settle(zhang, [("1", "10.00")], sale_id=sale, business_time="2026-11-23 09:00:00")
    s2 = next(s for s in nhsa_sim.settlements() if s["sale_id"] == "S2")
    assert caller.revoke(zhang, s2)[1]["infcode"] == 0
    env, _ = caller.settle(zhang, [("1", "7.77")], sale_id="S4", business_time="2026-11-23 18:00:00")
    assert caller.reverse(zhang, env["msgid"])["infcode"] == 0
    caller.settle(zhang, [("1", "20.00")], sale_id="S5", business_time="2026-11-24 08:00:00")
    caller.settle(wang, [("1", "30.00")], sale_id="R1", business_time="2026-11-23 10:00:00")


def test_totals_that_match_and_that_do_not(nhsa_sim: NhsaSim, caller: Caller) -> None:
    _day(nhsa_sim, caller)
    # S1 and S3 are in force on the 23rd: 20.00, fund 14.00, account 4.00.
    ok = _reconcile(caller, begin="2026-11-23", end="2026-11-23", count=2, medfee="20.00", fund="14.00", acct="4.00")
    assert (ok["stmt_rslt"], ok["setl_optins"]) == ("0", "110100")
    both = _reconcile(caller, begin="2026-11-23", end="2026-11-24", count=3, medfee="40.00", fund="28.00",
                      acct="8.00")
    assert both["stmt_rslt"] == "0"
    resident = _reconcile(caller, begin="2026-11-23", end="2026-11-23", count=1, medfee="30.00", fund="15.00",
                          acct="0.00", insutype="390")
    assert resident["stmt_rslt"] == "0"
    off = _reconcile(caller, begin="2026-11-23", end="2026-11-23", count=3, medfee="20.01", fund="14.00",
                     acct="4.00")
    assert off["stmt_rslt"] == "1"
    assert "结算笔数：机构3，中心2" in off["stmt_rslt_dscr"]
    assert "医疗费总额：机构20.01，中心20.00" in off["stmt_rslt_dscr"]
    assert "基金" not in off["stmt_rslt_dscr"]


def test_totals_by_settlement_time_and_with_the_account_in_the_fund(nhsa_sim: NhsaSim, caller: Caller) -> None:
    _day(nhsa_sim, caller)
    today = nhsa_sim.standing_settlements()[0]["setl_time"][:10]
    nhsa_sim.control(stmt_date_by="setl_time", fund_includes_acct=True)
    assert _reconcile(caller, begin=today, end=today, count=3, medfee="40.00", fund="36.00",
                      acct="8.00")["stmt_rslt"] == "0"
    before = (date.fromisoformat(today) - timedelta(days=1)).isoformat()
    assert _reconcile(caller, begin=before, end=before, count=0, medfee="0.00", fund="0.00",
                      acct="0.00")["stmt_rslt"] == "0"


def test_totals_per_clearing_area_when_the_region_says_so(nhsa_sim: NhsaSim, caller: Caller) -> None:
    _day(nhsa_sim, caller)
    nhsa_sim.control(stmt_by_setl_optins=True)
    # 张伟 is insured in 110100, the resident 王秀英 in 310100: her sale is not in 110100's totals.
    assert _reconcile(caller, begin="2026-11-23", end="2026-11-23", count=2, medfee="20.00", fund="14.00",
                      acct="4.00")["stmt_rslt"] == "0"
    assert _reconcile(caller, begin="2026-11-23", end="2026-11-23", count=0, medfee="0", fund="0", acct="0",
                      insutype="390")["stmt_rslt"] == "0"


@pytest.mark.parametrize(("field", "value", "says"), [
    ("stmt_begndate", "2026-11-25", "晚于"),
    ("stmt_enddate", "23/11/2026", "stmt_enddate"),
    ("fixmedins_setl_cnt", "two", "fixmedins_setl_cnt"),
    ("medfee_sumamt", "1.001", "medfee_sumamt"),
    ("insutype", "", "insutype"),
])
def test_bad_3201_input_is_refused(nhsa_sim: NhsaSim, caller: Caller, field: str, value: str, says: str) -> None:
    data = {"insutype": "310", "clr_type": "41", "setl_optins": "110100", "stmt_begndate": "2026-11-23",
            "stmt_enddate": "2026-11-24 00:00:00", "medfee_sumamt": "0", "fund_pay_sumamt": "0", "acct_pay": "0",
            "fixmedins_setl_cnt": "0"}
    data[field] = value
    _, answer = caller.call("3201", data)
    assert answer["infcode"] == -1 and says in answer["err_msg"], answer


def test_sale_data_helper_is_consistent() -> None:
    # The helpers' own arithmetic (the tests above lean on it).
    from terminald.sim.nhsa.persons import load_persons

    person = load_persons().persons["A10000123"]
    data = sale_data(person, [("3", "0.333333"), ("2", "1.005")], sale_id="X", business_time="2026-11-23 09:00:00")
    assert data["medfee_sumamt"] == "3.01"
    assert [d["det_item_fee_sumamt"] for d in data["drugdetail"]] == ["1.00", "2.01"]

"""3201 reconciliation (terminald/upstream/nhsa/reconcile.py) against the platform simulator.

The simulator's books are made with the hand-rolled caller of tests/sim_nhsa (so a bug of the
adapter cannot hide one of the simulator); the spool holds the same sales as the adapter would
have stored them (fen, the funds' share without the account, the `nhsa` part of the answer).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from spool import AppendRequest, Outcome, Record, Spool, digest
from spool.errors import InvalidRequest
from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.persons import Person
from terminald.upstream.nhsa.amounts import to_fen
from terminald.upstream.nhsa.calllog import CallLog
from terminald.upstream.nhsa.client import NhsaClient
from terminald.upstream.nhsa.envelope import Institution, Ok, Operator
from terminald.upstream.nhsa.profiles import Profile, load_profile
from terminald.upstream.nhsa.reconcile import local_groups, reconcile_day
from tests.sim_nhsa.helpers import AREA, FIXMEDINS, Caller

TID = "T0001"
INSTITUTION = Institution(FIXMEDINS, "测试大药房", AREA, "TERMD")
DAY, NEXT_DAY = "2026-11-23", "2026-11-24"
ZHANG, WANG = "A10000123", "B20000456"  # insutype 310 (insured in 110100, with an account); 390


@pytest.fixture
def caller(nhsa_sim: NhsaSim) -> Iterator[Caller]:
    c = Caller(nhsa_sim)
    c.sign_in()
    yield c
    c.close()


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool.open(tmp_path / "spool.db", TID)
    yield s
    s.close()


def _profile(tmp_path: Path, **settings: Any) -> Profile:
    """`national` with `settings` changed, as a site's profile file."""
    lines = ['base = "national"']
    for key, value in settings.items():
        text = "true" if value is True else "false" if value is False else \
            (f'"{value}"' if isinstance(value, str) else "[" + ", ".join(f'"{v}"' for v in value) + "]")
        lines.append(f"{key} = {text}")
    path = tmp_path / f"site-{len(list(tmp_path.glob('site-*.toml')))}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_profile(str(path))


def _append(spool: Spool, day: str, total: int, *, kind: str = "settlement", original: str | None = None) -> Record:
    key = f"k{spool.stats().last_seq + 1}"
    payload: dict[str, Any] = {"card": {"card_number": "C1", "ssn": "110101199003071234", "name": "张伟"},
                               "card_present": True, "items": [], "total_fen": total, "idempotency_key": key}
    if original is not None:
        payload["original_record_id"] = original
    req = AppendRequest(kind=kind, business_time=f"{day}T10:15:00+08:00", payload=payload, idempotency_key=key,
                        request_digest=digest(payload), original_record_id=original)
    return spool.append(req).record


def _settled(spool: Spool, record: Record, setlinfo: dict[str, Any], *, fund_includes_acct: bool = False) -> None:
    """Store the platform's split as the adapter does: integer fen, the funds' share without the account."""
    acct = to_fen(setlinfo["acct_pay"])
    fund = to_fen(setlinfo["fund_pay_sumamt"]) - (acct if fund_includes_acct else 0)
    settlement = {"central_ref": setlinfo["setl_id"], "fund_paid_fen": fund, "account_paid_fen": acct,
                  "cash_paid_fen": to_fen(setlinfo["psn_cash_pay"]),
                  "nhsa": {"setl_id": setlinfo["setl_id"], "mdtrt_id": setlinfo["mdtrt_id"],
                           "insutype": setlinfo["insutype"], "insuplc_admdvs": setlinfo["clr_optins"]}}
    spool.apply_outcomes([Outcome(record.seq, "settled", settlement)])


def _sale(spool: Spool, caller: Caller, who: Person, yuan: str, sale_id: str, day: str = DAY,
          **kw: Any) -> tuple[Record, dict[str, Any]]:
    _, answer = caller.settle(who, [("1", yuan)], sale_id=sale_id, business_time=f"{day} 10:15:00")
    assert answer["infcode"] == 0, answer
    setlinfo: dict[str, Any] = answer["output"]["setlinfo"]
    record = _append(spool, day, to_fen(yuan))
    _settled(spool, record, setlinfo, **kw)
    return record, setlinfo


def _revoke(spool: Spool, caller: Caller, who: Person, sale: Record, setlinfo: dict[str, Any], day: str) -> Record:
    _, answer = caller.revoke(who, setlinfo)
    assert answer["infcode"] == 0, answer
    record = _append(spool, day, -sale.total_fen, kind="revoke", original=sale.record_id)
    stored = spool.get(sale.record_id)
    assert stored is not None and stored.outcome is not None
    parts = {k: -stored.outcome[k] for k in ("fund_paid_fen", "account_paid_fen", "cash_paid_fen")}
    spool.apply_outcomes([Outcome(record.seq, "settled", {"central_ref": "R" + setlinfo["setl_id"], **parts,
                                                          "nhsa": {"setl_id": setlinfo["setl_id"]}})])
    return record


def _local(spool: Spool, day: str) -> dict[str, Any]:
    """What reports.py hands the adapter: the spool's totals of the day."""
    return dataclasses.asdict(spool.totals(day))


def _reconcile(nhsa_sim: NhsaSim, spool: Spool, profile: Profile, day: str = DAY) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        # The caller above builds msgids of this institution from the clock's second too: ours are
        # an hour ahead, so the two never collide (the simulator does not check msgid times).
        log = CallLog(spool, fixmedins_code=FIXMEDINS, clock=lambda: datetime.now(UTC) + timedelta(hours=1))
        client = NhsaClient(url=nhsa_sim.url, profile=profile, institution=INSTITUTION,
                            operator=Operator("T0001", "柜台一", "2"), calllog=log, timeout_s=5.0)
        try:
            signed = await client.sign_in(opter_no="T0001", mac="00:11:22:33:44:55", ip="10.0.0.8")
            assert isinstance(signed, Ok), signed
            return await reconcile_day(client, profile, day, _local(spool, day))
        finally:
            await client.aclose()
            log.close()

    return asyncio.run(main())


def _day(nhsa_sim: NhsaSim, spool: Spool, caller: Caller, **kw: Any) -> None:
    """The 23rd: three sales of 张伟 (310), the second revoked the next day; one of 王秀英 (390).
    The 24th: one sale of 张伟."""
    zhang, wang = nhsa_sim.person(ZHANG), nhsa_sim.person(WANG)
    _sale(spool, caller, zhang, "10.00", "S1", **kw)
    s2, s2_info = _sale(spool, caller, zhang, "10.00", "S2", **kw)
    _sale(spool, caller, zhang, "10.00", "S3", **kw)
    _sale(spool, caller, wang, "30.00", "R1", **kw)
    _revoke(spool, caller, zhang, s2, s2_info, NEXT_DAY)
    _sale(spool, caller, zhang, "20.00", "S5", day=NEXT_DAY, **kw)


def _row(report: dict[str, Any], insutype: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [r for r in report["insutypes"] if r["insutype"] == insutype]
    assert len(rows) == 1, report["insutypes"]
    return rows[0]


def test_a_day_that_matches(nhsa_sim: NhsaSim, spool: Spool, caller: Caller, tmp_path: Path) -> None:
    _day(nhsa_sim, spool, caller)
    pending = _append(spool, DAY, 500)  # not sent yet: counted on neither side
    report = _reconcile(nhsa_sim, spool, load_profile("national"))
    # In force on the 23rd: S1 and S3 (20.00: fund 14.00, account 4.00) and R1 (30.00, fund 15.00).
    figures = {"count": 3, "total_fen": 5000, "fund_paid_fen": 2900, "account_paid_fen": 400}
    assert report["local"] == {**figures, "by_status": {"accepted": 4, "pending": 1}}
    assert report["central"] == {**figures, "by_status": {"match": 2, "mismatch": 0}}
    assert report["matches"] is True and report["differences"] == []
    assert report["stmt_rslt"] == "0" and "对账平衡" in report["stmt_rslt_dscr"]
    assert "error" not in report and "1 record(s) of this date are still pending" in report["note"]
    assert pending.status == "pending"
    zhang = _row(report, "310")
    assert zhang["clr_type"] == "41" and zhang["setl_optins"] == AREA and zhang["matches"] is True
    assert zhang["sent"] == {"medfee_sumamt": "20.00", "fund_pay_sumamt": "14.00", "acct_pay": "4.00",
                             "fixmedins_setl_cnt": 2}
    assert _row(report, "390")["local"] == {"count": 1, "total_fen": 3000, "fund_paid_fen": 1500,
                                           "account_paid_fen": 0}
    # What went on the wire: the day on both ends, amounts as the profile's JSON numbers.
    sent = [c["request"]["input"]["data"] for c in nhsa_sim.calls("3201")]
    assert [(d["insutype"], d["stmt_begndate"], d["stmt_enddate"]) for d in sent] == [("310", DAY, DAY),
                                                                                         ("390", DAY, DAY)]
    assert str(sent[0]["medfee_sumamt"]) == "20.00" and not isinstance(sent[0]["medfee_sumamt"], str)
    # The next day: S5 only (the revoke of S2 is not a settlement of its own, in force).
    nxt = _reconcile(nhsa_sim, spool, load_profile("national"), NEXT_DAY)
    assert nxt["matches"] is True and nxt["local"]["count"] == 1 and nxt["local"]["total_fen"] == 2000


def test_a_day_that_does_not_match_names_what_can_explain_it(
    nhsa_sim: NhsaSim, spool: Spool, caller: Caller
) -> None:
    _day(nhsa_sim, spool, caller)
    # Settled here but unknown to the platform (e.g. a spool restored from another counter).
    stray = _append(spool, DAY, 101)
    spool.apply_outcomes([Outcome(stray.seq, "settled", {"central_ref": "X", "fund_paid_fen": 70,
                                                          "account_paid_fen": 0, "cash_paid_fen": 31,
                                                          "nhsa": {"insutype": "310"}})])
    pending = _append(spool, DAY, 300)
    report = _reconcile(nhsa_sim, spool, load_profile("national"))
    assert report["matches"] is False and "error" not in report
    assert report["central"] == {"count": None, "total_fen": None, "fund_paid_fen": None, "account_paid_fen": None,
                                 "by_status": {"match": 1, "mismatch": 1}}
    assert report["stmt_rslt"] == "1"
    zhang = _row(report, "310")
    assert zhang["matches"] is False and "结算笔数：机构3，中心2" in zhang["stmt_rslt_dscr"]
    assert _row(report, "390")["matches"] is True
    figure, named = report["differences"][0], report["differences"][1:]
    assert figure["figure"] == f"3201 insutype 310 clr_type 41 setl_optins {AREA}"
    assert figure["local"] == "count 3, medfee 21.01, fund 14.70, account 4.00"
    assert "医疗费总额：机构21.01，中心20.00" in figure["central"]
    assert [(n["record_id"], n["why"]) for n in named] == [(pending.record_id, "pending")]
    assert "not a record-by-record comparison" in report["note"]


def test_refused_by_the_platform_masked(nhsa_sim: NhsaSim, spool: Spool, caller: Caller) -> None:
    _day(nhsa_sim, spool, caller)
    nhsa_sim.control(refuse={"infno": ["3201"], "message": "对账数据异常，经办人身份证110101199003071234"})
    report = _reconcile(nhsa_sim, spool, load_profile("national"))
    assert report["matches"] is False and report["central"] is None and report["differences"] == []
    row = _row(report, "310")
    assert row["matches"] is None and row["refused"].startswith("对账数据异常")
    assert "110101199003071234" not in str(report) and "110101********1234" in row["refused"]
    assert "refused by central: 对账数据异常" in report["error"]


@pytest.mark.parametrize("fault", ["reset", "garbage", "drop_after_commit", "error"])
def test_an_unknown_outcome_is_a_clear_error_and_nothing_is_reversed(
    nhsa_sim: NhsaSim, spool: Spool, caller: Caller, fault: str
) -> None:
    _day(nhsa_sim, spool, caller)
    nhsa_sim.control(fault_infnos=["3201"], next={fault: 1})
    report = _reconcile(nhsa_sim, spool, load_profile("national"))
    assert report["matches"] is False and report["central"] is None
    first, second = report["insutypes"]
    assert first["matches"] is None and "no definite answer to 3201" in first["error"]
    assert "nothing is reversed" in first["error"] and second["matches"] is True  # the other type still asked
    assert "no definite answer to 3201" in report["error"]
    assert nhsa_sim.calls("2601") == []
    log = CallLog(spool, fixmedins_code=FIXMEDINS)
    try:
        states = sorted(c.state for c in log.unfinished(["3201"]))
    finally:
        log.close()
    assert states == ["unknown"]  # logged as such, and never a candidate for 2601 (not reversible)


def test_fund_including_the_account(nhsa_sim: NhsaSim, spool: Spool, caller: Caller, tmp_path: Path) -> None:
    nhsa_sim.control(fund_includes_acct=True)
    _day(nhsa_sim, spool, caller, fund_includes_acct=True)
    profile = _profile(tmp_path, fund_includes_acct=True)
    report = _reconcile(nhsa_sim, spool, profile)
    assert report["matches"] is True, report
    # Locally the funds' share without the account; on the wire fund_pay_sumamt with it.
    assert report["local"]["fund_paid_fen"] == 2900 and report["local"]["account_paid_fen"] == 400
    assert _row(report, "310")["sent"]["fund_pay_sumamt"] == "18.00"
    # The same spool with a profile that disagrees with the region: a mismatch on the fund.
    wrong = _reconcile(nhsa_sim, spool, load_profile("national"))
    assert wrong["matches"] is False and "基金支付总额：机构14.00，中心18.00" in _row(wrong, "310")["stmt_rslt_dscr"]


def test_fund_excluding_the_account_as_strings(nhsa_sim: NhsaSim, spool: Spool, caller: Caller,
                                              tmp_path: Path) -> None:
    _day(nhsa_sim, spool, caller)
    report = _reconcile(nhsa_sim, spool, _profile(tmp_path, amount_as="string"))
    assert report["matches"] is True
    sent = nhsa_sim.calls("3201")[0]["request"]["input"]["data"]
    assert (sent["fund_pay_sumamt"], sent["acct_pay"], sent["medfee_sumamt"]) == ("14.00", "4.00", "20.00")


def test_revokes_counted_net_and_per_insured_area(nhsa_sim: NhsaSim, spool: Spool, caller: Caller,
                                                   tmp_path: Path) -> None:
    _day(nhsa_sim, spool, caller)
    profile = _profile(tmp_path, reconcile_revokes="net", reconcile_setl_optins="insuplc")
    groups = {(g.insutype, g.setl_optins): (g.count, g.medfee_fen)
              for g in local_groups(spool.path, NEXT_DAY, profile, mdtrtarea_admvs=AREA)}
    # The 24th, net: S5 (+20.00) and the revoke of S2 (-10.00), both in 张伟's insured area 110100;
    # the resident type is reconciled too, with nothing local, under the institution's area.
    assert groups == {("310", "110100"): (2, 1000), ("390", AREA): (0, 0), ("310", AREA): (0, 0)}
    in_force = {(g.insutype, g.setl_optins): (g.count, g.medfee_fen)
                for g in local_groups(spool.path, DAY, load_profile("national"), mdtrtarea_admvs=AREA)}
    assert in_force == {("310", AREA): (2, 2000), ("390", AREA): (1, 3000)}
    # The simulator counts in force per insured area: the 23rd matches per area.
    nhsa_sim.control(stmt_by_setl_optins=True)
    report = _reconcile(nhsa_sim, spool, _profile(tmp_path, reconcile_setl_optins="insuplc"))
    assert report["matches"] is True, report
    assert sorted((r["insutype"], r["setl_optins"]) for r in report["insutypes"]) == [
        ("310", "110100"), ("310", AREA), ("390", AREA), ("390", "310100")]


def test_a_settlement_without_its_insurance_type_goes_to_the_profiles_first(
    nhsa_sim: NhsaSim, spool: Spool, tmp_path: Path
) -> None:
    record = _append(spool, DAY, 1000)
    spool.apply_outcomes([Outcome(record.seq, "settled", {"central_ref": "C1", "fund_paid_fen": 700,
                                                           "account_paid_fen": 0, "cash_paid_fen": 300})])
    profile = _profile(tmp_path, reconcile_insutypes=["390"], reconcile_clr_type="11")
    [group] = local_groups(spool.path, DAY, profile, mdtrtarea_admvs=AREA)
    assert (group.insutype, group.count, group.medfee_fen, group.fund_fen) == ("390", 1, 1000, 700)
    report = _reconcile(nhsa_sim, spool, profile)
    assert [(r["insutype"], r["clr_type"]) for r in report["insutypes"]] == [("390", "11")]
    assert report["matches"] is False  # the platform holds no such settlement


def test_a_bad_date_is_refused_before_anything_is_sent(nhsa_sim: NhsaSim, spool: Spool) -> None:
    with pytest.raises(InvalidRequest):
        _reconcile(nhsa_sim, spool, load_profile("national"), "23/11/2026")
    assert nhsa_sim.calls("3201") == []


def test_the_business_day_is_the_terminals_not_the_pos_offsets(spool: Spool) -> None:
    """2102's begntime is the business time in the terminal's zone: a sale the POS stamped
    2026-11-23T23:30Z was booked by the platform on the 24th (07:30 in Shanghai), and a sale
    stamped 2026-11-24T00:30+09:00 on the 23rd (23:30 in Shanghai): reconciled on those days."""
    for when, total in (("2026-11-23T23:30:00+00:00", 1000), ("2026-11-24T00:30:00+09:00", 3000)):
        key = f"k{spool.stats().last_seq + 1}"
        payload: dict[str, Any] = {"card": {"card_number": "C1"}, "card_present": True, "items": [],
                                   "total_fen": total, "idempotency_key": key}
        record = spool.append(AppendRequest(kind="settlement", business_time=when, payload=payload,
                                            idempotency_key=key, request_digest=digest(payload))).record
        spool.apply_outcomes([Outcome(record.seq, "settled", {
            "central_ref": f"C{record.seq}", "fund_paid_fen": record.total_fen, "account_paid_fen": 0,
            "cash_paid_fen": 0, "nhsa": {"insutype": "310"}})])
    national = load_profile("national")

    def totals(day: str) -> tuple[int, int]:
        [group] = [g for g in local_groups(spool.path, day, national, mdtrtarea_admvs=AREA,
                                           tz="Asia/Shanghai") if g.insutype == "310"]
        return group.count, group.medfee_fen

    assert totals(DAY) == (1, 3000)
    assert totals(NEXT_DAY) == (1, 1000)

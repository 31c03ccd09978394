"""What belongs to one record stays with that record's person: never the link, never the others.

A record the adapter cannot finish is parked (alarm `nhsa_record_stuck`); one that cannot be
sent as it is, is rejected locally (`nhsa_record_invalid`); an open call of a record held back
is still reversed (a reversal needs no patient).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from terminald.sim.nhsa import NhsaSim
from terminald.upstream.nhsa.adapter import RECORD_STUCK
from terminald.upstream.nhsa.calllog import CallLog
from terminald.upstream.nhsa.settle import INVALID, MONEY_ATTEMPTS
from tests.nhsa_adapter.helpers import CODE, Bench, Tap, age_calls, card_of, drain, region_bench, run, sale


def _untrusted_for(psn_no: str) -> Tap:
    """2102 answers of one person whose split never adds up (one more fund the profile does not list)."""

    def on_answer(envelope: dict[str, Any], body: bytes) -> bytes:
        if envelope["infno"] != "2102" or envelope["input"]["data"]["psn_no"] != psn_no:
            return body
        answer = json.loads(body)
        if answer.get("infcode") == 0:
            answer["output"]["setlinfo"]["psn_cash_pay"] = "0.01"
        return json.dumps(answer).encode()

    return Tap(on_answer)


def test_a_split_that_never_adds_up_parks_its_person_and_the_others_go_on(tmp_path: Path, nhsa_sim: NhsaSim) -> None:
    bench = Bench(tmp_path, nhsa_sim, concurrency=2)
    zhang, zhao, qian = nhsa_sim.person("A10000123"), nhsa_sim.person("D40000321"), nhsa_sim.person("B20000456")
    bad = sale(bench.spool, card_of(zhang))
    behind = sale(bench.spool, card_of(zhang))
    others = [sale(bench.spool, card_of(zhao)), sale(bench.spool, card_of(qian)), sale(bench.spool, card_of(zhao))]

    async def go() -> None:
        async with bench.opened(_untrusted_for(zhang.psn_no)) as adapter:
            await adapter.sync()
            # No Transient: the link does not move for zhang's answer.
            assert await drain(adapter, transient_ok=False) == 3
            assert await adapter.upload() == 0  # still parked

    with bench:
        run(go)
        assert [bench.record(r).status for r in others] == ["settled"] * 3
        assert [bench.record(r).status for r in (bad, behind)] == ["pending", "pending"]
        assert RECORD_STUCK in bench.host.alarms and zhang.certno not in bench.host.alarms[RECORD_STUCK]
        assert "seq 1" in bench.host.alarms[RECORD_STUCK]
        mine = [c for c in nhsa_sim.calls("2102") if c["request"]["input"]["data"]["psn_no"] == zhang.psn_no]
        assert len(mine) == MONEY_ATTEMPTS
        # Every one of them reversed (the last one by the next round), none stands.
        with CallLog(bench.spool, fixmedins_code=CODE) as log:
            assert log.unfinished({"2102"}) == []
        assert not [s for s in nhsa_sim.standing_settlements() if s["psn_no"] == zhang.psn_no]
        bench.check_money()


def _psn_no_for(certno: str, psn_no: str) -> Tap:
    """1101 answers of one person (by ID number) that give `psn_no` as the person's number."""

    def on_answer(envelope: dict[str, Any], body: bytes) -> bytes:
        answer = json.loads(body)
        if envelope["infno"] == "1101" and answer["output"]["baseinfo"]["certno"] == certno:
            answer["output"]["baseinfo"]["psn_no"] = psn_no
        return json.dumps(answer).encode()

    return Tap(on_answer)


def test_an_unusable_1101_answer_parks_the_person_not_the_link(bench: Bench) -> None:
    zhang, zhao = bench.sim.person("A10000123"), bench.sim.person("D40000321")
    stuck = sale(bench.spool, card_of(zhang))
    fine = sale(bench.spool, card_of(zhao))

    assert bench.drain(_psn_no_for(zhang.certno, ""), transient_ok=False) == 1
    assert (bench.record(stuck).status, bench.record(fine).status) == ("pending", "settled")
    assert "1101" in bench.host.alarms[RECORD_STUCK]


def test_the_account_part_is_the_profiles_fields(tmp_path: Path, nhsa_sim: NhsaSim) -> None:
    """A region whose split has 个人账户共济 (acct_mulaid_pay) in the account part."""
    bench = region_bench(tmp_path, nhsa_sim, 'base = "mock"\naccount_fields = ["acct_pay", "acct_mulaid_pay"]\n')
    record = sale(bench.spool, card_of(nhsa_sim.person("A10000123")))
    moved: list[int] = []

    def on_answer(envelope: dict[str, Any], body: bytes) -> bytes:
        answer = json.loads(body)
        if envelope["infno"] == "2102" and answer.get("infcode") == 0:
            info = answer["output"]["setlinfo"]
            cash = round(float(info["psn_cash_pay"]) * 100)
            moved.append(min(cash, 100))
            info["psn_cash_pay"] = f"{(cash - moved[0]) / 100:.2f}"
            info["acct_mulaid_pay"] = f"{moved[0] / 100:.2f}"
        return json.dumps(answer).encode()

    with bench:
        assert bench.drain(Tap(on_answer)) == 1
        done = bench.record(record)
        assert done.status == "settled" and moved and moved[0] > 0
        [held] = nhsa_sim.standing_settlements()
        outcome = done.outcome or {}
        assert outcome["account_paid_fen"] == held["acct_fen"] + moved[0]
        assert outcome["fund_paid_fen"] + outcome["account_paid_fen"] + outcome["cash_paid_fen"] == record.total_fen


def test_a_sale_too_big_for_the_platform_is_rejected_locally(bench: Bench) -> None:
    zhang, zhao = bench.sim.person("A10000123"), bench.sim.person("D40000321")
    lines = [(f"X{i:04d}", "复方甘草口服溶液（每瓶100毫升）" * 3, 1, 100) for i in range(150)]
    big = sale(bench.spool, card_of(zhang), items=lines)
    after = sale(bench.spool, card_of(zhang))
    other = sale(bench.spool, card_of(zhao))

    assert bench.drain(transient_ok=False) == 3
    done = bench.record(big)
    assert done.status == "rejected" and (done.resolution or done.outcome or {}).get("code") == INVALID
    assert "150 lines" in json.dumps(done.outcome or {}, ensure_ascii=False)
    assert [bench.record(r).status for r in (after, other)] == ["settled", "settled"]
    assert len(bench.sim.calls("2102")) == 2  # nothing sent for the big one


def test_a_request_the_call_log_refuses_rejects_its_record_only(bench: Bench) -> None:
    """1101 answers a psn_no the call log cannot hold: that record is rejected, nothing raised."""
    zhang, zhao = bench.sim.person("A10000123"), bench.sim.person("D40000321")
    odd = sale(bench.spool, card_of(zhang))
    fine = sale(bench.spool, card_of(zhao))

    assert bench.drain(_psn_no_for(zhang.certno, "P" * 80), transient_ok=False) == 2
    assert bench.record(fine).status == "settled"
    rejected = bench.record(odd)
    assert rejected.status == "rejected" and (rejected.outcome or {})["code"] == INVALID
    assert bench.sim.calls("2102")[0]["request"]["input"]["data"]["psn_no"] == zhao.psn_no


def test_an_operator_name_over_a_gbk_limit_is_cut_not_refused(tmp_path: Path, nhsa_sim: NhsaSim) -> None:
    bench = region_bench(tmp_path, nhsa_sim, 'base = "mock"\nlength_unit = "gbk"\n[limits]\nopter_name = 20\n')
    name = "欧阳药师长名字测试员工"  # 11 characters, 22 GBK bytes
    record = sale(bench.spool, card_of(nhsa_sim.person("A10000123")), operator={"id": "0007", "name": name})

    with bench:
        assert bench.drain() == 1
        assert bench.record(record).status == "settled"
        assert nhsa_sim.calls("2102")[0]["request"]["opter_name"] == name[:10]


def test_the_open_call_of_a_record_waiting_for_its_patient_is_reversed(bench: Bench) -> None:
    """patient_present: the record is held back, but its 2102 left open is reversed each round."""
    zhang = bench.sim.person("A10000123")
    away = sale(bench.spool, card_of(zhang))
    with CallLog(bench.spool, fixmedins_code=CODE) as log:
        msgid = log.begin("2102", record_id=away.record_id, psn_no=zhang.psn_no,
                          insuplc_admdvs=zhang.insuplc_admdvs)
    age_calls(bench.spool, 2.0)  # past the reversal delay
    bench.host.waiting = {away.record_id}

    async def go() -> None:
        async with bench.opened() as adapter:
            # No sync (a restart's): the call was left open during the run, then the record held back.
            assert await adapter.upload() == 0

    run(go)
    [reversal] = bench.sim.calls("2601")
    assert reversal["request"]["input"]["data"]["omsgid"] == msgid
    assert bench.record(away).status == "pending" and bench.sim.calls("2102") == []
    with CallLog(bench.spool, fixmedins_code=CODE) as log:
        call = log.get(msgid)
        assert call is not None and call.state == "reversed"

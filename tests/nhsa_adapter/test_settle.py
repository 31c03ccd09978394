"""The adapter against the simulator on a good day: sales, revokes, the split, the business time."""

from __future__ import annotations

import pytest

from terminald.sim.nhsa.settings import MSG_FROZEN, MSG_NOT_INSURED, MSG_REFUSED
from tests.nhsa_adapter.helpers import Bench, card_of, drain, revoke, run, sale, sale_id


def test_a_sale_settles_with_the_platforms_split_at_its_business_time(bench: Bench) -> None:
    zhang = bench.sim.person("A10000123")
    # Spooled in UTC: the platform gets the terminal's local time of the sale.
    record = sale(bench.spool, card_of(zhang), when="2026-11-23T02:15:00+00:00")

    assert bench.drain(sync=True) == 1
    done = bench.record(record)
    assert done.status == "settled"
    # 2 × 12.50 + 33.33 = 58.33 -> fund 40.83, account 11.67, cash 5.83 (docs/nhsa-simulator.md)
    outcome = done.outcome or {}
    assert (outcome["fund_paid_fen"], outcome["account_paid_fen"], outcome["cash_paid_fen"]) == (4083, 1167, 583)
    [held] = bench.sim.standing_settlements()
    assert outcome["central_ref"] == held["setl_id"] == outcome["nhsa"]["setl_id"]
    assert outcome["nhsa"]["mdtrt_id"] == held["mdtrt_id"] and outcome["nhsa"]["psn_no"] == zhang.psn_no
    assert outcome["nhsa"]["insuplc_admdvs"] == zhang.insuplc_admdvs and outcome["nhsa"]["insutype"] == "310"
    assert held["begntime"] == "2026-11-23 10:15:00"
    assert {d["sel_retn_time"] for d in held["details"]} == {"2026-11-23 10:15:00"}
    assert held["sale_id"] == sale_id(record) and len(sale_id(record)) <= 30
    [person_call] = bench.sim.calls("1101")
    assert person_call["request"]["input"]["data"]["mdtrt_cert_type"] == "02"  # no identifier: by ID number
    [settle] = bench.sim.calls("2102")
    env = settle["request"]
    assert env["opter"] == "0007" and env["opter_name"] == "李药师" and env["insuplc_admdvs"] == "110100"
    assert env["signtype"] == "MOCK"
    bench.check_money()


def test_a_card_with_its_identifier_is_named_by_card(bench: Bench) -> None:
    liu = bench.sim.person("G70000135")
    record = sale(bench.spool, card_of(liu, with_sn=True))

    bench.drain()
    assert bench.record(record).status == "settled"
    [person_call] = bench.sim.calls("1101")
    data = person_call["request"]["input"]["data"]
    assert (data["mdtrt_cert_type"], data["mdtrt_cert_no"], data["card_sn"]) == ("03", liu.card_number, liu.card_sn)
    bench.check_money()


def test_the_first_call_signs_in_and_a_resident_has_no_account(bench: Bench) -> None:
    wang = bench.sim.person("B20000456")
    record = sale(bench.spool, card_of(wang))

    bench.drain()  # no sync first: the first call signs in by itself
    outcome = bench.record(record).outcome or {}
    assert outcome["account_paid_fen"] == 0 and outcome["nhsa"]["insutype"] == "390"
    assert outcome["fund_paid_fen"] + outcome["cash_paid_fen"] == record.total_fen
    assert [c["infno"] for c in bench.sim.calls()] == ["9001", "1101", "2102"]
    bench.check_money()


def test_revoke_uses_the_originals_ids_and_negates_its_parts(bench: Bench) -> None:
    zhang = bench.sim.person("A10000123")
    original = sale(bench.spool, card_of(zhang))

    async def go() -> None:
        async with bench.opened() as adapter:
            await drain(adapter)
            later = revoke(bench.spool, bench.record(original))
            assert await drain(adapter) == 1
            assert bench.record(later).status == "settled"

    run(go)
    settled = bench.record(original).outcome or {}
    [rev] = [r for r in bench.spool.records(after_seq=0) if r.kind == "revoke"]
    outcome = rev.outcome or {}
    for part in ("fund_paid_fen", "account_paid_fen", "cash_paid_fen"):
        assert outcome[part] == -settled[part]
    [held] = bench.sim.standing_revokes()
    assert outcome["central_ref"] == held["setl_id"] and held["original_setl_id"] == settled["nhsa"]["setl_id"]
    [call] = bench.sim.calls("2103")
    assert call["request"]["input"]["data"] == {"setl_id": settled["nhsa"]["setl_id"],
                                                "mdtrt_id": settled["nhsa"]["mdtrt_id"], "psn_no": zhang.psn_no}
    assert bench.sim.balance_fen("A10000123") == 50000  # the account money is back
    bench.check_money()


def test_a_revoke_waits_for_its_original_and_one_of_a_rejected_original_is_rejected_here(bench: Bench) -> None:
    zhang, chen = bench.sim.person("A10000123"), bench.sim.person("F60000987")  # chen is frozen
    good = sale(bench.spool, card_of(zhang))
    doomed = sale(bench.spool, card_of(chen))
    good_revoke = revoke(bench.spool, good)
    doomed_revoke = revoke(bench.spool, doomed)
    bench.host.waiting = {good.record_id}  # its patient is not back yet

    async def go() -> None:
        async with bench.opened() as adapter:
            assert await adapter.upload() == 2  # chen's sale (rejected), then its revoke
            assert bench.record(good_revoke).status == "pending" and bench.sim.calls("2103") == []
            bench.host.waiting = set()
            assert await drain(adapter) == 2

    run(go)
    assert bench.record(doomed).status == "rejected"
    assert bench.record(doomed_revoke).status == "rejected"
    assert (bench.record(doomed_revoke).outcome or {})["code"] == "original_rejected"
    assert bench.record(good_revoke).status == "settled"
    assert len(bench.sim.calls("2103")) == 1
    bench.check_money()


@pytest.mark.parametrize(("who", "message"), [
    ("F60000987", MSG_FROZEN),
    ("110101199003071022", MSG_NOT_INSURED),
])
def test_a_refused_sale_is_rejected_with_the_platforms_reason(bench: Bench, who: str, message: str) -> None:
    record = sale(bench.spool, card_of(bench.sim.person(who)))

    assert bench.drain() == 1
    done = bench.record(record)
    assert done.status == "rejected" and done.outcome == {"code": "nhsa_refused", "message": message}
    assert [state for _, state in bench.call_states(record.record_id)] == ["ok", "failed"]
    bench.check_money()


def test_a_1101_refusal_or_an_unknown_person_rejects_and_masks(bench: Bench) -> None:
    zhang = bench.sim.person("A10000123")
    bench.sim.control(refuse={"infno": ["1101"], "persons": ["A10000123"]})
    refused = sale(bench.spool, card_of(zhang))
    stranger = {"card_number": "", "ssn": "110101199901011235", "name": "无名氏", "issuer_code": "110000"}
    unknown = sale(bench.spool, stranger)

    assert bench.drain() == 2
    assert bench.record(refused).outcome == {"code": "nhsa_refused", "message": MSG_REFUSED}
    gone = bench.record(unknown)
    assert gone.status == "rejected" and (gone.outcome or {})["code"] == "nhsa_refused"
    assert "110101199901011235" not in str(gone.outcome)
    assert bench.sim.calls("2102") == []


def test_a_record_the_platform_cannot_take_is_rejected_without_a_call(bench: Bench) -> None:
    nobody = {"card_number": "", "ssn": "", "name": "", "issuer_code": ""}
    record = sale(bench.spool, nobody)

    assert bench.drain() == 1
    assert (bench.record(record).outcome or {})["code"] == "nhsa_record_invalid"
    assert [c["infno"] for c in bench.sim.calls()] == []


def test_reconcile_sends_3201_for_the_day(bench: Bench) -> None:
    sale(bench.spool, card_of(bench.sim.person("A10000123")), when="2026-11-23T10:15:00+08:00")
    sale(bench.spool, card_of(bench.sim.person("B20000456")), when="2026-11-23T11:00:00+08:00")

    async def go() -> dict:
        async with bench.opened() as adapter:
            await drain(adapter)
            return await adapter.reconcile("2026-11-23", {"by_status": {"accepted": 2}})

    report = run(go)
    assert report["matches"] is True and report["local"]["count"] == 2
    assert {c["request"]["input"]["data"]["insutype"] for c in bench.sim.calls("3201")} >= {"310", "390"}


def test_1101_without_any_insurance_rejects(bench: Bench) -> None:
    import json

    from tests.nhsa_adapter.helpers import Tap

    record = sale(bench.spool, card_of(bench.sim.person("A10000123")))

    def on_answer(envelope: dict, body: bytes) -> bytes:
        if envelope["infno"] != "1101":
            return body
        answer = json.loads(body)
        answer["output"]["insuinfo"] = []
        return json.dumps(answer).encode()

    assert bench.drain(Tap(on_answer)) == 1
    assert (bench.record(record).outcome or {})["code"] == "nhsa_not_insured"
    assert bench.sim.calls("2102") == []

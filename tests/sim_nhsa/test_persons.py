"""1101 and the persons: the emulated cards' holders, frozen and not-insured lists switchable at run time."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from terminald.sim.card_desc import CARDS_DIR, load_card
from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.persons import id_check_digit
from terminald.sim.nhsa.settings import MSG_FROZEN, MSG_NOT_INSURED
from tests.sim_nhsa.helpers import Caller


@pytest.fixture
def caller(nhsa_sim: NhsaSim) -> Iterator[Caller]:
    c = Caller(nhsa_sim)
    c.sign_in()
    yield c
    c.close()


def test_the_persons_are_the_emulated_cards_holders(nhsa_sim: NhsaSim) -> None:
    cards = [load_card(p) for p in sorted(CARDS_DIR.glob("*.toml"))]
    holders = [c for c in cards if c.kind == "ssc" and c.fields.get("card_number") and c.fields.get("ssn")]
    assert len(holders) >= 6
    for card in holders:
        person = nhsa_sim.person(card.fields["card_number"])
        assert (person.card_number, person.certno, person.name, person.card_sn) == (
            card.fields["card_number"], card.fields["ssn"], card.fields["name"],
            card.fields["card_identifier"].upper())
        assert person.insuplc_admdvs == card.fields["card_identifier"][:6]
        assert nhsa_sim.person(card.fields["ssn"]) == nhsa_sim.person(person.psn_no) == person
    assert {p.card_number for p in nhsa_sim.persons.values()} >= {c.fields["card_number"] for c in holders}
    assert any(not p.card_number for p in nhsa_sim.persons.values())  # some people have no card


def test_1101_by_card_and_by_id_number(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    by_card = caller.person_info(person)
    assert by_card["infcode"] == 0, by_card
    base, [insu] = by_card["output"]["baseinfo"], by_card["output"]["insuinfo"]
    assert (base["psn_no"], base["certno"], base["psn_name"], base["gend"], base["brdy"]) == (
        person.psn_no, "110105198003150039", "张伟", "1", "1980-03-15")
    assert (insu["insutype"], insu["psn_insu_stas"], insu["insuplc_admdvs"]) == ("310", "1", "110100")
    assert insu["balc"] == Decimal("500.00")
    by_id = caller.person_info(person, mdtrt_cert_type="02", mdtrt_cert_no=person.certno, card_sn="")
    assert by_id["output"]["baseinfo"]["psn_no"] == person.psn_no
    e_voucher = caller.person_info(person, mdtrt_cert_type="01", mdtrt_cert_no="token", certno=person.certno)
    assert e_voucher["output"]["baseinfo"]["psn_no"] == person.psn_no


@pytest.mark.parametrize(("change", "says"), [
    ({"card_sn": "110100D1560000050000000119A2B3C5"}, "卡识别码与社会保障卡号不符"),
    ({"card_sn": ""}, "卡识别码"),
    ({"mdtrt_cert_no": "Z99999999"}, "未查询到"),
    ({"mdtrt_cert_type": "02", "mdtrt_cert_no": "110105198003150040", "card_sn": ""}, "未查询到"),
    ({"mdtrt_cert_type": "05"}, "mdtrt_cert_type"),
    ({"psn_name": "李四"}, "姓名"),
    ({"certno": "310104199207080023"}, "证件号码"),
])
def test_1101_refuses_what_does_not_match(nhsa_sim: NhsaSim, caller: Caller, change: dict[str, str],
                                          says: str) -> None:
    answer = caller.person_info(nhsa_sim.person("A10000123"), **change)
    assert answer["infcode"] == -1 and says in answer["err_msg"], answer


def test_card_sn_may_be_optional(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(require_card_sn=False)
    assert caller.person_info(nhsa_sim.person("A10000123"), card_sn="")["infcode"] == 0


def test_frozen_and_not_insured_persons(nhsa_sim: NhsaSim, caller: Caller) -> None:
    frozen, uninsured = nhsa_sim.person("F60000987"), nhsa_sim.person("110101199003071022")
    assert (nhsa_sim.person_status("F60000987"), nhsa_sim.person_status(uninsured.certno)) == (
        "frozen", "not_insured")
    [insu] = caller.person_info(frozen)["output"]["insuinfo"]
    assert insu["psn_insu_stas"] == "2" and len(insu["paus_insu_date"]) == 10
    [insu] = caller.person_info(uninsured)["output"]["insuinfo"]
    assert insu["psn_insu_stas"] == "0"
    for person, reason in ((frozen, MSG_FROZEN), (uninsured, MSG_NOT_INSURED)):
        for infno in ("2101", "2102"):
            _, answer = caller.settle(person, [("1", "10.00")], sale_id=f"{infno}-{person.key}", infno=infno)
            assert (answer["infcode"], answer["err_msg"]) == (-1, reason)
    assert nhsa_sim.settlements() == []


def test_the_lists_switch_at_run_time(nhsa_sim: NhsaSim, caller: Caller) -> None:
    zhang, wang = nhsa_sim.person("A10000123"), nhsa_sim.person("B20000456")
    state = nhsa_sim.control(not_insured=[zhang.certno], freeze=["B20000456"], unfreeze=["F60000987"])
    assert state["not_insured"] == ["A10000123"] and state["frozen"] == ["B20000456"]
    assert caller.person_info(zhang)["output"]["insuinfo"][0]["psn_insu_stas"] == "0"
    assert caller.person_info(wang)["output"]["insuinfo"][0]["psn_insu_stas"] == "2"
    assert caller.person_info(nhsa_sim.person("F60000987"))["output"]["insuinfo"][0]["psn_insu_stas"] == "1"
    _, answer = caller.settle(wang, [("1", "10.00")], sale_id="W1")
    assert answer["err_msg"] == MSG_FROZEN
    caller.http.post("/_control", json={"frozen": [], "not_insured": []})
    assert caller.settle(wang, [("1", "10.00")], sale_id="W2")[1]["infcode"] == 0


def test_control_refuses_an_unknown_person(nhsa_sim: NhsaSim) -> None:
    response = httpx.post(nhsa_sim.url + "/_control", json={"freeze": ["Z99999999"]}, timeout=10)
    assert response.status_code == 400 and "no such person" in response.json()["message"]
    persons = httpx.get(nhsa_sim.url + "/_control/persons", timeout=10).json()
    assert {p["key"]: p["status"] for p in persons}["F60000987"] == "frozen"


def test_many_made_up_persons_for_benchmarks(tmp_path: Path) -> None:
    sim = NhsaSim(tmp_path / "n.db", synthetic_persons=400)
    sim.start()
    caller = Caller(sim)
    try:
        made_up = [p for p in sim.persons.values() if p.card_number.startswith("S")]
        assert len(made_up) == 400 and len({p.certno for p in made_up}) == 400
        assert all(id_check_digit(p.certno[:17]) == p.certno[17] for p in made_up)
        caller.sign_in()
        last = sim.person("S00000400")
        info = caller.person_info(last)
        assert info["output"]["baseinfo"]["certno"] == last.certno
        _, answer = caller.settle(last, [("1", "10.00")], sale_id="B1")
        assert answer["infcode"] == 0
    finally:
        caller.close()
        sim.stop()

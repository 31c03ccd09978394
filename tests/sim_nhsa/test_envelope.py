"""The envelope, sign-in and msgid rules of the platform simulator, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.settings import MSG_MSGID_REUSED, MSG_SIGN_IN_EXPIRED, MSG_SIGN_NO_MISSING
from tests.sim_nhsa.helpers import FIXMEDINS, Caller, decimal_json, new_msgid


@pytest.fixture
def caller(nhsa_sim: NhsaSim) -> Iterator[Caller]:
    c = Caller(nhsa_sim)
    yield c
    c.close()


def test_sign_in_gives_a_sign_no(nhsa_sim: NhsaSim, caller: Caller) -> None:
    env, answer = caller.call("9001", {"opter_no": "T0001", "mac": "00:11:22:33:44:55", "ip": "10.0.0.8"})
    assert answer["infcode"] == 0 and answer["err_msg"] == ""
    signinoutb = answer["output"]["signinoutb"]
    assert len(signinoutb["sign_no"]) == 30 and len(signinoutb["sign_time"]) == 19
    assert len(answer["inf_refmsgid"]) == 30 and len(answer["refmsg_time"]) == len(answer["respond_time"]) == 17
    [logged] = nhsa_sim.calls()
    assert logged["msgid"] == env["msgid"] and logged["infno"] == "9001" and logged["committed"]
    assert logged["request"]["input"]["signIn"]["opter_no"] == "T0001"
    assert logged["answer"]["output"]["signinoutb"]["sign_no"] == signinoutb["sign_no"]


def test_every_call_but_sign_in_needs_a_valid_sign_no(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    answer = caller.person_info(person)
    assert (answer["infcode"], answer["err_msg"]) == (-1, MSG_SIGN_NO_MISSING)
    assert answer["output"] is None
    caller.sign_no = "2026010100000000000000000000042"[:30]
    assert caller.person_info(person)["err_msg"] == MSG_SIGN_IN_EXPIRED
    caller.sign_in()
    assert caller.person_info(person)["infcode"] == 0
    # Another institution's sign_no is not ours.
    other = Caller(nhsa_sim, fixmedins_code="P11010500002")
    other.sign_no = caller.sign_no
    assert other.person_info(person)["err_msg"] == MSG_SIGN_IN_EXPIRED
    other.close()


def test_sign_in_expiry_makes_the_caller_sign_in_again(nhsa_sim: NhsaSim, caller: Caller) -> None:
    person = nhsa_sim.person("A10000123")
    caller.sign_in()
    assert caller.person_info(person)["infcode"] == 0
    state = caller.http.post("/_control", json={"sign_in_expiry": True}).json()
    assert state["injected"]["sign_in_expiry"] == 1
    answer = caller.person_info(person)
    assert (answer["infcode"], answer["err_msg"]) == (-1, MSG_SIGN_IN_EXPIRED)
    assert nhsa_sim.calls()[-1]["fault"] == ["sign_in_expired"]
    caller.sign_in()
    assert caller.person_info(person)["infcode"] == 0


def test_a_reused_msgid_is_refused(nhsa_sim: NhsaSim, caller: Caller) -> None:
    caller.sign_in()
    person = nhsa_sim.person("A10000123")
    msgid = new_msgid()
    data = {"mdtrt_cert_type": "03", "mdtrt_cert_no": person.card_number, "card_sn": person.card_sn}
    assert caller.call("1101", data, msgid=msgid)[1]["infcode"] == 0
    _, again = caller.call("1101", data, msgid=msgid)
    assert (again["infcode"], again["err_msg"]) == (-1, MSG_MSGID_REUSED)
    assert [c["msgid"] for c in nhsa_sim.calls()].count(msgid) == 2
    # The msgid of a refused call is used up too.
    refused_id = new_msgid()
    assert caller.call("1101", {**data, "card_sn": "0" * 32}, msgid=refused_id)[1]["infcode"] == -1
    assert caller.call("1101", data, msgid=refused_id)[1]["err_msg"] == MSG_MSGID_REUSED


def _broken(env: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    env = dict(env)
    if value is None:
        env.pop(key)
    else:
        env[key] = value
    return env


@pytest.mark.parametrize(("key", "value", "says"), [
    ("msgid", "P1101050000120261123101500", "30位"),
    ("msgid", "X11010500001202611231015000001", "前12位"),
    ("msgid", f"{FIXMEDINS}202613231015000001", "yyyyMMddHHmmss"),
    ("msgid", f"{FIXMEDINS}2026112310150000a1", "后4位"),
    ("infno", "2207", "交易编号"),
    ("infno", None, "交易编号"),
    ("fixmedins_code", "P110105", "12位"),
    ("fixmedins_name", "", "fixmedins_name"),
    ("mdtrtarea_admvs", "1101", "mdtrtarea_admvs"),
    ("insuplc_admdvs", "11010X", "insuplc_admdvs"),
    ("recer_sys_code", None, "recer_sys_code"),
    ("opter_type", 2, "opter_type"),
    ("opter", "", "opter"),
    ("inf_time", "2026-11-23T10:15:00", "inf_time"),
    ("input", {"signIn": {}}, "input"),
    ("input", None, "input"),
])
def test_a_bad_envelope_is_refused_with_a_reason(nhsa_sim: NhsaSim, caller: Caller, key: str, value: Any,
                                                  says: str) -> None:
    caller.sign_in()
    env = caller.envelope("1101", {"mdtrt_cert_type": "02", "mdtrt_cert_no": "110105198003150039"})
    response = caller.send(_broken(env, key, value))
    assert response.status_code == 200
    answer = decimal_json(response)
    assert answer["infcode"] == -1 and says in answer["err_msg"], answer
    assert not nhsa_sim.calls()[-1]["committed"]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b""])
def test_a_body_that_is_not_an_envelope_is_refused(nhsa_sim: NhsaSim, body: bytes) -> None:
    response = httpx.post(nhsa_sim.url + "/", content=body, timeout=10)
    assert response.status_code == 200
    answer = response.json()
    assert answer["infcode"] == -1 and "报文格式错误" in answer["err_msg"]
    assert nhsa_sim.calls()[-1]["msgid"] is None


def test_only_post_reaches_the_gateway(nhsa_sim: NhsaSim) -> None:
    assert httpx.get(nhsa_sim.url + "/anything", timeout=10).status_code == 405


def test_infcode_as_a_string_when_the_region_does_so(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(infcode_as_string=True)
    response = caller.send(caller.envelope("9001", {"opter_no": "T0001"}))
    assert json.loads(response.content)["infcode"] == "0"


def test_inf_refmsgid_echoes_the_msgid_where_the_region_does_so(nhsa_sim: NhsaSim, caller: Caller) -> None:
    env, answer = caller.call("9001", {"opter_no": "T0001"})
    assert answer["inf_refmsgid"] != env["msgid"] and answer["inf_refmsgid"].startswith("110105")
    nhsa_sim.control(refmsgid_echo=True)
    env, answer = caller.call("9001", {"opter_no": "T0001"})
    assert answer["inf_refmsgid"] == env["msgid"]

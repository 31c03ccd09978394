"""Every run-time fault of the platform simulator, observed from a real HTTP client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.settings import MSG_BUSY, MSG_GATEWAY_TIMEOUT, MSG_MSGID_REUSED, MSG_REFUSED
from tests.sim_nhsa.helpers import Caller, sale_data
from tests.waiting import wait_for

LINES = [("1", "10.00")]
WHEN = "2026-11-23 10:15:00"
LOST = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError)


@pytest.fixture
def caller(nhsa_sim: NhsaSim) -> Iterator[Caller]:
    c = Caller(nhsa_sim)
    c.sign_in()
    yield c
    c.close()


def _settle_env(nhsa_sim: NhsaSim, caller: Caller, sale_id: str) -> dict[str, object]:
    person = nhsa_sim.person("A10000123")
    return caller.envelope("2102", sale_data(person, LINES, sale_id=sale_id, business_time=WHEN),
                           insuplc=person.insuplc_admdvs)


def test_down_refuses_connections_until_up(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(down=True)
    with pytest.raises(httpx.ConnectError):
        httpx.post(nhsa_sim.url + "/", json={}, timeout=2)
    nhsa_sim.control(down=False)
    assert caller.person_info(nhsa_sim.person("A10000123"))["infcode"] == 0


def test_down_for_a_while_over_http(nhsa_sim: NhsaSim, caller: Caller) -> None:
    state = httpx.post(nhsa_sim.url + "/_control", json={"down_for_s": 0.5}, timeout=5).json()
    assert state["faults"]["down"] is True
    wait_for(lambda: _refused(nhsa_sim.url), 5, "the simulator to go down")
    wait_for(lambda: not _refused(nhsa_sim.url), 5, "the simulator to come back")
    assert caller.person_info(nhsa_sim.person("A10000123"))["infcode"] == 0


def _refused(url: str) -> bool:
    try:
        httpx.get(url + "/_control", timeout=1)
    except httpx.ConnectError:
        return True
    return False


def test_latency(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(latency_ms=300)
    started = time.monotonic()
    caller.person_info(nhsa_sim.person("A10000123"))
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(nhsa_sim.url + "/", json=_settle_env(nhsa_sim, caller, "S1"), timeout=0.1)
    # Beyond the caller's timeout the platform still handles the call: an unknown outcome.
    wait_for(lambda: nhsa_sim.standing_settlements(), 5, "the slow settlement to commit")
    assert nhsa_sim.state()["injected"]["latency"] >= 2
    assert nhsa_sim.calls("2102")[0]["fault"] == ["latency"]


def test_5xx_handles_nothing(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(next={"error": 1})
    response = caller.send(_settle_env(nhsa_sim, caller, "S1"))
    assert response.status_code == 503 and b"<html>" in response.content
    nhsa_sim.control(error_status=502, error_rate=1.0)
    assert caller.send(_settle_env(nhsa_sim, caller, "S2")).status_code == 502
    nhsa_sim.control(error_rate=0)
    assert nhsa_sim.settlements() == []
    assert [c["fault"] for c in nhsa_sim.calls("2102")] == [["error"], ["error"]]
    assert all(c["answer"] is None and not c["committed"] for c in nhsa_sim.calls("2102"))


def test_a_reset_handles_nothing_and_uses_up_the_msgid(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(reset_rate=1.0)
    env = _settle_env(nhsa_sim, caller, "S1")
    with pytest.raises(LOST):
        caller.send(env)
    nhsa_sim.control(reset_rate=0)
    assert nhsa_sim.settlements() == [] and nhsa_sim.calls("2102")[0]["fault"] == ["reset"]
    assert caller.send(env).json()["err_msg"] == MSG_MSGID_REUSED


def test_commit_then_drop(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(drop_after_commit_rate=1.0, fault_infnos=["2102"])
    with pytest.raises(LOST):
        caller.send(_settle_env(nhsa_sim, caller, "S1"))
    # Other transactions are not hit.
    assert caller.person_info(nhsa_sim.person("A10000123"))["infcode"] == 0
    [call] = nhsa_sim.calls("2102")
    assert call["committed"] and call["infcode"] == 0 and call["fault"] == ["drop_after_commit"]
    assert len(nhsa_sim.standing_settlements()) == 1


def test_garbage_after_commit(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(next={"garbage": 1})
    response = caller.send(_settle_env(nhsa_sim, caller, "S1"))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert len(nhsa_sim.standing_settlements()) == 1
    assert nhsa_sim.calls("2102")[0]["fault"] == ["garbage"]


def test_a_gateway_timeout_is_a_minus_one_after_commit(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(next={"gateway_timeout": 1}, fault_infnos=["2102"])
    answer = caller.send(_settle_env(nhsa_sim, caller, "S1")).json()
    assert (answer["infcode"], answer["err_msg"], answer["output"]) == (-1, MSG_GATEWAY_TIMEOUT, None)
    # Behind the front end the platform settled: the caller must reverse, not trust the -1.
    [call] = nhsa_sim.calls("2102")
    assert call["committed"] and call["answer"]["infcode"] == 0 and call["fault"] == ["gateway_timeout"]
    assert len(nhsa_sim.standing_settlements()) == 1


def test_busy_is_a_definite_refusal_that_changes_nothing(nhsa_sim: NhsaSim, caller: Caller) -> None:
    nhsa_sim.control(next={"busy": 1})
    response = caller.send(_settle_env(nhsa_sim, caller, "S1"))
    assert (response.json()["infcode"], response.json()["err_msg"]) == (-1, MSG_BUSY)
    assert nhsa_sim.settlements() == [] and nhsa_sim.calls("2102")[0]["fault"] == ["busy"]
    assert caller.send(_settle_env(nhsa_sim, caller, "S1")).json()["infcode"] == 0
    nhsa_sim.control(busy_rate=1.0)
    assert caller.person_info(nhsa_sim.person("A10000123"))["err_msg"] == MSG_BUSY


def test_business_refusals_by_transaction_and_person(nhsa_sim: NhsaSim, caller: Caller) -> None:
    zhang, wang = nhsa_sim.person("A10000123"), nhsa_sim.person("B20000456")
    nhsa_sim.control(refuse={"infno": ["2102"], "persons": ["A10000123"], "message": "该人员存在未结清的住院记录"})
    _, refused = caller.settle(zhang, LINES, sale_id="S1")
    assert (refused["infcode"], refused["err_msg"]) == (-1, "该人员存在未结清的住院记录")
    assert caller.settle(wang, LINES, sale_id="S2")[1]["infcode"] == 0  # another person
    assert caller.person_info(zhang)["infcode"] == 0  # another transaction
    nhsa_sim.control(refuse={"persons": [zhang.certno]})
    assert caller.person_info(zhang)["err_msg"] == MSG_REFUSED
    nhsa_sim.control(refuse={})
    assert caller.settle(zhang, LINES, sale_id="S1")[1]["infcode"] == 0
    assert nhsa_sim.state()["injected"]["refuse"] == 2
    assert [c["fault"] for c in nhsa_sim.calls("2102")] == [["refuse"], [], []]


def test_the_dice_are_reproducible(tmp_path: Path) -> None:
    def outcomes(name: str) -> list[str]:
        sim = NhsaSim(tmp_path / f"{name}.db")
        sim.start()
        caller = Caller(sim)
        try:
            caller.sign_in()
            sim.control(seed=7, busy_rate=0.3, error_rate=0.3, fault_infnos=["1101"])
            seen = []
            for _ in range(20):
                response = caller.send(caller.envelope("1101", {"mdtrt_cert_type": "02",
                                                                "mdtrt_cert_no": "110105198003150039"}))
                seen.append(str(response.status_code) + response.text[:12])
            return [s[:16] for s in seen]
        finally:
            caller.close()
            sim.stop()

    first, second = outcomes("one"), outcomes("two")
    assert first == second and len(set(first)) > 1


def test_control_over_http_validates_everything_before_changing_anything(nhsa_sim: NhsaSim) -> None:
    url = nhsa_sim.url + "/_control"
    bad: object
    for bad in ({"bogus": 1}, {"error_rate": 2}, {"busy_rate": 0.5, "amounts_as": "float"},
                {"fault_infnos": ["9999"]}, {"next": {"explode": 1}}, {"refuse": {"infno": []}},
                {"balance_fen": {"A10000123": -1}}, {"split": {"310": [90, 20]}}, [1]):
        response = httpx.post(url, json=bad, timeout=5)
        assert response.status_code == 400, bad
    state = httpx.get(url, timeout=5).json()
    assert state["faults"]["busy_rate"] == 0 and state["settings"]["amounts_as"] == "number"
    state = httpx.post(url, json={"busy_rate": 0.5, "split": {"310": [60, 30]}}, timeout=5).json()
    assert state["faults"]["busy_rate"] == 0.5 and state["settings"]["split"]["310"] == [60, 30]
    with pytest.raises(ValueError, match="unknown control keys"):
        nhsa_sim.control(nonsense=True)


def test_inspection_over_http(nhsa_sim: NhsaSim, caller: Caller) -> None:
    caller.send(_settle_env(nhsa_sim, caller, "S1"))
    calls = httpx.get(nhsa_sim.url + "/_control/calls?infno=2102", timeout=5).json()
    assert [c["infno"] for c in calls] == ["2102"] and calls[0]["committed"] == 1
    [settlement] = httpx.get(nhsa_sim.url + "/_control/settlements", timeout=5).json()
    assert settlement["sale_id"] == "S1" and settlement["medfee_fen"] == 1000
    assert httpx.get(nhsa_sim.url + "/_control/revokes", timeout=5).json() == []
    assert httpx.get(nhsa_sim.url + "/_control/nothing", timeout=5).status_code == 404

"""A reference caller that follows the contract (unknown outcome -> 2601 until definite -> retry
with a new msgid) gets every sale settled exactly once through every fault at once: the
simulator's semantics are complete enough to build the adapter against."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.persons import Person
from terminald.sim.nhsa.settings import (
    MSG_ALREADY_REVERSED,
    MSG_BUSY,
    MSG_GATEWAY_TIMEOUT,
    MSG_NOTHING_TO_REVERSE,
    MSG_SIGN_IN_EXPIRED,
)
from tests.sim_nhsa.helpers import Caller, sale_data


class Careful:
    """Exactly once without an idempotency key, by the contract's rules."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.unknown = 0

    def send(self, env: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        try:
            response = self.caller.send(env)
            answer = json.loads(response.content, parse_float=Decimal) if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            answer = None
        if not isinstance(answer, dict) or answer.get("infcode") not in (0, -1) or (
                answer["infcode"] == -1 and answer["err_msg"] == MSG_GATEWAY_TIMEOUT):
            self.unknown += 1
            return "unknown", None
        return ("ok" if answer["infcode"] == 0 else "refused"), answer

    def sign_in(self) -> None:
        while True:
            outcome, answer = self.send(self.caller.envelope("9001", {"opter_no": "T0001"}))
            if outcome == "ok" and answer:
                self.caller.sign_no = answer["output"]["signinoutb"]["sign_no"]
                return

    def _retry_later(self, answer: dict[str, Any]) -> bool:
        if answer["err_msg"] == MSG_SIGN_IN_EXPIRED:
            self.sign_in()
            return True
        return bool(answer["err_msg"] == MSG_BUSY)

    def once(self, infno: str, data: dict[str, Any], person: Person) -> dict[str, Any]:
        while True:
            env = self.caller.envelope(infno, data, insuplc=person.insuplc_admdvs)
            outcome, answer = self.send(env)
            if outcome == "ok" and answer:
                return answer
            if outcome == "refused" and answer:
                if self._retry_later(answer):
                    continue
                raise AssertionError(f"refused: {answer['err_msg']}")
            self.reverse(str(env["msgid"]), infno, person)

    def reverse(self, omsgid: str, oinfno: str, person: Person) -> None:
        while True:
            env = self.caller.envelope("2601", {"psn_no": person.psn_no, "omsgid": omsgid, "oinfno": oinfno},
                                       insuplc=person.insuplc_admdvs)
            outcome, answer = self.send(env)
            if outcome == "ok":
                return
            if outcome == "refused" and answer:
                if answer["err_msg"] in (MSG_NOTHING_TO_REVERSE, MSG_ALREADY_REVERSED):
                    return
                if not self._retry_later(answer):
                    raise AssertionError(f"2601 refused: {answer['err_msg']}")


@pytest.fixture
def careful(nhsa_sim: NhsaSim) -> Iterator[Careful]:
    caller = Caller(nhsa_sim, timeout=5)
    yield Careful(caller)
    caller.close()


def test_every_sale_and_revoke_stands_exactly_once_through_every_fault(nhsa_sim: NhsaSim, careful: Careful) -> None:
    nhsa_sim.control(seed=2026, reset_rate=0.12, error_rate=0.08, drop_after_commit_rate=0.15, garbage_rate=0.08,
                     busy_rate=0.08, gateway_timeout_rate=0.05)
    careful.sign_in()
    people = [nhsa_sim.person(k) for k in ("A10000123", "B20000456", "C30000789", "E50000654", "31011519850612203X")]
    expected: dict[str, dict[str, Any]] = {}
    for n in range(40):
        person = people[n % len(people)]
        sale, when = f"T{n:03d}", f"2026-11-{10 + n % 10:02d} 1{n % 10}:00:00"
        lines = [("1", f"{3 + n}.{n % 100:02d}"), ("2", "4.50")]
        answer = careful.once("2102", sale_data(person, lines, sale_id=sale, business_time=when), person)
        setlinfo = answer["output"]["setlinfo"]
        expected[sale] = {"business_time": when, "medfee_fen": int(setlinfo["medfee_sumamt"] * 100), "revoked": False}
        if n % 7 == 3:
            careful.once("2103", {"setl_id": setlinfo["setl_id"], "mdtrt_id": setlinfo["mdtrt_id"],
                                  "psn_no": person.psn_no}, person)
            expected[sale]["revoked"] = True
        if n == 20:
            nhsa_sim.control(sign_in_expiry=True)
    injected = nhsa_sim.state()["injected"]
    assert {"reset", "error", "drop_after_commit", "garbage", "busy", "gateway_timeout"} <= set(injected)
    assert careful.unknown >= 10
    nhsa_sim.assert_money_consistent(expected)
    assert len(nhsa_sim.standing_revokes()) == sum(1 for e in expected.values() if e["revoked"])
    assert any(s["status"] == "reversed" for s in nhsa_sim.settlements())  # reversals really happened

"""Card errors as problem+json: the status word as the 4 hex digits people write."""

from __future__ import annotations

import json
from collections.abc import Callable

from drivers.cards.errors import CardLocked, CardUnreadable
from terminald.api.problems import from_exception
from tests.api.helpers import assert_problem
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.pcsc import reader_name
from tests.waiting import wait_for


def _problem(exc: Exception) -> dict[str, object]:
    response = from_exception(exc)
    body: dict[str, object] = json.loads(bytes(response.body))
    return body


def test_sw_is_four_upper_case_hex_digits() -> None:
    problem = _problem(CardUnreadable("select SSSE: file or record not found (SW 6A82)", sw=0x6A82))
    assert problem["status"] == 422 and problem["code"] == "card_unreadable"
    assert problem["sw"] == "6A82"  # not 27266
    assert _problem(CardLocked("select SSSE: locked (SW 9303)", sw=0x9303))["sw"] == "9303"
    assert _problem(CardUnreadable("wrong PIN", sw=0x63C2, tries_left=2))["sw"] == "63C2"
    assert _problem(CardUnreadable("short", sw=0x0090))["sw"] == "0090"  # leading zeros kept


def test_no_status_word_no_sw() -> None:
    problem = _problem(CardUnreadable("card removed during the read", retry_allowed=True))
    assert "sw" not in problem and problem["retry_allowed"] is True


def test_the_problem_schema_says_sw_is_a_string() -> None:
    from terminald.api.problems import PROBLEM_SCHEMA

    assert PROBLEM_SCHEMA["properties"]["sw"]["type"] == "string"


def test_no_pcscd_is_no_reader(daemon_proc: Callable[..., DaemonProcess]) -> None:
    """pcscd not running: 503 no_reader (at once: tests/cards/test_contexts.py proves the read
    does not wait for pcscd, whatever its timeout_s)."""
    # The PC/SC client library is pointed at a socket nobody listens on: pcscd "not running".
    d = daemon_proc(env={"PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"})
    api = d.client()
    wait_for(lambda: api.get("/v1/devices").json()["reader_state"] == "pcscd_unavailable", 10,
             what="the card service to report pcscd unavailable")
    problem = assert_problem(api.post("/v1/card/read", json={"timeout_s": 10}), 503, "no_reader")
    assert "pcscd" in problem["detail"]
    assert_problem(api.post("/v1/card/read", json={"reader": reader_name(0), "timeout_s": 10}), 503, "no_reader")

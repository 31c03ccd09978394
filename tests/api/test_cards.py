"""POST /v1/card/read through real pcscd + vpcd + the card emulator, and card_read_id in transactions."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from terminald.sim.card import CARDS_DIR, load_card
from tests.api.helpers import assert_problem, post_tx, sale
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.pcsc import reader_name
from tests.waiting import wait_for

pytestmark = pytest.mark.pcsc

SLOT0, SLOT1 = reader_name(0), reader_name(1)


def test_read_then_record_with_card_read_id(vcard: Any, daemon_proc: Callable[..., DaemonProcess]) -> None:
    vcard("ssc2", slot=0)
    api = daemon_proc().client()
    r = api.post("/v1/card/read", json={"reader": SLOT0, "timeout_s": 5})
    assert r.status_code == 200, r.text
    read = r.json()
    assert read["card_read_id"].startswith("cr_") and read["reader"] == SLOT0 and read["atr"]
    card = read["card"]
    for key in ("card_number", "ssn", "name", "sex", "birth_date", "nation", "issuer_code", "issued_on",
                "expires_on", "card_type", "spec_version", "card_identifier"):
        assert key in card, key
    assert card["card_number"] and len(card["ssn"]) == 18

    devices = api.get("/v1/devices").json()
    assert any(rd["name"] == SLOT0 and rd["card_present"] for rd in devices["readers"]), devices

    # Offline (no upstream) a physically read card passes the policy; the record says so.
    tx = post_tx(api, sale(card_read_id=read["card_read_id"]), "with-card")
    assert tx.status_code == 202, tx.text
    assert tx.json()["card_present"] is True
    assert tx.json()["card"]["card_number"] == card["card_number"]
    assert card["ssn"] not in tx.text and card["name"] not in tx.text
    # A retry of that sale (same key) still passes: the stored answer.
    again = post_tx(api, sale(card_read_id=read["card_read_id"]), "with-card")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == tx.json()["id"]


def test_a_card_read_backs_one_sale(vcard: Any, daemon_proc: Callable[..., DaemonProcess]) -> None:
    vcard("ssc2", slot=0)
    api = daemon_proc().client()
    first = api.post("/v1/card/read", json={"reader": SLOT0, "timeout_s": 5}).json()["card_read_id"]
    sold = post_tx(api, sale(card_read_id=first), "sale-1")
    assert sold.status_code == 202, sold.text
    # Another sale with the same read: refused; the card is read again for it.
    assert_problem(post_tx(api, sale(card_read_id=first), "sale-2"), 422, "card_read_used")
    # The first sale, retried, is still answered.
    assert post_tx(api, sale(card_read_id=first), "sale-1").status_code == 200
    second = api.post("/v1/card/read", json={"reader": SLOT0, "timeout_s": 5}).json()["card_read_id"]
    assert second != first
    again = post_tx(api, sale(card_read_id=second), "sale-2")
    assert again.status_code == 202, again.text
    assert again.json()["card"]["card_number"] == sold.json()["card"]["card_number"]


def test_read_errors(vcard: Any, vpcd_slots: None, daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc().client()
    # An empty slot: waited for, then 408.
    assert_problem(api.post("/v1/card/read", json={"reader": SLOT1, "timeout_s": 0.3}), 408, "no_card")
    assert_problem(api.post("/v1/card/read", json={"reader": "No Such Reader 00 00"}), 503, "no_reader")

    vcard("locked", slot=1)
    problem = assert_problem(api.post("/v1/card/read", json={"reader": SLOT1, "timeout_s": 2}),
                             422, "card_locked")
    assert problem["sw"] == "9303", problem  # the 4 hex digits, never the integer

    vcard("foreign", slot=1)
    problem = assert_problem(api.post("/v1/card/read", json={"reader": SLOT1, "timeout_s": 2}),
                             422, "card_unreadable")
    assert problem["sw"] == "6A82", problem

    for body in ({"timeout_s": 61}, {"timeout_s": -1}, {"reader": "x" * 129}, {"extra": 1}, [1]):
        assert_problem(api.post("/v1/card/read", json=body), 422, "validation_failed")


def test_no_reader_configured(daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc(config='[card]\nreaders = ["Reader that is not attached"]\n').client()
    assert_problem(api.post("/v1/card/read", json={}), 503, "no_reader")
    assert api.get("/v1/status").json()["devices"]["readers"] == []


def test_reader_busy(vcard: Any, daemon_proc: Callable[..., DaemonProcess]) -> None:
    # A slow card (each APDU answered after 150 ms) keeps the reader busy for a second or so.
    slow = dataclasses.replace(load_card(CARDS_DIR / "ssc2.toml"), answer_delay_ms=150)
    vcard(slow, slot=0)
    d = daemon_proc()
    answers: list[httpx.Response] = []

    def read() -> None:
        with httpx.Client(base_url=d.url, headers={"Authorization": f"Bearer {d.token}"}, timeout=30) as c:
            answers.append(c.post("/v1/card/read", json={"reader": SLOT0, "timeout_s": 5}))

    first = threading.Thread(target=read)
    first.start()
    wait_for(lambda: any(r["state"] == "busy" for r in d.client().get("/v1/devices").json()["readers"]),
             timeout_s=10, what="the reader to be busy")
    read()
    first.join(30)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 409], [r.text for r in answers]
    assert_problem(next(r for r in answers if r.status_code == 409), 409, "reader_busy")

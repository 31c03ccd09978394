"""Re-entry that needs the patient, through the real HTTP API of a daemon speaking `nhsa` to the
platform simulator, with cards read through pcscd and the card emulator.

As an integrator calls it: default parameters (no `wait`), outage sales that wait for their
patient, a card read that lists them (and its event), `resettle` with the patient's card (and
its retry), another person's card refused, a new sale of the person releasing their waiting
sales first (the person's order at central holds), a revoke of a waiting sale, and a release
that a restart forgets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from terminald.sim.nhsa import NhsaSim
from tests.api.helpers import TYPED_CARD, assert_problem, item, post_tx, revoke, sale
from tests.api.sse import EventStream
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.pcsc import reader_name
from tests.waiting import wait_for

pytestmark = pytest.mark.pcsc

P1_SLOT, P2_SLOT = 0, 1  # ssc2: 张伟; ssc2_t0: 王秀英, another person
NHSA = """\
[terminal]
id = "T0001"
[upstream]
url = "{url}"
protocol = "nhsa"
[nhsa]
fixmedins_code = "P11010100001"
fixmedins_name = "示例大药房"
mdtrtarea_admvs = "110101"
recer_sys_code = "TERMINALD"
reentry = "patient_present"
"""


def read(api: httpx.Client, slot: int) -> dict[str, Any]:
    r = api.post("/v1/card/read", json={"reader": reader_name(slot), "timeout_s": 5})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def sell(api: httpx.Client, key: str, card_read_id: str, fen: int, expect: int) -> dict[str, Any]:
    """A sale as a POS sends it: no `wait` (the configured default)."""
    body = sale(card_read_id=card_read_id, items=[item(qty=1, unit_price_fen=fen)], meta={"pos_order_id": key},
                contact_phone="13800138000")
    r = post_tx(api, body, key, wait=None)
    assert r.status_code == expect, r.text
    return r.json()  # type: ignore[no-any-return]


def notice_outage(api: httpx.Client, key: str, card: dict[str, str]) -> dict[str, Any]:
    """The daemon notices the platform is down with a sale it cannot send: the card typed in
    (nobody proved at the counter), so it waits for its patient. Sales made once the daemon
    knows are outage sales in their commit: no wait that a patient at the counter outlasts (a
    sale of a patient here that is answered "pending" after its wait is released with them)."""
    r = post_tx(api, sale(card=card, meta={"pos_order_id": key}), key, wait=None)
    assert r.status_code == 202 and r.json()["awaiting_patient"] is True, r.text
    wait_for(lambda: not online(api), 30, "the daemon to see the platform down")
    return r.json()  # type: ignore[no-any-return]


def resettle(api: httpx.Client, tx_id: str, card_read_id: str) -> httpx.Response:
    return api.post(f"/v1/transactions/{tx_id}/resettle", json={"card_read_id": card_read_id})


def get(api: httpx.Client, tx_id: str) -> dict[str, Any]:
    r = api.get(f"/v1/transactions/{tx_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def online(api: httpx.Client) -> bool:
    return api.get("/v1/status").json()["mode"] == "online"  # type: ignore[no-any-return]


def settled_fen(sim: NhsaSim) -> list[int]:
    """The standing settlements' totals, in the order the platform took them."""
    return [s["medfee_fen"] for s in sim.settlements() if s["status"] == "standing"]


def test_outage_sales_wait_for_their_patient_and_are_resettled(
        nhsa_sim: NhsaSim, vcard: Any, daemon_proc: Callable[..., DaemonProcess]) -> None:
    vcard("ssc2", slot=P1_SLOT)
    vcard("ssc2_t0", slot=P2_SLOT)
    d = daemon_proc(config=NHSA.format(url=nhsa_sim.url))
    api = d.client()
    wait_for(lambda: online(api), 30, "the link online")

    # The platform goes down (the daemon sees it: its idle probe): three outage sales (two of
    # person 1, one of person 2), a revoke.
    nhsa_sim.control(down=True)
    x = notice_outage(api, "X", TYPED_CARD)
    a = sell(api, "A", read(api, P1_SLOT)["card_read_id"], 2500, 202)
    b_read = read(api, P1_SLOT)["card_read_id"]
    b = sell(api, "B", b_read, 3000, 202)
    c = sell(api, "C", read(api, P2_SLOT)["card_read_id"], 1800, 202)
    for tx in (a, b, c):
        assert tx["status"] == "pending" and tx["offline"] is True and tx["awaiting_patient"] is True, tx
    b_rev = post_tx(api, {**revoke(b["id"]), "meta": {"pos_order_id": "B"}}, "B-rev", wait=None)
    assert b_rev.status_code == 202 and b_rev.json()["awaiting_patient"] is True, b_rev.text

    listed = api.get("/v1/transactions", params={"awaiting_patient": "true"}).json()
    assert [t["id"] for t in listed["items"]] == [x["id"], a["id"], b["id"], c["id"], b_rev.json()["id"]]
    assert api.get("/v1/transactions", params={"awaiting_patient": "false"}).json()["items"] == []
    follow = api.get("/v1/followups").json()
    waiting = [i for i in follow["items"] if i["reason"] == "awaiting_patient"]
    assert [i["id"] for i in waiting] == [x["id"], a["id"], b["id"], c["id"]] and follow["awaiting_patient"] == 4
    assert waiting[1]["card"]["card_number"] != a["card"]["card_number"]  # masked
    assert waiting[1]["contact_phone_masked"] == "138****8000" and waiting[1]["owed_fen"] == 0

    # The platform is back; nothing of theirs is sent without the patient.
    nhsa_sim.control(down=False)
    wait_for(lambda: online(api), 40, "the link online again")
    assert settled_fen(nhsa_sim) == []
    assert get(api, a["id"])["awaiting_patient"] is True

    with EventStream(d) as stream:
        # Person 2 at the counter: their read lists C; it cannot re-settle person 1's sale.
        p2 = read(api, P2_SLOT)
        assert [s["id"] for s in p2["awaiting_patient"]] == [c["id"]]
        event = stream.wait_for("reentry.awaiting_patient")
        assert [s["id"] for s in event.data["items"]] == [c["id"]]
        assert p2["card"]["ssn"] not in str(event.data) and p2["card"]["card_number"] not in str(event.data)
    assert_problem(resettle(api, a["id"], p2["card_read_id"]), 409, "card_read_other_person")
    assert_problem(resettle(api, a["id"], "cr_unknown"), 422, "card_read_unknown")
    assert_problem(resettle(api, a["id"], b_read), 422, "card_read_used")  # it backs sale B
    assert settled_fen(nhsa_sim) == []

    # Person 1 is back: their read lists A and B (B revoked); re-settling B releases A first.
    p1 = read(api, P1_SLOT)
    assert [(s["id"], s["total_fen"], s["paid_at_counter_fen"], s["pos_order_id"], s["revoked_by"])
            for s in p1["awaiting_patient"]] == [(a["id"], 2500, 2500, "A", None),
                                                 (b["id"], 3000, 3000, "B", b_rev.json()["id"])]
    r = resettle(api, b["id"], p1["card_read_id"])
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "settled" and done["awaiting_patient"] is False
    split = done["settlement"]
    assert split["fund_paid_fen"] + split["account_paid_fen"] + split["cash_paid_fen"] == 3000
    assert get(api, a["id"])["status"] == "settled"
    assert settled_fen(nhsa_sim) == [2500, 3000]  # the person's order
    # A retry answers the state and sends nothing again; so does one for A (released with B).
    again = resettle(api, b["id"], p1["card_read_id"])
    assert again.status_code == 200 and again.json()["settlement"] == split, again.text
    assert resettle(api, a["id"], p1["card_read_id"]).status_code == 200
    # The revoke follows its original to the platform.
    wait_for(lambda: get(api, b_rev.json()["id"])["status"] == "settled", 30, "the revoke settled")
    assert len(nhsa_sim.revokes()) == 1 and len(nhsa_sim.settlements()) == 2
    # The refund owed for A (the patient paid in full) is a follow-up now; B was revoked.
    reasons = {i["id"]: i["reason"] for i in api.get("/v1/followups").json()["items"]}
    assert reasons == {a["id"]: "refund", c["id"]: "awaiting_patient", x["id"]: "awaiting_patient"}

    # Person 2 buys again: C is released first and reaches the platform before the new sale.
    d_sale = sell(api, "D", read(api, P2_SLOT)["card_read_id"], 4200, 201)
    assert d_sale["status"] == "settled", d_sale
    wait_for(lambda: get(api, c["id"])["status"] == "settled", 30, "C settled")
    assert settled_fen(nhsa_sim) == [2500, 3000, 1800, 4200]
    assert resettle(api, c["id"], read(api, P2_SLOT)["card_read_id"]).status_code == 200  # decided: its state
    awaiting = api.get("/v1/transactions", params={"awaiting_patient": "true"}).json()["items"]
    assert [t["id"] for t in awaiting] == [x["id"]]  # typed in: its patient never came back
    assert nhsa_sim.money_problems() == []

    # Released while the platform is down: 202; the release does not survive a restart.
    nhsa_sim.control(down=True)
    notice_outage(api, "Y", {**TYPED_CARD, "card_number": "A10000002", "ssn": "11010119900101123X"})
    e = sell(api, "E", read(api, P1_SLOT)["card_read_id"], 990, 202)
    assert e["awaiting_patient"] is True
    r = resettle(api, e["id"], read(api, P1_SLOT)["card_read_id"])
    assert r.status_code == 202 and r.json()["status"] == "pending" and r.json()["awaiting_patient"] is False
    d.restart()
    api = d.client()
    assert get(api, e["id"])["awaiting_patient"] is True
    assert [s["id"] for s in read(api, P1_SLOT)["awaiting_patient"]] == [e["id"]]


def test_resettle_of_a_sale_that_does_not_wait(daemon_proc: Callable[..., DaemonProcess]) -> None:
    """Without `patient_present` every outage sale is re-entered by itself: nothing to resettle."""
    api = daemon_proc(config="[offline]\nrequire_card_present = false\n").client()
    tx = post_tx(api, sale(), "k-1", wait=None)
    assert tx.status_code == 202 and tx.json()["awaiting_patient"] is False, tx.text
    problem = assert_problem(resettle(api, tx.json()["id"], "cr_x"), 409, "not_awaiting_patient")
    assert problem["transaction_status"] == "pending"
    assert_problem(api.post(f"/v1/transactions/{tx.json()['id']}/resettle", json={}), 422, "validation_failed")
    assert_problem(resettle(api, "nope", "cr_x"), 404, "not_found")
    assert api.get("/v1/followups").json()["awaiting_patient"] == 0

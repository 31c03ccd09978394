"""`[nhsa] reentry = "patient_present"` end to end (issue #14, "Tests"): cards read through pcscd
and the card emulator, a real daemon, the platform simulator.

The platform is down: 张伟 (slot 0) buys twice, 王秀英 (slot 1) once, at the counter with their
cards: outage sales, the patients pay in full; a third person's sale settled before is revoked
(first: it finds the platform down).
The platform comes back; the revoke re-enters by itself, so the uploader has been round the
backlog: nothing of the waiting sales reached the platform (its call log is checked). 张伟 comes
back: the card read answers with his two outage sales and an event lists them; `resettle` with
that read settles them at the platform, in his order, each with its own business time and the
real split (统筹 / 个人账户 / 现金) the spool then keeps. 王秀英's sale waits on until she is back too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from terminald.sim.nhsa import NhsaSim
from tests.api.sse import EventStream
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.pcsc import reader_name
from tests.nhsa_e2e.helpers import (
    TZ,
    Pos,
    assert_calllog_closed,
    check_books,
    link_state,
    nhsa_config,
    sale_id,
    transactions,
    wire_time,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.pcsc

ZHANG, WANG, OTHER = "A10000123", "B20000456", "C30000789"  # ssc2 (slot 0), ssc2_t0 (slot 1), typed in


def read(api: httpx.Client, slot: int) -> dict[str, Any]:
    r = api.post("/v1/card/read", json={"reader": reader_name(slot), "timeout_s": 5})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def resettle(api: httpx.Client, tx_id: str, card_read_id: str) -> httpx.Response:
    """As the POS calls it: default parameters."""
    return api.post(f"/v1/transactions/{tx_id}/resettle", json={"card_read_id": card_read_id})


def mentions(call: dict[str, Any], person: Any) -> bool:
    """Does this call at the platform concern `person` (by psn_no, ID number or card number)?"""
    text = str(call["request"])
    return call["psn_no"] == person.psn_no or person.certno in text or person.card_number in text


def test_outage_sales_wait_for_their_patient_then_settle_at_the_platform(
        nhsa_sim: NhsaSim, vcard: Any, daemon_proc: Callable[..., DaemonProcess]) -> None:
    sim = nhsa_sim
    zhang, wang = sim.person(ZHANG), sim.person(WANG)
    vcard("ssc2", slot=0)
    vcard("ssc2_t0", slot=1)
    d = daemon_proc(config=nhsa_config(sim.url, reentry="patient_present"))
    api = d.client()
    wait_for(lambda: link_state(api) == "online", 20, "the daemon signed in")
    pos = Pos(api, "pp")
    other = pos.sell(sim.person(OTHER), 1200)
    assert other["status"] == "settled", other

    # The platform is down: a revoke finds it so (a sale made with a card read before the daemon
    # knows would go as soon as the platform is back: its patient was here). Then the patients
    # buy with their cards.
    sim.control(down=True)
    undo = pos.revoke(other)
    assert undo["status"] == "pending" and undo["awaiting_patient"] is False, undo
    earlier = datetime.now(TZ).replace(microsecond=0) - timedelta(hours=3)
    z1 = pos.sell(zhang, 5833, card_read_id=read(api, 0)["card_read_id"], business_time=earlier, lines=3)
    z2 = pos.sell(zhang, 2500, card_read_id=read(api, 0)["card_read_id"])
    w1 = pos.sell(wang, 1800, card_read_id=read(api, 1)["card_read_id"])
    for tx in (z1, z2, w1):
        assert (tx["status"], tx["offline"], tx["awaiting_patient"], tx["paid_at_counter_fen"]) == (
            "pending", True, True, tx["total_fen"]), tx

    # Back: the revoke goes by itself; the waiting sales stay here.
    sim.control(down=False)
    wait_for(lambda: api.get(f"/v1/transactions/{undo['id']}").json()["status"] == "settled", 40,
             "the revoke re-entered")
    assert link_state(api) == "online"
    waiting = api.get("/v1/transactions", params={"awaiting_patient": "true"}).json()["items"]
    assert [t["id"] for t in waiting] == [z1["id"], z2["id"], w1["id"]]
    assert [c for c in sim.calls() if mentions(c, zhang) or mentions(c, wang)] == []

    # 张伟 is back at the counter: the read lists his two outage sales, and so does an event.
    with EventStream(d) as stream:
        back = read(api, 0)
        event = stream.wait_for("reentry.awaiting_patient")
    listed = [(s["id"], s["total_fen"], s["paid_at_counter_fen"], s["business_time"]) for s in back["awaiting_patient"]]
    assert listed == [(z1["id"], 5833, 5833, z1["business_time"]), (z2["id"], 2500, 2500, z2["business_time"])]
    assert [s["id"] for s in event.data["items"]] == [z1["id"], z2["id"]]
    assert zhang.certno not in str(event.data) and zhang.card_number not in str(event.data)
    assert [c for c in sim.calls() if mentions(c, zhang)] == []  # a read sends nothing

    # Re-settled with that read: the later sale releases the earlier one first (his order at the
    # platform holds); asked again for the earlier one, its state. Each with its business time.
    r = resettle(api, z2["id"], back["card_read_id"])
    assert r.status_code == 200, r.text
    again = resettle(api, z1["id"], back["card_read_id"])
    assert again.status_code == 200, again.text
    done = [again.json(), r.json()]
    for tx in done:
        assert tx["status"] == "settled" and tx["awaiting_patient"] is False, tx
    standing = {s["sale_id"]: s for s in sim.standing_settlements()}
    for tx in done:
        s, mine = standing[sale_id(tx["id"])], tx["settlement"]
        assert s["psn_no"] == zhang.psn_no
        assert s["begntime"] == wire_time(tx["business_time"]) and {
            line["sel_retn_time"] for line in s["details"]} == {s["begntime"]}
        assert (mine["fund_paid_fen"], mine["account_paid_fen"], mine["cash_paid_fen"]) == (
            s["fund_fen"], s["acct_fen"], s["cash_fen"])
    assert standing[sale_id(z1["id"])]["begntime"] == earlier.strftime("%Y-%m-%d %H:%M:%S")
    # The real split, as the simulator's rule makes it for an employee (310: 70 % fund, 20 % account).
    assert (done[0]["settlement"]["fund_paid_fen"], done[0]["settlement"]["account_paid_fen"],
            done[0]["settlement"]["cash_paid_fen"]) == (4083, 1167, 583)
    # The patient paid in full at the counter: the fund's and the account's shares are owed back.
    assert done[0]["refund_owed_fen"] == 4083 + 1167
    assert [s["sale_id"] for s in sim.standing_settlements() if s["psn_no"] == zhang.psn_no] == [
        sale_id(z1["id"]), sale_id(z2["id"])]

    # 王秀英 has not been back: hers still waits, and nothing of hers reached the platform.
    assert api.get(f"/v1/transactions/{w1['id']}").json()["awaiting_patient"] is True
    assert [c for c in sim.calls() if mentions(c, wang)] == []
    # Now she is.
    r = resettle(api, w1["id"], read(api, 1)["card_read_id"])
    assert r.status_code == 200 and r.json()["status"] == "settled", r.text
    check_books(sim, transactions(api), pos.persons)
    assert_calllog_closed(d.state_dir / "spool.db")

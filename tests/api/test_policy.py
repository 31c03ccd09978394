"""The offline policy (frozen list, limits, card present, card expired): applied only when not online.

Online, central decides: a frozen card is recorded and central rejects it,
which also gives a rejected record to resolve.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from terminald.sim.central import CentralSim
from tests.api.helpers import assert_problem, central_config, item, post_tx, revoke, sale
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.pcsc import reader_name
from tests.waiting import wait_for

FROZEN_CARD = "F60000987"


def read_card(api: httpx.Client, slot: int = 0) -> dict[str, Any]:
    r = api.post("/v1/card/read", json={"reader": reader_name(slot), "timeout_s": 5})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def test_card_not_present_offline(daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc().client()
    problem = assert_problem(post_tx(api, sale(), "typed"), 403, "card_not_present")
    assert "card_read_id" in problem["detail"]
    assert api.get("/v1/status").json()["spool"]["last_seq"] == 0


def test_offline_limits(daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc(config="[offline]\nrequire_card_present = false\nmax_tx_fen = 5000\n"
                             "max_total_fen = 10000\n").client()
    problem = assert_problem(post_tx(api, sale(items=[item(qty=1, unit_price_fen=5001)]), "tx-over"),
                             403, "offline_limit_exceeded")
    assert problem["limit_fen"] == 5000
    assert post_tx(api, sale(items=[item(qty=1, unit_price_fen=5000)]), "at-limit").status_code == 202
    assert post_tx(api, sale(items=[item(qty=1, unit_price_fen=4000)]), "second").status_code == 202
    problem = assert_problem(post_tx(api, sale(items=[item(qty=1, unit_price_fen=1001)]), "total-over"),
                             403, "offline_limit_exceeded")
    assert problem["limit_fen"] == 10000
    assert post_tx(api, sale(items=[item(qty=1, unit_price_fen=1000)]), "exactly-total").status_code == 202
    # A refusal consumes neither the key nor a seq.
    assert api.get("/v1/status").json()["spool"]["last_seq"] == 3
    assert post_tx(api, sale(items=[item(qty=1, unit_price_fen=1)]), "tx-over").status_code == 403
    # At the limit, a repeat of a recorded sale still gets its stored answer, not a refusal.
    repeat = post_tx(api, sale(items=[item(qty=1, unit_price_fen=4000)]), "second")
    assert repeat.status_code == 200 and repeat.json()["seq"] == 2
    # A revoke is not a new offline risk: it is taken even at the limit.
    first = api.get("/v1/transactions").json()["items"][0]
    assert post_tx(api, revoke(first["id"]), "revoke-at-limit").status_code == 202


def test_concurrent_sales_cannot_pass_the_total_limit_together(
        daemon_proc: Callable[..., DaemonProcess]) -> None:
    # The total is decided inside the spool's commit: sales racing each other into one group
    # commit are counted one after the other, never each against the same old total.
    d = daemon_proc(config="[offline]\nrequire_card_present = false\nmax_total_fen = 10000\n")
    api = d.client()
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(
            lambda n: post_tx(d.client(), sale(items=[item(qty=1, unit_price_fen=1000)], meta={"n": n}),
                              f"race-{n}"),
            range(16)))
    assert sorted(r.status_code for r in answers) == [202] * 10 + [403] * 6
    for refused in (r for r in answers if r.status_code == 403):
        assert assert_problem(refused, 403, "offline_limit_exceeded")["limit_fen"] == 10000
    spool = api.get("/v1/status").json()["spool"]
    assert spool["last_seq"] == 10 and spool["pending_amount_fen"] == 10000


@pytest.mark.pcsc
def test_card_expired_offline_but_not_online(vcard: Any, central_sim: CentralSim,
                                            daemon_proc: Callable[..., DaemonProcess]) -> None:
    vcard("expired", slot=0)
    offline = daemon_proc().client()
    read = read_card(offline)
    assert read["card"]["expires_on"] < "2025-01-01"
    problem = assert_problem(post_tx(offline, sale(card_read_id=read["card_read_id"]), "exp"),
                             403, "card_expired")
    assert read["card"]["expires_on"] in problem["detail"]

    online = daemon_proc(config=central_config(central_sim.url)).client()
    wait_for(lambda: online.get("/v1/status").json()["mode"] == "online", what="online")
    read = read_card(online)
    r = post_tx(online, sale(card_read_id=read["card_read_id"]), "exp-online", wait=10)
    assert r.status_code == 201, r.text
    assert r.json()["status"] in ("settled", "rejected") and r.json()["offline"] is False


@pytest.mark.pcsc
def test_frozen_card_online_then_offline(vcard: Any, central_sim: CentralSim,
                                        daemon_proc: Callable[..., DaemonProcess]) -> None:
    central_sim.control(freeze=[FROZEN_CARD])
    vcard("frozen", slot=0)
    d = daemon_proc(config=central_config(central_sim.url))
    api = d.client()
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "online", what="online")

    # Online: recorded, and central decides (rejects).
    read = read_card(api)
    assert read["card"]["card_number"] == FROZEN_CARD
    r = post_tx(api, sale(card_read_id=read["card_read_id"]), "frozen-online", wait=10)
    assert r.status_code == 201, r.text
    rejected = r.json()
    assert rejected["status"] == "rejected" and rejected["rejection"]["code"] == "card_frozen"
    assert api.get("/v1/status").json()["spool"]["rejected_unresolved"] == 1

    # A rejected settlement cannot be revoked; staff resolve it, once.
    assert_problem(post_tx(api, revoke(rejected["id"]), "revoke-rejected"), 409, "not_revocable")
    resolved = api.post(f"/v1/transactions/{rejected['id']}/resolve",
                        json={"resolution": "self_pay", "note": "patient paid cash"})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolution"]
    assert_problem(api.post(f"/v1/transactions/{rejected['id']}/resolve", json={"resolution": "voided"}),
                   409, "invalid_transition")
    assert api.get("/v1/transactions", params={"status": "resolved"}).json()["items"][0]["id"] == rejected["id"]

    # Central goes away; once the daemon knows, the frozen list it synced is applied locally.
    central_sim.control(down=True)
    # Each sale needs its own read: a card read proves the card was here for one sale.
    other = post_tx(api, sale(card_read_id=read_card(api)["card_read_id"], meta={"n": 2}), "while-going-down",
                    wait=1)
    assert other.status_code in (201, 202), other.text
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "offline", timeout_s=30, what="offline")
    seq_before = api.get("/v1/status").json()["spool"]["last_seq"]
    assert_problem(post_tx(api, sale(card_read_id=read_card(api)["card_read_id"]), "frozen-offline"), 403,
                   "card_frozen")
    assert api.get("/v1/status").json()["spool"]["last_seq"] == seq_before

    # The frozen list outlives a restart (it is kept in the spool file).
    d.restart()
    api = d.client()
    vcard("frozen", slot=0)
    read = read_card(api)
    wait_for(lambda: api.get("/v1/status").json()["mode"] != "online", timeout_s=30, what="not online")
    assert_problem(post_tx(api, sale(card_read_id=read["card_read_id"]), "frozen-restart"), 403, "card_frozen")


def test_typed_card_online_is_decided_by_central(central_sim: CentralSim,
                                               daemon_proc: Callable[..., DaemonProcess]) -> None:
    # Typed cards are refused offline by default; online, central decides them.
    api = daemon_proc(config=central_config(central_sim.url)).client()
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "online", what="online")
    r = post_tx(api, sale(), "typed-online", wait=10)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "settled" and r.json()["card_present"] is False
    assert r.json()["settlement"]["central_ref"]


def test_backlog_with_central_up_is_not_policed(central_sim: CentralSim,
                                               daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc(config=central_config(central_sim.url)
                      + "[offline]\nmax_tx_fen = 100\n").client()
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "online", what="online")
    central_sim.control(latency_ms=1500)  # the first record stays in flight for a while
    first = post_tx(api, sale(), "first", wait=0)
    assert first.status_code == 202, first.text
    # A typed card over the offline limit: refused if policed; with a backlog and central up it is not.
    second = post_tx(api, sale(), "second", wait=0)
    assert second.status_code == 202, second.text
    assert second.json()["offline_reason"] == "backlog"
    central_sim.control(latency_ms=0)
    wait_for(lambda: api.get("/v1/status").json()["spool"]["pending"] == 0, timeout_s=30, what="drained")
    assert {t["status"] for t in api.get("/v1/transactions").json()["items"]} == {"settled"}

"""The money rules, through the API as a POS calls it (default parameters: no `?wait`).

Each rule is decided once, where it happens (the spool's commit, the answer given to
the POS), and read everywhere else:
- a settlement is revoked at most once, whatever the keys and however the revokes race;
- a revoke of a revoke is refused; revokes never make room under the offline limit;
- a 202 means the patient paid in full: the record says so (`offline: true`) from then on,
  and once central settles it the fund's share is owed and listed until handed over;
- a retry of a sale nobody was answered for yet waits for central like the first request;
- a key reused with another body names the transaction that holds it.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from terminald.sim.central import CentralSim
from tests.api.helpers import TYPED_CARD, assert_problem, central_config, item, revoke, sale
from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for

OFFLINE_TYPED = "[offline]\nrequire_card_present = false\n"


def post(client: httpx.Client, body: dict[str, Any], key: str, **params: Any) -> httpx.Response:
    """As the POS sends it: no `wait` unless a test says so."""
    return client.post("/v1/transactions", json=body, headers={"Idempotency-Key": key}, params=params)


def get(client: httpx.Client, tx_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/transactions/{tx_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def settled_online(api: httpx.Client, key: str, **body: Any) -> dict[str, Any]:
    r = post(api, sale(**body), key)
    assert r.status_code == 201, r.text
    tx: dict[str, Any] = r.json()
    assert tx["status"] == "settled" and tx["offline"] is False and tx["offline_reason"] is None
    return tx


def test_twenty_concurrent_revokes_of_one_sale_accept_exactly_one(
        central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config=central_config(central_sim.url))
    api = d.client()
    original = settled_online(api, "sale-1")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda n: post(d.client(), revoke(original["id"]), f"revoke-{n}"), range(20)))
    accepted = [r for r in answers if r.status_code in (201, 202)]
    assert len(accepted) == 1, [(r.status_code, r.text[:80]) for r in answers]
    for refused in (r for r in answers if r not in accepted):
        assert_problem(refused, 409, "not_revocable")
    the_revoke = accepted[0].json()
    assert the_revoke["original_id"] == original["id"] and the_revoke["total_fen"] == -original["total_fen"]

    # The revoke settles at central; the original knows it, and nothing else was recorded.
    wait_for(lambda: get(api, the_revoke["id"])["status"] == "settled", what="the revoke settled")
    assert get(api, original["id"])["revoked_by"] == the_revoke["id"]
    assert api.get("/v1/status").json()["spool"]["last_seq"] == 2
    # A retry of the accepted revoke gets its stored answer; a third key is still refused.
    again = post(api, revoke(original["id"]), f"revoke-{answers.index(accepted[0])}")
    assert again.status_code == 200 and again.json()["id"] == the_revoke["id"]
    assert_problem(post(api, revoke(original["id"]), "revoke-late"), 409, "not_revocable")
    # Central holds exactly one revoke of it.
    revokes = [r for r in central_sim.records("T0001") if r["kind"] == "revoke"]
    assert len(revokes) == 1


def test_a_revoke_cannot_be_revoked(central_sim: CentralSim,
                                    daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc(config=central_config(central_sim.url)).client()
    original = settled_online(api, "sale-1")
    the_revoke = post(api, revoke(original["id"]), "revoke-1").json()
    assert_problem(post(api, revoke(the_revoke["id"]), "revoke-of-revoke"), 409, "not_revocable")


def test_a_pending_offline_sale_is_revoked_once(daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc(config=OFFLINE_TYPED).client()
    original = post(api, sale(), "sale-1")
    assert original.status_code == 202 and original.json()["offline"] is True
    first = post(api, revoke(original.json()["id"]), "revoke-1")
    assert first.status_code == 202
    assert_problem(post(api, revoke(original.json()["id"]), "revoke-2"), 409, "not_revocable")
    assert get(api, original.json()["id"])["revoked_by"] == first.json()["id"]


def test_a_revoke_never_makes_room_under_the_offline_limit(
        central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config=central_config(central_sim.url)
                    + "[offline]\nrequire_card_present = false\nmax_total_fen = 10000\n")
    api = d.client()
    old = settled_online(api, "online-1", items=[item(qty=1, unit_price_fen=8000)])
    central_sim.control(down=True)
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "offline", what="the link offline")
    for n in range(2):
        r = post(api, sale(items=[item(qty=1, unit_price_fen=5000)]), f"offline-{n}")
        assert r.status_code == 202 and r.json()["offline_reason"] == "upstream_unreachable"
    assert_problem(post(api, sale(items=[item(qty=1, unit_price_fen=100)]), "over"), 403, "offline_limit_exceeded")
    # Revoking the old online sale (8,000 fen) while offline is taken, and frees nothing.
    assert post(api, revoke(old["id"]), "revoke-old").status_code == 202
    assert_problem(post(api, sale(items=[item(qty=1, unit_price_fen=100)]), "over-2"), 403,
                   "offline_limit_exceeded")
    # Revoking a pending offline sale does not free room either: it is still pending at central.
    pending = api.get("/v1/transactions", params={"status": "pending"}).json()["items"]
    offline_sale = next(t for t in pending if t["kind"] == "settlement")
    assert post(api, revoke(offline_sale["id"]), "revoke-offline").status_code == 202
    assert_problem(post(api, sale(items=[item(qty=1, unit_price_fen=100)]), "over-3"), 403,
                   "offline_limit_exceeded")


def test_a_sale_central_answers_after_the_wait_is_an_outage_sale_with_a_refund_owed(
        central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config=central_config(central_sim.url) + "[offline]\ndeadline_working_days = 10\n")
    api = d.client()
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "online", what="the link online")
    # Central is up but slower than the POS's default wait (upstream.wait_s = 5 s).
    central_sim.control(latency_ms=6000)
    body = sale(items=[item(qty=2, unit_price_fen=1250)], contact_phone="138 0013 8000")
    first = post(api, body, "slow-1")
    assert first.status_code == 202, first.text
    tx = first.json()
    assert tx["status"] == "pending" and tx["offline"] is True and tx["offline_reason"] == "timeout"
    assert tx["paid_at_counter_fen"] == 2500 and tx["contact_phone_masked"] == "138****8000"
    assert tx["mode"] == "offline"  # the mode agrees with what the patient was told
    # A later GET tells the same story as the 202 did.
    assert {k: get(api, tx["id"])[k] for k in ("offline", "offline_reason")} == {"offline": True,
                                                                               "offline_reason": "timeout"}
    central_sim.control(latency_ms=0)
    settled = wait_for(lambda: (t := get(api, tx["id"]))["status"] == "settled" and t, timeout_s=60,
                       what="the slow sale settled")
    split = settled["settlement"]
    owed = split["fund_paid_fen"] + split["account_paid_fen"]
    assert owed > 0, split
    # Still an outage sale: the patient paid the whole amount, the fund's share is owed back.
    assert settled["offline"] is True and settled["paid_at_counter_fen"] == 2500
    assert settled["refund_owed_fen"] == owed

    listed = api.get("/v1/followups").json()
    assert [(i["id"], i["reason"], i["owed_fen"]) for i in listed["items"]] == [(tx["id"], "refund", owed)]
    assert listed["items"][0]["deadline"] and listed["items"][0]["overdue"] is False
    assert listed["items"][0]["contact_phone_masked"] == "138****8000"
    assert listed["items"][0]["idempotency_key"] == "slow-1"
    assert api.get("/v1/status").json()["followups"]["owed_fen"] == owed

    # Staff see the same list from the command line (masked: no full card number, no phone).
    listed_csv = subprocess.run([sys.executable, "-m", "terminald.cli", "followups", "--csv",
                                 "--config", str(d.config_path)],
                                capture_output=True, text=True, env=d.env, timeout=60, check=False)
    assert listed_csv.returncode == 0, listed_csv.stderr
    rows = list(csv.reader(io.StringIO(listed_csv.stdout)))
    assert rows[0][:3] == ["seq", "id", "reason"] and [r[1:3] for r in rows[1:]] == [[tx["id"], "refund"]]
    assert "13800138000" not in listed_csv.stdout and TYPED_CARD["card_number"] not in listed_csv.stdout

    operator = {"id": "op7", "name": "王芳"}
    wrong = api.post(f"/v1/transactions/{tx['id']}/refund", json={"paid_fen": owed + 1, "operator": operator})
    assert assert_problem(wrong, 409, "refund_amount_mismatch")["owed_fen"] == owed
    paid = api.post(f"/v1/transactions/{tx['id']}/refund", json={"paid_fen": owed, "operator": operator})
    assert paid.status_code == 200, paid.text
    assert paid.json()["refund"]["paid_fen"] == owed and paid.json()["refund_owed_fen"] == 0
    twice = api.post(f"/v1/transactions/{tx['id']}/refund", json={"paid_fen": owed, "operator": operator})
    assert_problem(twice, 409, "invalid_transition")
    assert api.get("/v1/followups").json()["items"] == []


def test_a_retry_after_a_client_timeout_waits_for_central_like_the_first_request(
        central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config=central_config(central_sim.url))
    api = d.client()
    settled_online(api, "warm-up")  # the link is online
    central_sim.control(latency_ms=2500)
    body = sale(items=[item(qty=3, unit_price_fen=990)])
    impatient = d.client(timeout=0.5)
    try:
        post(impatient, body, "retried")
        raise AssertionError("the POS's short timeout should have fired")
    except httpx.TimeoutException:
        pass
    # The POS rebuilds its request and retries with the same key, still without `wait`.
    retry = post(api, sale(items=[item(qty=3, unit_price_fen=990)]), "retried")
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "settled" and retry.json()["offline"] is False
    assert retry.json()["paid_at_counter_fen"] == retry.json()["settlement"]["cash_paid_fen"]


def test_a_sale_answered_pending_stays_pending_for_its_retries(
        daemon_proc: Callable[..., DaemonProcess]) -> None:
    # Central unreachable: the first answer is 202 at once (nothing can settle it), and a retry
    # is answered at once too, with the same outage facts.
    api = daemon_proc(config='[upstream]\nurl = "http://127.0.0.1:9"\n' + OFFLINE_TYPED).client()
    first = post(api, sale(), "k")
    assert first.status_code == 202 and first.json()["offline"] is True
    again = post(api, sale(), "k")
    assert again.status_code == 200
    assert {k: again.json()[k] for k in ("id", "status", "offline", "offline_reason")} == \
        {k: first.json()[k] for k in ("id", "status", "offline", "offline_reason")}


def test_a_key_reused_with_another_body_names_the_transaction(
        daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc(config=OFFLINE_TYPED).client()
    first = post(api, sale(), "same-key")
    problem = assert_problem(post(api, sale(items=[item(qty=5)]), "same-key"), 409, "idempotency_conflict")
    assert problem["existing_id"] == first.json()["id"] and first.json()["id"] in problem["detail"]


def test_the_first_sale_after_central_drops_is_answered_when_the_upload_fails(
        central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    # The link still says online when the sale comes in; the upload attempt then fails at once.
    # The POS must not sit out its whole `wait` (here 30 s, past its own 10 s timeout) for an
    # answer nobody can give: the failure ends the wait, and the sale is an outage sale.
    d = daemon_proc(config=central_config(central_sim.url) + OFFLINE_TYPED)
    api = d.client()
    settled_online(api, "warm-up")
    central_sim.control(down=True)
    r = post(d.client(timeout=10), sale(items=[item(qty=1, unit_price_fen=700)]), "first-after-drop", wait=30)
    assert r.status_code == 202, r.text
    assert r.json()["offline"] is True and r.json()["offline_reason"] == "upstream_unreachable"


def test_a_voided_outage_sale_owes_the_patient_all_they_paid_until_handed_back(
        central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    """Central is down: two outage sales, each paid in full at the counter. Central comes back
    and refuses both (the card was frozen meanwhile). Staff resolve one as self-pay (what was
    paid stands: nothing owed) and void the other (all the patient paid is owed back): listed,
    printed, and recorded once, for exactly that amount."""
    d = daemon_proc(config=central_config(central_sim.url) + OFFLINE_TYPED)
    api = d.client()
    central_sim.control(down=True)
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "offline", what="the link down")
    kept = post(api, sale(items=[item(qty=1, unit_price_fen=1780)]), "outage-kept")
    void = post(api, sale(items=[item(qty=2, unit_price_fen=1250)], contact_phone="138 0013 8000"), "outage-void")
    assert kept.status_code == void.status_code == 202, (kept.text, void.text)
    central_sim.control(down=False, freeze=[TYPED_CARD["card_number"]])
    for tx in (kept.json(), void.json()):
        wait_for(lambda tx=tx: get(api, tx["id"])["status"] == "rejected", timeout_s=60, what="central's refusal")
    assert {i["reason"] for i in api.get("/v1/followups").json()["items"]} == {"rejected"}

    self_pay = api.post(f"/v1/transactions/{kept.json()['id']}/resolve", json={"resolution": "self_pay"})
    assert self_pay.status_code == 200 and self_pay.json()["refund_owed_fen"] == 0, self_pay.text
    voided = api.post(f"/v1/transactions/{void.json()['id']}/resolve", json={"resolution": "voided"})
    assert voided.status_code == 200, voided.text
    assert voided.json()["paid_at_counter_fen"] == 2500 and voided.json()["refund_owed_fen"] == 2500

    listed = api.get("/v1/followups").json()
    assert [(i["id"], i["reason"], i["owed_fen"]) for i in listed["items"]] == [(void.json()["id"], "refund", 2500)]
    assert listed["items"][0]["contact_phone_masked"] == "138****8000"
    assert api.get("/v1/status").json()["followups"]["owed_fen"] == 2500
    notice = api.get(f"/v1/transactions/{void.json()['id']}/receipt.png", params={"document": "notice"})
    assert notice.status_code == 200 and notice.headers["content-type"] == "image/png"

    operator = {"id": "op7", "name": "王芳"}
    url = f"/v1/transactions/{void.json()['id']}/refund"
    assert assert_problem(api.post(url, json={"paid_fen": 2000, "operator": operator}), 409,
                          "refund_amount_mismatch")["owed_fen"] == 2500
    assert_problem(api.post(f"/v1/transactions/{kept.json()['id']}/refund", json={"paid_fen": 1780,
                                                                                 "operator": operator}),
                   409, "invalid_transition")
    paid = api.post(url, json={"paid_fen": 2500, "operator": operator})
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "resolved" and paid.json()["refund"]["paid_fen"] == 2500
    assert paid.json()["refund_owed_fen"] == 0
    assert_problem(api.post(url, json={"paid_fen": 2500, "operator": operator}), 409, "invalid_transition")
    assert api.get("/v1/followups").json()["items"] == []
    history = get(api, void.json()["id"])["history"]
    assert history[-1]["status"] == "resolved" and "refund of 2500 fen" in history[-1]["detail"]

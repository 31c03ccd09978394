"""POST/GET /v1/transactions, revoke, resolve, list: validation, idempotency, paging.

No upstream is configured, so every record stays pending (202) and the
offline policy applies; typed-in cards are allowed here so that no card
reader is needed (tests/api/test_policy.py covers the policy itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_problem, item, post_tx, revoke, sale
from tests.fixtures.daemon import DaemonProcess

OFFLINE_TYPED = "[offline]\nrequire_card_present = false\n"


@pytest.fixture
def api(daemon_proc: Callable[..., DaemonProcess]) -> httpx.Client:
    return daemon_proc(config=OFFLINE_TYPED).client()


def test_record_answers_202_pending_with_masked_card(api: httpx.Client) -> None:
    r = post_tx(api, sale(items=[item(qty=2), item(qty="0.5", unit_price_fen=999, amount_fen=500)]), "k-1")
    assert r.status_code == 202, r.text
    tx = r.json()
    assert tx["status"] == "pending" and tx["kind"] == "settlement"
    assert tx["offline"] is True and tx["offline_reason"] == "upstream_unreachable"
    assert tx["mode"] == "offline"
    assert tx["total_fen"] == 3000 and tx["seq"] == 1
    assert tx["card_present"] is False
    assert tx["card"]["card_number"] == "A10000001"
    assert "110101199001011234" not in r.text and "张三" not in r.text
    assert [i["qty"] for i in tx["items"]] == [2, 0.5]
    datetime.fromisoformat(tx["created_at"])
    assert datetime.fromisoformat(tx["business_time"]).tzinfo is not None

    got = api.get(f"/v1/transactions/{tx['id']}")
    assert got.status_code == 200
    assert got.json()["id"] == tx["id"] and got.json()["history"], got.json()


def test_business_time_is_kept(api: httpx.Client) -> None:
    when = "2026-01-02T10:15:00+08:00"
    r = post_tx(api, sale(business_time=when), "k-bt")
    assert r.status_code == 202, r.text
    assert datetime.fromisoformat(r.json()["business_time"]) == datetime.fromisoformat(when)


def _future(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


VALIDATION_CASES: list[tuple[str, Any, str]] = [
    ("float fen", sale(items=[item(unit_price_fen=12.5, amount_fen=25)]), "unit_price_fen"),  # type: ignore[arg-type]
    ("string fen", sale(total_fen="2500"), "total_fen"),  # type: ignore[arg-type]
    ("negative fen", sale(items=[item(unit_price_fen=-1, amount_fen=-2)]), "unit_price_fen"),
    ("qty 4 decimals", sale(items=[item(qty=1.2345, unit_price_fen=100, amount_fen=123)]), "qty"),
    ("qty zero", sale(items=[item(qty=0, amount_fen=0)]), "qty"),
    ("qty bool", sale(items=[item(qty=True, amount_fen=1250)]), "qty"),
    ("amount off by one", sale(items=[item(qty=2, unit_price_fen=1250, amount_fen=2501)]), "amount_fen"),
    ("rounding", sale(items=[item(qty="0.333", unit_price_fen=100, amount_fen=34)]), "amount_fen"),
    ("total off", sale(total_fen=2499), "total_fen"),
    ("total missing", {k: v for k, v in sale().items() if k != "total_fen"}, "total_fen"),
    ("no items", sale(items=[], total_fen=0), "item"),
    ("future 10 min", sale(business_time=_future(10)), "future"),
    ("naive time", sale(business_time="2026-01-02T10:15:00"), "offset"),
    ("both card kinds", {**sale(), "card_read_id": "cr_x"}, "exactly one"),
    ("no card at all", {k: v for k, v in sale().items() if k != "card"}, "exactly one"),
    ("bad ssn", sale(card={"card_number": "A1", "ssn": "12345", "name": "x"}), "ssn"),
    ("unknown field", sale(discount_fen=5), "discount_fen"),
    ("unknown kind", sale(kind="refund"), "kind"),
    ("no operator", {k: v for k, v in sale().items() if k != "operator"}, "operator"),
    ("revoke with items", {**revoke("x"), "items": [item()]}, "revoke"),
    ("revoke without original", {"kind": "revoke", "operator": {"id": "op7"}}, "original_id"),
    ("not an object", [sale()], "object"),
]


def test_validation_failed(api: httpx.Client) -> None:
    # One daemon for every shape (starting one per case costs a second each).
    failures = []
    for name, body, field in VALIDATION_CASES:
        try:
            problem = assert_problem(post_tx(api, body, f"bad-{name}"), 422, "validation_failed")
            assert field.lower() in (problem["detail"] + str(problem.get("errors"))).lower(), problem
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)
    assert api.get("/v1/status").json()["spool"]["last_seq"] == 0


def test_validation_of_a_time_just_inside_the_limit(api: httpx.Client) -> None:
    assert post_tx(api, sale(business_time=_future(4)), "k-4min").status_code == 202


def test_idempotency_key_required(api: httpx.Client) -> None:
    for key in (None, "", "x" * 65, "tab\there"):
        assert_problem(post_tx(api, sale(), key), 422, "validation_failed")
    latin1 = api.post("/v1/transactions", json=sale(), headers={"Idempotency-Key": "café".encode("latin-1")})
    assert_problem(latin1, 422, "validation_failed")
    assert post_tx(api, sale(), "x" * 64).status_code == 202


def test_body_not_json_and_bad_wait(api: httpx.Client) -> None:
    r = api.post("/v1/transactions", content=b"{not json", headers={"Idempotency-Key": "nj",
                                                                    "Content-Type": "application/json"})
    assert_problem(r, 422, "validation_failed")
    for wait in (31, -1, "soon", "nan", "inf", ""):
        problem = assert_problem(post_tx(api, sale(), "w", wait=wait), 422, "validation_failed")  # type: ignore[arg-type]
        assert problem["errors"][0]["loc"] == ["query", "wait"]
    assert post_tx(api, sale(), "w", wait=0.5).status_code == 202


def test_bodies_that_are_not_json(api: httpx.Client) -> None:
    good = json.dumps(sale())
    bad_bodies = {
        "NaN": good.replace('"qty": 2', '"qty": NaN'),
        "Infinity": good.replace('"qty": 2', '"qty": Infinity'),
        "overflow": good.replace('"qty": 2', '"qty": 1e400'),
        "lone surrogate": good[:-1] + ', "meta": {"s": "\\ud800"}}',
        "deep": '{"a": ' * 5000 + "1" + "}" * 5000,
        "not utf-8": good.replace("王芳", "").encode("utf-8")[:-1].decode() + '"\xff"}',
        "empty": "",
    }
    for name, text in bad_bodies.items():
        content = text.encode("latin-1") if name == "not utf-8" else text.encode()
        r = api.post("/v1/transactions", content=content,
                     headers={"Idempotency-Key": f"nj-{name}", "Content-Type": "application/json"})
        assert_problem(r, 422, "validation_failed")
    assert api.get("/v1/status").json()["spool"]["last_seq"] == 0


def test_default_wait_without_upstream_answers_at_once(daemon_proc: Callable[..., DaemonProcess]) -> None:
    # No upstream is configured: nobody could settle it, so 202 comes without waiting `wait_s`
    # (30 s here: the client gives up long before that if the daemon waits).
    api = daemon_proc(config=OFFLINE_TYPED + "[upstream]\nwait_s = 30\n").client(timeout=10.0)
    r = post_tx(api, sale(), "no-wait", wait=None)
    assert r.status_code == 202 and r.json()["status"] == "pending"


def test_nothing_is_recorded_by_a_refused_request(api: httpx.Client) -> None:
    post_tx(api, sale(total_fen=1), "nope")
    assert api.get("/v1/status").json()["spool"]["last_seq"] == 0
    # The key was not consumed: the right body with it is recorded.
    assert post_tx(api, sale(), "nope").status_code == 202


def test_idempotent_replay_and_conflict(api: httpx.Client) -> None:
    first = post_tx(api, sale(), "order-1")
    assert first.status_code == 202
    again = post_tx(api, sale(), "order-1", wait=3)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["seq"] == first.json()["seq"]
    # Same JSON with keys in another order is the same body.
    reordered = dict(reversed(list(sale().items())))
    assert post_tx(api, reordered, "order-1").status_code == 200
    conflict = post_tx(api, sale(items=[item(qty=3)]), "order-1")
    assert_problem(conflict, 409, "idempotency_conflict")
    # An invalid body with a used key is a conflict too, never a second record.
    assert_problem(post_tx(api, sale(total_fen=1), "order-1"), 409, "idempotency_conflict")
    listed = api.get("/v1/transactions").json()
    assert [t["id"] for t in listed["items"]] == [first.json()["id"]]


def test_revoke(api: httpx.Client) -> None:
    original = post_tx(api, sale(), "sale-1").json()
    r = post_tx(api, revoke(original["id"]), "revoke-1")
    assert r.status_code == 202, r.text
    tx = r.json()
    assert tx["kind"] == "revoke" and tx["original_id"] == original["id"]
    assert tx["total_fen"] == -original["total_fen"]
    assert tx["card"]["card_number"] == original["card"]["card_number"]
    assert post_tx(api, revoke(original["id"]), "revoke-1").json()["id"] == tx["id"]
    assert_problem(post_tx(api, revoke("no-such-record"), "revoke-2"), 404, "not_found")
    # A revoke of a revoke is refused (docs/api.md, "Revokes").
    assert_problem(post_tx(api, revoke(tx["id"]), "revoke-3"), 409, "not_revocable")


def test_card_read_unknown(api: httpx.Client) -> None:
    assert_problem(post_tx(api, sale(card_read_id="cr_never_read"), "cr-1"), 422, "card_read_unknown")


def test_get_unknown_is_404(api: httpx.Client) -> None:
    assert_problem(api.get("/v1/transactions/nope"), 404, "not_found")
    assert_problem(api.get("/v1/no-such-route"), 404, "not_found")


def test_resolve_of_a_pending_record_is_an_invalid_transition(api: httpx.Client) -> None:
    tx = post_tx(api, sale(), "r-1").json()
    r = api.post(f"/v1/transactions/{tx['id']}/resolve", json={"resolution": "self_pay"})
    assert_problem(r, 409, "invalid_transition")
    assert_problem(api.post("/v1/transactions/nope/resolve", json={"resolution": "voided"}), 404, "not_found")
    assert_problem(api.post(f"/v1/transactions/{tx['id']}/resolve", json={"resolution": "maybe"}),
                   422, "validation_failed")
    assert api.get(f"/v1/transactions/{tx['id']}").json()["status"] == "pending"


def test_list_filters_and_paging(api: httpx.Client) -> None:
    ids = [post_tx(api, sale(items=[item(qty=n)]), f"p-{n}").json()["id"] for n in range(1, 8)]
    page = api.get("/v1/transactions", params={"limit": 3}).json()
    assert [t["id"] for t in page["items"]] == ids[:3] and page["next_after_seq"] == 3
    seen = []
    after: int | None = 0
    while after is not None:
        page = api.get("/v1/transactions", params={"limit": 3, "after_seq": after}).json()
        seen += [t["id"] for t in page["items"]]
        after = page["next_after_seq"]
    assert seen == ids
    assert [t["seq"] for t in api.get("/v1/transactions", params={"after_seq": 5}).json()["items"]] == [6, 7]
    pending = api.get("/v1/transactions", params={"status": "pending"}).json()["items"]
    assert len(pending) == 7
    assert api.get("/v1/transactions", params={"status": "settled"}).json() == {"items": [],
                                                                                "next_after_seq": None}
    for params in ({"status": "bogus"}, {"limit": 501}, {"limit": 0}, {"after_seq": -1}, {"limit": "x"},
                   {"after_seq": 2**63}):
        assert_problem(api.get("/v1/transactions", params=params), 422, "validation_failed")

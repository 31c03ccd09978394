"""The local API as a POS integrator calls it, with docs/api.md in hand.

Through the real daemon (no upstream: every sale is an outage sale, answered 202 at once),
with the POS's default parameters (no `?wait`): the answer echoes the POS's own ids; a retry
with a body the POS rebuilt is the same sale; a sale is found again by its order id, its
Idempotency-Key or its business day; a query parameter no endpoint declares is refused, never
ignored; 405s say what is allowed; and the served OpenAPI document is valid and complete.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from spool import AppendRequest, Spool
from spool.chain import digest
from tests.api.helpers import TYPED_CARD, assert_problem, item, revoke, sale
from tests.fixtures.daemon import DaemonProcess

OFFLINE_TYPED = "[offline]\nrequire_card_present = false\n"


@pytest.fixture
def d(daemon_proc: Callable[..., DaemonProcess]) -> DaemonProcess:
    return daemon_proc(config=OFFLINE_TYPED)


@pytest.fixture
def api(d: DaemonProcess) -> httpx.Client:
    return d.client()


def post(api: httpx.Client, body: Any, key: str, **params: Any) -> httpx.Response:
    """As a POS posts a sale: the key header, no `?wait` unless given."""
    return api.post("/v1/transactions", json=body, headers={"Idempotency-Key": key}, params=params)


def post_raw(api: httpx.Client, text: str, key: str) -> httpx.Response:
    return api.post("/v1/transactions", content=text.encode(),
                    headers={"Idempotency-Key": key, "Content-Type": "application/json"})


def listed(api: httpx.Client, **params: Any) -> list[str]:
    r = api.get("/v1/transactions", params=params)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()["items"]]


def last_seq(api: httpx.Client) -> int:
    return int(api.get("/v1/status").json()["spool"]["last_seq"])


# -- the answer carries the POS's own ids ------------------------------------------------------------
def test_every_answer_echoes_the_key_and_meta(api: httpx.Client) -> None:
    meta = {"pos_order_id": "A-1001", "till": 3, "note": "窗口 2"}
    first = post(api, sale(meta=meta), "order-A-1001")
    assert first.status_code == 202, first.text
    tx = first.json()
    assert tx["idempotency_key"] == "order-A-1001" and tx["meta"] == meta
    again = post(api, sale(meta=meta), "order-A-1001")
    one = api.get(f"/v1/transactions/{tx['id']}").json()
    [in_list] = api.get("/v1/transactions").json()["items"]
    for answer in (again.json(), one, in_list):
        assert answer["id"] == tx["id"]
        assert answer["idempotency_key"] == "order-A-1001" and answer["meta"] == meta, answer
    # Nothing sent, nothing echoed but an empty object; a revoke echoes its own.
    plain = post(api, sale(), "plain").json()
    assert plain["meta"] == {} and plain["idempotency_key"] == "plain"
    undo = post(api, {**revoke(plain["id"]), "meta": {"pos_order_id": "R-1"}}, "undo-plain").json()
    assert undo["meta"] == {"pos_order_id": "R-1"} and undo["idempotency_key"] == "undo-plain"


# -- a retry is recognised by meaning ----------------------------------------------------------------
def test_a_rebuilt_body_is_the_same_request(api: httpx.Client) -> None:
    body = sale(items=[item(qty=1), item(qty="0.5", unit_price_fen=999, amount_fen=500)])
    first = post(api, body, "rebuilt")
    assert first.status_code == 202, first.text
    record_id = first.json()["id"]

    rebuilt: dict[str, Any] = {
        "qty 1.0 and 0.50": {**body, "items": [item(qty=1.0), item(qty=0.50, unit_price_fen=999, amount_fen=500)]},
        "qty as strings": {**body, "items": [item(qty="1.000"), item(qty="0.500", unit_price_fen=999, amount_fen=500)]},
        "meta {} added": {**body, "meta": {}},
        "kind left out": {k: v for k, v in body.items() if k != "kind"},
        "nulls sent": {**body, "contact_phone": None, "business_time": None, "original_id": None,
                       "card_read_id": None},
        "operator name default": {**body, "operator": {"id": "op7", "name": "王芳"}, "meta": {}},
        "keys reordered": {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else v)
                           for k, v in reversed(list(body.items()))},
        "outer spaces": {**body, "operator": {"id": " op7 ", "name": "王芳 "}},
    }
    for name, again in rebuilt.items():
        r = post(api, again, "rebuilt")
        assert r.status_code == 200, (name, r.text)
        assert r.json()["id"] == record_id, name
    # Other bytes, same JSON: pretty-printed.
    r = post_raw(api, json.dumps(body, indent=2, ensure_ascii=True), "rebuilt")
    assert r.status_code == 200 and r.json()["id"] == record_id, r.text

    # Another meaning is still another request, refused and named.
    different = {
        "another qty": {**body, "items": [item(qty=2), body["items"][1]], "total_fen": 3000},
        "another meta": {**body, "meta": {"pos_order_id": "X"}},
        "a business_time where the first had none": {**body, "business_time": "2026-01-02T10:15:00+08:00"},
    }
    for name, other in different.items():
        problem = assert_problem(post(api, other, "rebuilt"), 409, "idempotency_conflict")
        assert problem["existing_id"] == record_id, name
    assert last_seq(api) == 1


def test_rebuilt_revokes_and_a_given_business_time(api: httpx.Client) -> None:
    when = "2026-01-02T10:15:00+08:00"
    first = post(api, sale(business_time=when), "timed").json()
    # The same time written otherwise (a zero fraction) is the same time.
    assert post(api, sale(business_time="2026-01-02T10:15:00.000+08:00"), "timed").json()["id"] == first["id"]
    problem = assert_problem(post(api, sale(business_time="2026-01-02T02:15:00Z"), "timed"), 409,
                             "idempotency_conflict")
    assert problem["existing_id"] == first["id"]  # another offset is another business day's clock
    # The SSN's check letter in either case is the same card.
    card = {**TYPED_CARD, "ssn": "11010119900101123x"}
    typed = post(api, sale(card=card), "x-card").json()
    assert post(api, sale(card={**card, "ssn": "11010119900101123X"}), "x-card").json()["id"] == typed["id"]
    undo = post(api, revoke(first["id"]), "undo")
    assert undo.status_code == 202, undo.text
    for again in ({**revoke(first["id"]), "meta": {}},
                  {**revoke(first["id"]), "items": []},
                  dict(reversed(list(revoke(first["id"]).items())))):
        r = post(api, again, "undo")
        assert r.status_code == 200 and r.json()["id"] == undo.json()["id"], r.text


def test_a_record_of_the_previous_version_is_still_answered(daemon_proc: Callable[..., DaemonProcess]) -> None:
    """Records stored before this version carry the digest of the raw body: the same bytes are
    still a repeat (200, the stored answer); a rebuilt body is refused as it was then (409)."""
    d = daemon_proc(config='[terminal]\nid = "T0001"\n' + OFFLINE_TYPED, start=False)
    body = sale(meta={"pos_order_id": "old-1"})
    text = json.dumps(body, ensure_ascii=False)
    spool = Spool.open(d.state_dir / "spool.db", "T0001", background_check=False)
    try:
        old = spool.append(AppendRequest(
            kind="settlement", business_time="2026-01-02T10:15:00+08:00",
            payload={"operator": body["operator"], "idempotency_key": "old-key", "meta": body["meta"],
                     "card": body["card"], "card_present": False, "items": body["items"],
                     "total_fen": body["total_fen"]},
            idempotency_key="old-key", request_digest=digest(json.loads(text)),
            offline=True, offline_reason="upstream_unreachable", outage_reason="upstream_unreachable")).record
    finally:
        spool.close()
    d.start()
    api = d.client()
    again = post_raw(api, text, "old-key")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == old.record_id and again.json()["meta"] == {"pos_order_id": "old-1"}
    problem = assert_problem(post(api, {**body, "meta": {"pos_order_id": "old-1"}, "kind": "settlement",
                                        "items": [item(qty=2.0)]}, "old-key"), 409, "idempotency_conflict")
    assert problem["existing_id"] == old.record_id
    # Found by its order id too: the index covers records of every version.
    assert listed(api, pos_order_id="old-1") == [old.record_id]
    assert last_seq(api) == 1


# -- finding a sale again ----------------------------------------------------------------------------
def test_find_by_pos_order_id(api: httpx.Client) -> None:
    ids = {}
    for n, order in enumerate(["A-1", "A-2", "A-1", 1001, "1001x"], start=1):
        r = post(api, sale(items=[item(qty=n)], meta={"pos_order_id": order, "lane": n}), f"k-{n}")
        assert r.status_code == 202, r.text
        ids[n] = r.json()["id"]
    post(api, sale(), "no-meta")
    assert listed(api, pos_order_id="A-1") == [ids[1], ids[3]]
    assert listed(api, pos_order_id="A-2") == [ids[2]]
    assert listed(api, pos_order_id="1001") == [ids[4]]  # sent as a JSON number
    assert listed(api, pos_order_id="1001x") == [ids[5]]
    assert listed(api, pos_order_id="01001") == []
    assert listed(api, pos_order_id="nobody's") == []
    # A revoke the POS tags with the same order id is found with it.
    undo = post(api, {**revoke(ids[2]), "meta": {"pos_order_id": "A-2"}}, "undo-A-2").json()
    assert listed(api, pos_order_id="A-2") == [ids[2], undo["id"]]
    # Combined with the other filters and with paging.
    assert listed(api, pos_order_id="A-1", status="pending") == [ids[1], ids[3]]
    assert listed(api, pos_order_id="A-1", status="settled") == []
    page = api.get("/v1/transactions", params={"pos_order_id": "A-1", "limit": 1}).json()
    assert [t["id"] for t in page["items"]] == [ids[1]] and page["next_after_seq"] == 1
    assert listed(api, pos_order_id="A-1", after_seq=page["next_after_seq"]) == [ids[3]]
    for bad in ("", "x" * 257):
        assert_problem(api.get("/v1/transactions", params={"pos_order_id": bad}), 422, "validation_failed")


def test_find_by_idempotency_key_after_an_unclear_answer(api: httpx.Client) -> None:
    # After a 503 "may have recorded", the POS asks by its key instead of resending the body.
    tx = post(api, sale(), "pos-order-77").json()
    post(api, sale(items=[item(qty=3)]), "pos-order-78")
    r = api.get("/v1/transactions", params={"idempotency_key": "pos-order-77"})
    assert r.status_code == 200
    assert [t["id"] for t in r.json()["items"]] == [tx["id"]] and r.json()["next_after_seq"] is None
    assert r.json()["items"][0]["idempotency_key"] == "pos-order-77"
    # Never recorded: an empty list, not the whole list (whose items[0] is someone else's sale).
    assert api.get("/v1/transactions", params={"idempotency_key": "pos-order-79"}).json() == {
        "items": [], "next_after_seq": None}
    assert listed(api, idempotency_key="pos-order-77", status="settled") == []
    assert listed(api, idempotency_key="pos-order-77", after_seq=tx["seq"]) == []
    for bad in ("", "x" * 65, "tab\there"):
        assert_problem(api.get("/v1/transactions", params={"idempotency_key": bad}), 422, "validation_failed")


def test_find_by_business_date_and_status(api: httpx.Client) -> None:
    days = ["2026-01-02T23:59:00+08:00", "2026-01-03T00:01:00+08:00", "2026-01-02T09:00:00+08:00",
            "2026-01-02T20:00:00-05:00"]  # the last is 01-03 in Beijing, but its own day is 01-02
    ids = [post(api, sale(items=[item(qty=n + 1)], business_time=when), f"d-{n}").json()["id"]
           for n, when in enumerate(days)]
    assert listed(api, business_date="2026-01-02") == [ids[0], ids[2], ids[3]]
    assert listed(api, business_date="2026-01-03") == [ids[1]]
    assert listed(api, business_date="2026-01-02", status="pending") == [ids[0], ids[2], ids[3]]
    assert listed(api, business_date="2026-01-02", status="settled") == []
    assert listed(api, business_date="2026-01-04") == []
    page = api.get("/v1/transactions", params={"business_date": "2026-01-02", "limit": 2}).json()
    assert [t["id"] for t in page["items"]] == ids[0:3:2] and page["next_after_seq"] == 3
    assert listed(api, business_date="2026-01-02", after_seq=3) == [ids[3]]
    for bad in ("2026-02-30", "2026-1-2", "yesterday", "2026-01-02T00:00"):
        problem = assert_problem(api.get("/v1/transactions", params={"business_date": bad}), 422,
                                 "validation_failed")
        assert "business_date" in problem["detail"], problem


# -- what is not declared is refused -----------------------------------------------------------------
def test_an_unknown_query_parameter_is_422_naming_it(d: DaemonProcess, api: httpx.Client) -> None:
    tx = post(api, sale(), "k-1").json()
    calls = [
        ("GET", "/v1/transactions", {"idempotency_keys": "k-1"}),
        ("GET", "/v1/transactions", {"status": "pending", "order": "A-1"}),
        ("GET", f"/v1/transactions/{tx['id']}", {"verbose": "1"}),
        ("GET", "/v1/status", {"x": ""}),
        ("GET", "/v1/followups", {"since": "1"}),
        ("GET", "/v1/reconciliation", {"date": "2026-01-02", "terminal": "T2"}),
        ("GET", "/v1/events", {"last_event_id": "3"}),
        ("GET", "/metrics", {"format": "json"}),
        ("POST", f"/v1/transactions/{tx['id']}/resolve", {"force": "1"}),
    ]
    for method, path, params in calls:
        problem = assert_problem(api.request(method, path, params=params), 422, "validation_failed")
        known_here = {"status", "date"}
        unknown = sorted(set(params) - known_here)
        assert [e["loc"] for e in problem["errors"]] == [["query", name] for name in unknown], (path, problem)
        assert all(name in problem["detail"] for name in unknown), problem
    # The public liveness endpoint too, without a token.
    assert_problem(httpx.get(d.url + "/v1/health", params={"probe": "1"}), 422, "validation_failed")
    # The hot path: a misspelt `wait` is refused and records nothing.
    before = last_seq(api)
    problem = assert_problem(post(api, sale(), "k-2", wiat=0), 422, "validation_failed")
    assert problem["errors"] == [{"loc": ["query", "wiat"], "msg": "unknown query parameter",
                                  "type": "unknown_parameter"}]
    assert last_seq(api) == before
    # Declared ones still work; an unknown path stays 404, a wrong method 405.
    assert post(api, sale(), "k-2", wait=0).status_code == 202
    assert listed(api, status="pending", limit=1) == [tx["id"]]
    assert_problem(api.get("/v1/nothing-here", params={"x": "1"}), 404, "not_found")
    assert_problem(api.delete("/v1/status", params={"x": "1"}), 405, "method_not_allowed")
    # Access control still comes first: no token, no hint about parameters.
    assert httpx.get(d.url + "/v1/transactions", params={"bogus": "1"}).status_code == 401


def test_405_names_every_allowed_method(api: httpx.Client) -> None:
    expected = {
        ("DELETE", "/v1/transactions"): "GET, POST",
        ("PUT", "/v1/transactions/some-id"): "GET",
        ("GET", "/v1/transactions/some-id/resolve"): "POST",
        ("PATCH", "/v1/transactions/some-id/receipt"): "POST",
        ("POST", "/v1/status"): "GET",
        ("GET", "/v1/upstream/resume"): "POST",
    }
    for (method, path), allow in expected.items():
        r = api.request(method, path)
        assert_problem(r, 405, "method_not_allowed")
        assert r.headers["allow"] == allow, (method, path, r.headers.get("allow"))


# -- the OpenAPI document ----------------------------------------------------------------------------
def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + [
            ref for k, v in node.items() if k != "$ref" for ref in _refs(v)]
    if isinstance(node, list):
        return [ref for v in node for ref in _refs(v)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_served_openapi_document_is_valid(d: DaemonProcess, api: httpx.Client) -> None:
    assert httpx.get(d.url + "/openapi.json").status_code == 401  # authenticated like the rest
    document = api.get("/openapi.json").json()
    errors = [str(e) for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []
    # The validator does not follow references inside schemas: every one must resolve here.
    refs = _refs(document)
    unresolved = []
    for ref in refs:
        try:
            _resolve(document, ref)
        except (KeyError, TypeError):
            unresolved.append(ref)
    assert refs and not unresolved, unresolved
    assert "$defs" not in json.dumps(document)
    schemas = document["components"]["schemas"]
    assert {"TransactionIn", "CardIn", "ItemIn", "OperatorIn"} <= schemas.keys()
    post_op = document["paths"]["/v1/transactions"]["post"]
    assert post_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TransactionIn"}
    assert {p["name"] for p in post_op["parameters"]} == {"wait", "Idempotency-Key"}
    get_op = document["paths"]["/v1/transactions"]["get"]
    assert {p["name"] for p in get_op["parameters"] if p["in"] == "query"} == {
        "status", "after_seq", "limit", "idempotency_key", "pos_order_id", "business_date", "awaiting_patient"}
    answer = schemas["TransactionOut"]
    assert {"idempotency_key", "meta"} <= answer["properties"].keys() and "idempotency_key" in answer["required"]


def test_the_documented_request_states_the_cross_field_rules(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/TransactionIn", "components": document["components"]})

    def valid(body: dict[str, Any]) -> bool:
        return validator.is_valid(body)

    assert valid(sale()) and valid(sale(card_read_id="cr_1")) and valid({k: v for k, v in sale().items()
                                                                           if k != "kind"})
    assert not valid({**sale(), "card_read_id": "cr_1"})  # both a read card and a typed one
    assert not valid({k: v for k, v in sale().items() if k != "card"})  # neither
    assert not valid({**sale(), "original_id": "x"})  # original_id belongs to a revoke
    assert not valid(sale(items=[], total_fen=0))
    assert not valid({k: v for k, v in sale().items() if k != "total_fen"})
    assert valid(revoke("x")) and valid({**revoke("x"), "meta": {"a": 1}, "business_time": "2026-01-02T10:15:00Z"})
    assert not valid({"kind": "revoke", "operator": {"id": "op7"}})  # no original_id
    for extra in ({"items": [item()]}, {"card": TYPED_CARD}, {"card_read_id": "cr_1"}, {"total_fen": 0},
                  {"contact_phone": "13800138000"}):
        assert not valid({**revoke("x"), **extra}), extra
    # What the schema accepts here, the daemon accepts too (the arithmetic aside).
    for key, body in (("s-1", sale()), ("s-2", {k: v for k, v in sale().items() if k != "kind"})):
        assert post(api, body, key).status_code == 202
    assert post(api, revoke(post(api, sale(items=[item(qty=3)]), "s-3").json()["id"]), "r-1").status_code == 202

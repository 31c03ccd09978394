"""Request builders and assertions shared by the API tests."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM = "application/problem+json"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}

# A typed-in card (card_present false); the SSN is a syntactically valid 18-digit one.
TYPED_CARD = {"card_number": "A10000001", "ssn": "110101199001011234", "name": "张三",
              "issuer_code": "110100000001"}


def item(qty: Any = 2, unit_price_fen: int = 1250, amount_fen: int | None = None,
         code: str = "XA01", name: str = "阿莫西林胶囊") -> dict[str, Any]:
    if amount_fen is None:
        amount_fen = round(float(qty) * unit_price_fen)
    return {"code": code, "name": name, "qty": qty, "unit_price_fen": unit_price_fen, "amount_fen": amount_fen}


def sale(*, card_read_id: str | None = None, card: dict[str, Any] | None = None,
         items: list[dict[str, Any]] | None = None, total_fen: int | None = None,
         **extra: Any) -> dict[str, Any]:
    """A settlement body; typed card unless a card_read_id is given; total computed unless given."""
    items = [item()] if items is None else items
    body: dict[str, Any] = {"kind": "settlement", "items": items,
                            "total_fen": sum(i["amount_fen"] for i in items) if total_fen is None else total_fen,
                            "operator": {"id": "op7", "name": "王芳"}}
    if card_read_id is not None:
        body["card_read_id"] = card_read_id
    else:
        body["card"] = dict(TYPED_CARD if card is None else card)
    body.update(extra)
    return body


def revoke(original_id: str) -> dict[str, Any]:
    return {"kind": "revoke", "original_id": original_id, "operator": {"id": "op7", "name": "王芳"}}


def post_tx(client: httpx.Client, body: Any, key: str | None, wait: float | None = 0) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    params = {} if wait is None else {"wait": wait}
    return client.post("/v1/transactions", json=body, headers=headers, params=params)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is problem+json with this status and stable code; returns the problem."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    problem: dict[str, Any] = response.json()
    assert problem.keys() >= PROBLEM_FIELDS, problem
    assert problem["status"] == status
    assert problem["code"] == code, problem
    assert isinstance(problem["detail"], str) and problem["detail"]
    return problem


def central_config(url: str, terminal_id: str = "T0001", wait_s: float = 5) -> str:
    return f'[terminal]\nid = "{terminal_id}"\n[upstream]\nurl = "{url}"\nwait_s = {wait_s}\n'

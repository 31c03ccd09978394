"""Shared bits of the ops tests: a transaction body and a way to wait for a condition."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

SSN = "110105198003150039"
NAME = "张伟"
CARD = "A10000123"
TYPED_SSN = "440106199208154321"
TYPED_NAME = "欧阳明珠"
TYPED_CARD = "B20000456"
OPERATOR_NAME = "王芳"


def settlement(*, card_read_id: str | None = None, card: dict[str, str] | None = None,
               total_fen: int = 2500) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "settlement",
        "items": [{"code": "XA01", "name": "阿莫西林胶囊", "qty": 2, "unit_price_fen": total_fen // 2,
                   "amount_fen": total_fen // 2 * 2}],
        "total_fen": total_fen // 2 * 2,
        "operator": {"id": "op7", "name": OPERATOR_NAME},
        "meta": {"pos_order_id": uuid.uuid4().hex[:12]},
    }
    if card_read_id:
        body["card_read_id"] = card_read_id
    else:
        body["card"] = card or {"card_number": TYPED_CARD, "ssn": TYPED_SSN, "name": TYPED_NAME,
                                "issuer_code": "440100000001"}
    return body


def post_transaction(api: httpx.Client, body: dict[str, Any], wait: float = 0) -> httpx.Response:
    return api.post("/v1/transactions", params={"wait": wait}, json=body,
                    headers={"Idempotency-Key": uuid.uuid4().hex})



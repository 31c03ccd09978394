"""Sample Transaction answers (local API shape) for the receipt tests."""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {
    "id": "tx-20261123-0001",
    "seq": 17,
    "kind": "settlement",
    "status": "settled",
    "mode": "online",
    "created_at": "2026-11-23T10:15:02+08:00",
    "business_time": "2026-11-23T10:15:00+08:00",
    "total_fen": 3780,
    "offline": False,
    "settlement": {
        "central_ref": "C2026112300042",
        "fund_paid_fen": 2500,
        "account_paid_fen": 780,
        "cash_paid_fen": 500,
    },
    "card": {"card_number": "A12345678", "ssn_masked": "110101********1234", "name_masked": "张*丰"},
    "items": [
        {"code": "XA01", "name": "阿莫西林胶囊", "qty": 2, "unit_price_fen": 1250, "amount_fen": 2500},
        {
            "code": "XB02",
            "name": "布洛芬缓释胶囊 0.3g*20粒",
            "qty": 1,
            "unit_price_fen": 1280,
            "amount_fen": 1280,
        },
    ],
    "operator": {"id": "op7", "name": "王芳"},
}


def tx(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out.update(changes)
    return out


# name -> (transaction, render_receipt keyword arguments)
DOCUMENTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "online": (tx(), {}),
    "offline": (
        tx(
            status="pending",
            mode="offline",
            offline=True,
            offline_reason="upstream_unreachable",
            settlement=None,
        ),
        {},
    ),
    "planned": (
        tx(
            status="pending",
            mode="planned_downtime",
            offline=True,
            offline_reason="planned_downtime",
            settlement=None,
        ),
        {},
    ),
    "revoke": (
        tx(id="tx-20261123-0002", seq=18, kind="revoke", original_id="tx-20261123-0001", total_fen=-3780),
        {},
    ),
    "reprint": (tx(), {"reprint": True}),
    "notice": (
        tx(offline=True, offline_reason="upstream_unreachable", mode="offline"),
        {"document": "notice"},
    ),
    "rejected": (
        tx(
            status="rejected", settlement=None, rejection={"code": "card_frozen", "message": "参保人欠费冻结"}
        ),
        {},
    ),
    "online_en": (tx(), {"language": "en"}),
}

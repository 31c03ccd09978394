"""Sample Transaction answers (the shape of `terminald.transactions.answer`) for
the receipt tests: one per state a document can state.

Ids are UUIDv7 strings like the spool's (36 characters: wider than a 32-column
line with its label). The money facts (`offline`, `paid_at_counter_fen`,
`refund_owed_fen`, `refund`, `revoked_by`) are set as the API states them for
each state, never derived by the templates.
"""

from __future__ import annotations

import copy
from typing import Any

SALE_ID = "0192f5e3-8a4b-7c21-9d3e-4f5a6b7c8d9e"
REVOKE_ID = "0192f5e9-1c2d-7e3f-8a4b-5c6d7e8f9a0b"

SETTLEMENT: dict[str, Any] = {
    "central_ref": "C2026112300042",
    "fund_paid_fen": 2500,
    "account_paid_fen": 780,
    "cash_paid_fen": 500,
}
REJECTION: dict[str, Any] = {"code": "card_frozen", "message": "参保人欠费冻结"}
REFUND: dict[str, Any] = {
    "paid_fen": 3280,
    "operator": {"id": "op9", "name": "李娜"},
    "at": "2026-11-25T09:30:12.345+08:00",
}

BASE: dict[str, Any] = {
    "id": SALE_ID,
    "seq": 17,
    "kind": "settlement",
    "status": "settled",
    "mode": "online",
    "created_at": "2026-11-23T10:15:02+08:00",
    "business_time": "2026-11-23T10:15:00+08:00",
    "total_fen": 3780,
    "offline": False,
    "offline_reason": None,
    "settlement": SETTLEMENT,
    "card": {"card_number": "A12345678", "ssn_masked": "110101********1234", "name_masked": "张*丰"},
    "card_present": True,
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
    "original_id": None,
    "revoked_by": None,
    "paid_at_counter_fen": 500,
    "refund_owed_fen": 0,
    "refund": None,
    "contact_phone_masked": None,
    "resolution": None,
    "history": [],
}


def tx(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out.update(copy.deepcopy(changes))
    return out


def outage(reason: str = "upstream_unreachable", **changes: Any) -> dict[str, Any]:
    """An outage sale: the POS was answered "pending", the patient paid the total."""
    mode = {"planned_downtime": "planned_downtime", "timeout": "online", "backlog": "online"}.get(reason, "offline")
    fields: dict[str, Any] = {
        "status": "pending",
        "mode": mode,
        "offline": True,
        "offline_reason": reason,
        "settlement": None,
        "paid_at_counter_fen": 3780,
    }
    fields.update(changes)
    return tx(**fields)


def revoke(**changes: Any) -> dict[str, Any]:
    """A revoke of SALE_ID as `answer()` gives it (no items; the card of the original), with
    `original`: the original's answer, which the receipt code adds for the amount handed back."""
    fields: dict[str, Any] = {
        "id": REVOKE_ID,
        "seq": 18,
        "kind": "revoke",
        "status": "settled",
        "created_at": "2026-11-23T11:02:41+08:00",
        "business_time": "2026-11-23T11:02:40+08:00",
        "total_fen": -3780,
        "items": [],
        "original_id": SALE_ID,
        "settlement": {"central_ref": "C2026112300057", "fund_paid_fen": -2500, "account_paid_fen": -780,
                       "cash_paid_fen": -500},
        "paid_at_counter_fen": None,
        "original": {"paid_at_counter_fen": 500, "refund": None},
    }
    fields.update(changes)
    return tx(**fields)


NOTICE = {"document": "notice"}

# name -> (transaction, render_receipt keyword arguments); every one also as "<name>_en".
STATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "online": (tx(), {}),
    # Recorded, the POS not answered yet: the only state that says "in progress".
    "pending": (tx(status="pending", settlement=None, paid_at_counter_fen=None), {}),
    "offline": (outage(), {}),
    "planned": (outage("planned_downtime"), {}),
    # Spooled while online, central did not answer within the POS's wait: an outage sale.
    "pending_timeout": (outage("timeout"), {}),
    "settled_after_outage": (
        outage("timeout", status="settled", settlement=SETTLEMENT, refund_owed_fen=3280),
        {},
    ),
    "settled_after_outage_notice": (
        outage("timeout", status="settled", settlement=SETTLEMENT, refund_owed_fen=3280),
        NOTICE,
    ),
    "notice": (outage(status="settled", settlement=SETTLEMENT, refund_owed_fen=3280), NOTICE),
    "notice_refunded": (
        outage(status="settled", settlement=SETTLEMENT, refund_owed_fen=0, refund=REFUND),
        NOTICE,
    ),
    "rejected": (
        tx(status="rejected", settlement=None, rejection=REJECTION, paid_at_counter_fen=None),
        {},
    ),
    "rejected_after_outage": (outage(status="rejected", rejection=REJECTION), {}),
    "rejected_after_outage_notice": (outage(status="rejected", rejection=REJECTION), NOTICE),
    "resolved_self_pay": (
        tx(
            status="resolved",
            settlement=None,
            rejection=REJECTION,
            paid_at_counter_fen=None,
            resolution={"resolution": "self_pay", "note": "患者同意自费", "at": "2026-11-23T10:20:00+08:00"},
        ),
        {},
    ),
    "resolved_voided": (
        tx(
            status="resolved",
            settlement=None,
            rejection=REJECTION,
            paid_at_counter_fen=None,
            resolution={"resolution": "voided", "note": "患者放弃购药", "at": "2026-11-23T10:21:00+08:00"},
        ),
        {},
    ),
    "revoke": (revoke(), {}),
    "revoke_pending": (revoke(status="pending", settlement=None), {}),
    "revoke_rejected": (
        revoke(
            status="rejected",
            settlement=None,
            rejection={"code": "not_revocable", "message": "原结算已超过可撤销期限"},
        ),
        {},
    ),
    "revoked_original": (tx(revoked_by=REVOKE_ID), {}),
    "reprint": (tx(), {"reprint": True}),
}

DOCUMENTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    **STATES,
    **{f"{name}_en": (t, {**kw, "language": "en"}) for name, (t, kw) in STATES.items()},
}

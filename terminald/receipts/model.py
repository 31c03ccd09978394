"""What a receipt shows, read from a local-API Transaction answer.

`parse_transaction` checks the shape once, so templates work on typed,
sanitised, masked values and bad data is a `ReceiptDataError`, never a
KeyError half-way through a printout. Masking is applied here even when the
input is already masked (it is idempotent): full identity numbers never
reach paper.

The money facts (`offline`, `paid_at_counter_fen`, `refund_owed_fen`,
`refund`, `revoked_by`) are read as the answer states them, never worked out
again from `mode`, the settlement or the link state: the API decided them
once, when the POS got its answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from drivers.printers.escpos import sanitise
from terminald.errors import TerminaldError
from terminald.privacy import mask_card, mask_name, mask_ssn

__all__ = [
    "KINDS",
    "STATUSES",
    "Item",
    "ReceiptData",
    "ReceiptDataError",
    "Refund",
    "Settlement",
    "fen",
    "parse_transaction",
]

KINDS = ("settlement", "revoke")
STATUSES = ("pending", "settled", "rejected", "resolved")
RESOLUTIONS = ("self_pay", "voided")


class ReceiptDataError(TerminaldError):
    code = "receipt_data_invalid"
    status = 422
    title = "The transaction cannot be printed"


@dataclass(frozen=True)
class Item:
    name: str
    qty: str
    unit_price_fen: int
    amount_fen: int


@dataclass(frozen=True)
class Settlement:
    central_ref: str
    fund_paid_fen: int
    account_paid_fen: int
    cash_paid_fen: int


@dataclass(frozen=True)
class Refund:
    """The fund's share handed to the patient of an outage sale (once)."""

    paid_fen: int
    operator: str
    at: str


@dataclass(frozen=True)
class ReceiptData:
    id: str
    seq: int | None
    kind: str
    status: str
    business_time: str
    total_fen: int
    offline: bool
    offline_reason: str
    settlement: Settlement | None
    rejection: str
    original_id: str
    card_number: str
    ssn: str
    name: str
    operator: str
    items: tuple[Item, ...]
    # What the patient paid at the counter (None: undecided, or a revoke).
    paid_at_counter_fen: int | None = None
    # The fund's share still owed to the patient of an outage sale central settled.
    refund_owed_fen: int = 0
    refund: Refund | None = None
    revoked_by: str = ""
    resolution: str = ""  # "" | self_pay | voided
    resolution_note: str = ""
    # A revoke: what the patient paid for the original and what of it was already
    # handed back (the original's own answer, when the caller had it).
    original_paid_fen: int | None = None
    original_refunded_fen: int = 0


def fen(amount: int) -> str:
    """12345 -> "123.45"; integer arithmetic only."""
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def _text(value: Any) -> str:
    return sanitise(value, single_line=True).strip() if value is not None else ""


def _int(tx: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> int:
    value = tx.get(key)
    if value is None and not required:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReceiptDataError(f"{where}{key} must be an integer number of fen, got {type(value).__name__}")
    return value


def _optional_int(tx: Mapping[str, Any], key: str, where: str) -> int | None:
    """An amount the answer states as null when it is not known (never guessed here)."""
    if tx.get(key) is None:
        return None
    return _int(tx, key, where)


def _time(value: Any, what: str = "business_time") -> str:
    if not isinstance(value, str):
        raise ReceiptDataError(f"{what} must be an RFC 3339 string")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ReceiptDataError(f"{what} {_text(value)!r} is not RFC 3339") from exc
    # Business time is printed as it happened at the counter, in its own offset.
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _qty(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ReceiptDataError("item qty must be a number")
    try:
        d = Decimal(str(value))
    except InvalidOperation as exc:
        raise ReceiptDataError(f"item qty {_text(value)!r} is not a number") from exc
    if not d.is_finite():
        raise ReceiptDataError("item qty must be finite")
    text = format(d.normalize(), "f")
    return text


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ReceiptDataError(f"{what} must be an object")
    return value


def parse_transaction(tx: Mapping[str, Any]) -> ReceiptData:
    if not isinstance(tx, Mapping):
        raise ReceiptDataError("the transaction must be an object")
    tx_id = _text(tx.get("id"))
    if not tx_id:
        raise ReceiptDataError("the transaction has no id")
    seq = tx.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise ReceiptDataError("seq must be an integer")
    raw_items = tx.get("items") or []
    if not isinstance(raw_items, list):
        raise ReceiptDataError("items must be a list")
    items = []
    for i, it in enumerate(raw_items):
        it = _mapping(it, f"items[{i}]")
        items.append(
            Item(
                name=_text(it.get("name")) or _text(it.get("code")),
                qty=_qty(it.get("qty", 1)),
                unit_price_fen=_int(it, "unit_price_fen", f"items[{i}].", required=False),
                amount_fen=_int(it, "amount_fen", f"items[{i}]."),
            )
        )
    s = tx.get("settlement")
    settlement = None
    if s is not None:
        s = _mapping(s, "settlement")
        settlement = Settlement(
            central_ref=_text(s.get("central_ref")),
            fund_paid_fen=_int(s, "fund_paid_fen", "settlement."),
            account_paid_fen=_int(s, "account_paid_fen", "settlement."),
            cash_paid_fen=_int(s, "cash_paid_fen", "settlement."),
        )
    card = _mapping(tx.get("card"), "card")
    operator = _mapping(tx.get("operator"), "operator")
    rejection = _mapping(tx.get("rejection"), "rejection")
    kind = _text(tx.get("kind")) or "settlement"
    if kind not in KINDS:
        raise ReceiptDataError(f"kind must be one of {KINDS}")
    status = _text(tx.get("status"))
    if status not in STATUSES:
        # A document states the record's state: one it does not know cannot be printed.
        raise ReceiptDataError(f"status must be one of {STATUSES}")
    resolution = _mapping(tx.get("resolution"), "resolution")
    resolved_as = _text(resolution.get("resolution"))
    if status == "resolved" and resolved_as not in RESOLUTIONS:
        raise ReceiptDataError(f"a resolved transaction needs resolution.resolution in {RESOLUTIONS}")
    refund = None
    raw_refund = _mapping(tx.get("refund"), "refund")
    if raw_refund:
        refund_operator = raw_refund.get("operator")
        if isinstance(refund_operator, Mapping):
            refund_operator = refund_operator.get("name") or refund_operator.get("id")
        refund = Refund(
            paid_fen=_int(raw_refund, "paid_fen", "refund."),
            operator=_text(refund_operator),
            at=_time(raw_refund.get("at"), "refund.at"),
        )
    offline = tx.get("offline")
    if offline is not None and not isinstance(offline, bool):
        raise ReceiptDataError("offline must be true or false")
    original = _mapping(tx.get("original"), "original")
    original_refund = _mapping(original.get("refund"), "original.refund")
    return ReceiptData(
        id=tx_id,
        seq=seq,
        kind=kind,
        status=status,
        business_time=_time(tx.get("business_time") or tx.get("created_at")),
        total_fen=_int(tx, "total_fen", ""),
        offline=offline is True,
        offline_reason=_text(tx.get("offline_reason")),
        settlement=settlement,
        rejection=_text(rejection.get("message") or rejection.get("code")),
        original_id=_text(tx.get("original_id")),
        card_number=mask_card(_text(card.get("card_number"))),
        ssn=mask_ssn(_text(card.get("ssn_masked") or card.get("ssn"))),
        name=mask_name(_text(card.get("name_masked") or card.get("name"))),
        operator=_text(operator.get("name") or operator.get("id")),
        items=tuple(items),
        paid_at_counter_fen=_optional_int(tx, "paid_at_counter_fen", ""),
        refund_owed_fen=_int(tx, "refund_owed_fen", "", required=False),
        refund=refund,
        revoked_by=_text(tx.get("revoked_by")),
        resolution=resolved_as if status == "resolved" else "",
        resolution_note=_text(resolution.get("note")),
        original_paid_fen=_optional_int(original, "paid_at_counter_fen", "original."),
        original_refunded_fen=_int(original_refund, "paid_fen", "original.refund.", required=False),
    )

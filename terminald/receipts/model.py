"""What a receipt shows, read from a local-API Transaction answer.

`parse_transaction` checks the shape once, so templates work on typed,
sanitised, masked values and bad data is a `ReceiptDataError`, never a
KeyError half-way through a printout. Masking is applied here even when the
input is already masked (it is idempotent): full identity numbers never
reach paper.
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

__all__ = ["Item", "ReceiptData", "ReceiptDataError", "Settlement", "fen", "parse_transaction"]


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


def _time(value: Any) -> str:
    if not isinstance(value, str):
        raise ReceiptDataError("business_time must be an RFC 3339 string")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ReceiptDataError(f"business_time {_text(value)!r} is not RFC 3339") from exc
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
    return ReceiptData(
        id=tx_id,
        seq=seq,
        kind=_text(tx.get("kind")) or "settlement",
        status=_text(tx.get("status")),
        business_time=_time(tx.get("business_time") or tx.get("created_at")),
        total_fen=_int(tx, "total_fen", ""),
        offline=bool(tx.get("offline")),
        offline_reason=_text(tx.get("offline_reason")),
        settlement=settlement,
        rejection=_text(rejection.get("message") or rejection.get("code")),
        original_id=_text(tx.get("original_id")),
        card_number=mask_card(_text(card.get("card_number"))),
        ssn=mask_ssn(_text(card.get("ssn_masked") or card.get("ssn"))),
        name=mask_name(_text(card.get("name_masked") or card.get("name"))),
        operator=_text(operator.get("name") or operator.get("id")),
        items=tuple(items),
    )

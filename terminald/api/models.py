"""Request and answer shapes of the local API (see docs/api.md).

Money is integer fen everywhere; quantities are decimals with at most three
places, never floats, so that `amount_fen = round(qty * unit_price_fen)` is
exact and the same on the POS, here and at central.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from drivers.cards.model import CardData

MAX_FUTURE = timedelta(minutes=5)

# Money is an integer of fen on the wire: "2500" or 2500.0 is a POS bug, not something to coerce.
Fen = Annotated[int, Strict()]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CardIn(_In):
    card_number: str = Field(min_length=1, max_length=20, pattern=r"^[0-9A-Za-z]+$")
    ssn: str = Field(min_length=15, max_length=18, pattern=r"^[0-9]{15}([0-9]{2}[0-9Xx])?$")
    name: str = Field(min_length=1, max_length=50)
    issuer_code: str = Field(default="", max_length=12)


class ItemIn(_In):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    qty: Decimal = Field(gt=0, le=Decimal(100000))
    unit_price_fen: Fen = Field(ge=0, le=10**9)
    amount_fen: Fen = Field(ge=0, le=10**10)

    @field_validator("qty", mode="before")
    @classmethod
    def _no_float_noise(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("qty must be a number")
        if isinstance(value, float):
            # JSON numbers arrive as float; str() keeps what the POS wrote (0.1 stays 0.1).
            return Decimal(str(value))
        return value

    @field_validator("qty")
    @classmethod
    def _three_places(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value.as_tuple().exponent < -3:  # type: ignore[operator]
            raise ValueError("qty has at most 3 decimal places")
        return value

    @model_validator(mode="after")
    def _amount_adds_up(self) -> ItemIn:
        expected = int((self.qty * self.unit_price_fen).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        if self.amount_fen != expected:
            raise ValueError(f"amount_fen must be round(qty × unit_price_fen) = {expected}")
        return self


class OperatorIn(_In):
    id: str = Field(min_length=1, max_length=32)
    name: str = Field(default="", max_length=50)


# The rules between fields that a JSON schema can state, for the OpenAPI document (code
# generators, schemathesis); `_shape_by_kind` below enforces them, and the arithmetic
# (amount_fen, total_fen) that no schema can state.
KIND_RULES: dict[str, Any] = {
    "if": {"properties": {"kind": {"const": "revoke"}}, "required": ["kind"]},
    # A revoke: original_id, operator, business_time and meta, nothing else.
    "then": {
        "required": ["original_id"],
        "properties": {
            "original_id": {"type": "string", "minLength": 1},
            "card_read_id": {"type": "null"},
            "card": {"type": "null"},
            "items": {"type": "array", "maxItems": 0},
            "total_fen": {"type": "null"},
            "contact_phone": {"type": "null"},
        },
    },
    # A settlement (the default kind): items, their total, and exactly one of card_read_id
    # (the card was read here) or card (typed in); never original_id.
    "else": {
        "required": ["items", "total_fen"],
        "properties": {
            "original_id": {"type": "null"},
            "items": {"type": "array", "minItems": 1},
            "total_fen": {"type": "integer"},
        },
        "oneOf": [
            {"required": ["card_read_id"],
             "properties": {"card_read_id": {"type": "string"}, "card": {"type": "null"}}},
            {"required": ["card"],
             "properties": {"card": {"type": "object"}, "card_read_id": {"type": "null"}}},
        ],
    },
}


class TransactionIn(_In):
    model_config = ConfigDict(json_schema_extra=KIND_RULES)

    kind: Literal["settlement", "revoke"] = "settlement"
    card_read_id: str | None = Field(default=None, max_length=64)
    card: CardIn | None = None
    items: list[ItemIn] = Field(default_factory=list, max_length=500)
    total_fen: Fen | None = Field(default=None, ge=0, le=10**11)
    operator: OperatorIn
    business_time: datetime | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    original_id: str | None = Field(default=None, max_length=64)
    # So staff can call the patient back about money owed (stored locally, never uploaded,
    # shown masked): digits, with an optional leading + and inner spaces or dashes.
    contact_phone: str | None = Field(default=None, min_length=5, max_length=20,
                                      pattern=r"^\+?[0-9][0-9 -]*[0-9]$")

    @field_validator("business_time")
    @classmethod
    def _aware_not_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("business_time needs a UTC offset (RFC 3339)")
        if value - datetime.now(value.tzinfo) > MAX_FUTURE:
            raise ValueError("business_time is more than 5 minutes in the future")
        return value

    @model_validator(mode="after")
    def _shape_by_kind(self) -> TransactionIn:
        if self.kind == "settlement":
            if self.original_id is not None:
                raise ValueError("original_id belongs to a revoke")
            if (self.card_read_id is None) == (self.card is None):
                raise ValueError("give exactly one of card_read_id (card read here) or card (typed in)")
            if not self.items:
                raise ValueError("a settlement needs at least one item")
            total = sum(item.amount_fen for item in self.items)
            if self.total_fen is None or self.total_fen != total:
                raise ValueError(f"total_fen must be the sum of amount_fen = {total}")
        else:
            if not self.original_id:
                raise ValueError("a revoke needs original_id")
            if (self.items or self.card or self.card_read_id or self.total_fen is not None
                    or self.contact_phone is not None):
                raise ValueError("a revoke carries only original_id, operator, business_time and meta")
        return self


class RefundIn(_In):
    paid_fen: int = Field(gt=0, le=10**11)  # lax: 2500.0 is 2500, 2500.5 is refused
    operator: OperatorIn


class ResolveIn(_In):
    resolution: Literal["self_pay", "voided"]
    note: str | None = Field(default=None, max_length=500)


class ReceiptIn(_In):
    printer: str | None = Field(default=None, max_length=32)
    copies: int = Field(default=1, ge=1, le=3)
    document: Literal["receipt", "notice"] = "receipt"


class CardReadIn(_In):
    reader: str | None = Field(default=None, max_length=128)
    timeout_s: float = Field(default=0, ge=0, le=60)


class ResettleIn(_In):
    # Visible ASCII, as every card_read_id is ("cr_" + URL-safe base64): nothing to trim away.
    card_read_id: str = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")


class AwaitingSaleOut(BaseModel):
    """An outage sale of the card's holder that waits for them (nhsa.reentry = "patient_present")."""

    id: str
    seq: int
    business_time: str
    total_fen: int
    paid_at_counter_fen: int | None
    pos_order_id: Any = None  # the sale's meta.pos_order_id, as the POS sent it
    revoked_by: str | None = None


class CardReadOut(BaseModel):
    card_read_id: str
    read_at: str
    reader: str
    atr: str
    card: CardData  # the driver's dataclass: one definition of a card's fields
    # This person's outage sales that can be re-settled now (POST /v1/transactions/{id}/resettle);
    # always [] unless re-entry waits for the patient.
    awaiting_patient: list[AwaitingSaleOut] = Field(default_factory=list)


class PrintSubmitted(BaseModel):
    job_id: str
    printer: str
    reprint: bool
    document: Literal["receipt", "notice"]


class PrintRetried(PrintSubmitted):
    retry_of: str  # the `unknown` job this one prints again


class PrintJob(BaseModel):
    job_id: str
    tx_id: str
    document: Literal["receipt", "notice"]
    printer: str
    copies: int
    reprint: bool
    state: Literal["queued", "printing", "done", "failed", "unknown", "cancelled"]
    error: str | None = None
    attempts: int
    created_at: str
    updated_at: str
    idempotency_key: str | None = None  # the receipt request's Idempotency-Key, if it had one
    retry_of: str | None = None  # this job prints an `unknown` job again
    retried_by: str | None = None  # this `unknown` job was printed again by that job


class PrintJobList(BaseModel):
    items: list[PrintJob]


class CardOut(BaseModel):
    card_number: str
    ssn_masked: str
    name_masked: str


class HistoryEntry(BaseModel):
    at: str
    status: str
    detail: str


class TransactionOut(BaseModel):
    id: str
    seq: int
    idempotency_key: str
    meta: dict[str, Any] = Field(default_factory=dict)
    kind: Literal["settlement", "revoke"]
    status: Literal["pending", "settled", "rejected", "resolved"]
    awaiting_patient: bool = False  # pending, waiting for its patient to re-settle it
    mode: Literal["online", "offline", "planned_downtime"]
    created_at: str
    business_time: str
    total_fen: int
    offline: bool
    offline_reason: str | None = None
    settlement: dict[str, Any] | None = None
    rejection: dict[str, Any] | None = None
    resolution: dict[str, Any] | None = None
    original_id: str | None = None
    revoked_by: str | None = None
    paid_at_counter_fen: int | None = None
    refund_owed_fen: int = 0
    refund: dict[str, Any] | None = None
    contact_phone_masked: str | None = None
    card: CardOut | None = None
    card_present: bool = False
    items: list[dict[str, Any]] = Field(default_factory=list)
    operator: dict[str, Any] = Field(default_factory=dict)
    history: list[HistoryEntry] = Field(default_factory=list)


class TransactionList(BaseModel):
    items: list[TransactionOut]
    next_after_seq: int | None

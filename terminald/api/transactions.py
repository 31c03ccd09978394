"""Transactions: record (write-ahead), look up, list, resolve."""

from __future__ import annotations

import asyncio
import datetime
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema

from spool import RefundMismatch, Transition
from terminald.api.deps import SQLITE_MAX_INT, daemon, load_record
from terminald.api.models import RefundIn, ResettleIn, ResolveIn, TransactionIn, TransactionList, TransactionOut
from terminald.api.problems import problems
from terminald.errors import ConflictError, ValidationFailed
from terminald.transactions import KEY_MAX, KEY_PATTERN, answer

if TYPE_CHECKING:  # the daemon is built above the routes
    from spool import Record
    from terminald.daemon import Daemon

router = APIRouter(tags=["transactions"])

# The counter's hot path reads its two parameters itself (the recorder checks the key, `_wait`
# the query) instead of declaring them: FastAPI's per-request parameter machinery cost about as
# much as validating the whole body. They are declared here for the OpenAPI document only.
WAIT_MAX_S = 30
POS_ORDER_ID_MAX = 256
CREATE_PARAMETERS = [
    {"name": "wait", "in": "query", "required": False,
     "description": "seconds to wait for central's outcome (default: upstream.wait_s)",
     "schema": {"anyOf": [{"type": "number", "minimum": 0, "maximum": WAIT_MAX_S}, {"type": "null"}],
                "title": "Wait"}},
    {"name": "Idempotency-Key", "in": "header", "required": True,
     "description": "the POS's own id for this transaction; a repeat gets the stored answer",
     "schema": {"type": "string", "minLength": 1, "maxLength": KEY_MAX, "pattern": KEY_PATTERN,
                "title": "Idempotency-Key"}},
]
# The body, for the document: a reference to TransactionIn, whose schema and those of the models
# it uses (CardIn, ItemIn, OperatorIn) `deps.with_request_models` moves into components.
_, _DEFS = models_json_schema([(TransactionIn, "validation")], ref_template="#/components/schemas/{model}")
CREATE_BODY = {"$ref": "#/components/schemas/TransactionIn", "$defs": _DEFS["$defs"]}


@router.post("/v1/transactions", status_code=201, response_model=TransactionOut,
             responses={200: {"model": TransactionOut, "description": "the stored answer for a repeated key"},
                        202: {"model": TransactionOut, "description": "committed, central has not answered yet"},
                        **problems({403: "card_frozen, offline_limit_exceeded, card_not_present, card_expired",
                                    404: "not_found (revoke of an unknown original_id)",
                                    409: "idempotency_conflict, not_revocable",
                                    422: "validation_failed, card_read_unknown, card_read_used",
                                    503: "spool_unavailable", 507: "spool_full"})},
             openapi_extra={"parameters": CREATE_PARAMETERS,
                            "requestBody": {"required": True,
                                            "content": {"application/json": {"schema": CREATE_BODY}}}})
async def create(request: Request) -> JSONResponse:
    d = daemon(request)
    wait = _wait(request.query_params.get("wait"))
    raw = await request.body()
    outcome = await d.recorder.record(raw, request.headers.get("idempotency-key"), wait)
    record = outcome.record
    if outcome.status_code == 202 and record.outage_reason == record.offline_reason:
        # Spooled as an outage sale in this very commit: its history is that one entry.
        history = [Transition.spooled(record.spooled_at, record.offline, record.offline_reason)]
    else:
        history = await asyncio.to_thread(d.spool.history, record.record_id)  # type: ignore[union-attr]
    body = _answer(d, outcome.record, history)
    return JSONResponse(body, status_code=outcome.status_code)


def _answer(d: Daemon, record: Record, history: list[Any] | None) -> dict[str, Any]:
    """`answer` with what only the daemon's memory knows: does it wait for its patient."""
    return answer(record, history, d.cfg.terminal.timezone, awaiting_patient=d.reentry.awaiting(record))


def _wait(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= WAIT_MAX_S:  # NaN fails too
        raise ValidationFailed(f"query.wait: a number of seconds from 0 to {WAIT_MAX_S}",
                               errors=[{"loc": ["query", "wait"], "msg": f"not a number from 0 to {WAIT_MAX_S}",
                                        "type": "wait"}])
    return value


@router.get("/v1/transactions/{record_id}", response_model=TransactionOut,
            responses=problems({404: "not_found", 422: "validation_failed", 503: "spool_unavailable"}))
async def get_one(request: Request, record_id: str) -> dict[str, Any]:
    d = daemon(request)
    record = await load_record(d, record_id)
    history = await asyncio.to_thread(d.spool.history, record_id)  # type: ignore[union-attr]
    return _answer(d, record, history)


@router.get("/v1/transactions", response_model=TransactionList,
            responses=problems({422: "validation_failed", 503: "spool_unavailable"}))
async def list_all(
    request: Request,
    status: Annotated[Literal["pending", "settled", "rejected", "resolved"] | None, Query()] = None,
    after_seq: Annotated[int, Query(ge=0, le=SQLITE_MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    idempotency_key: Annotated[str | None, Query(
        min_length=1, max_length=KEY_MAX, pattern=KEY_PATTERN,
        description="the sale recorded under this Idempotency-Key (an empty list: none was)")] = None,
    pos_order_id: Annotated[str | None, Query(
        min_length=1, max_length=POS_ORDER_ID_MAX,
        description="the sales whose meta.pos_order_id is this (a JSON number matches its decimal text)")] = None,
    business_date: Annotated[str | None, Query(
        pattern=r"^\d{4}-\d{2}-\d{2}$", json_schema_extra={"format": "date"},
        description="the sales of this business day (YYYY-MM-DD, the day of business_time in its own offset)")] = None,
    awaiting_patient: Annotated[bool | None, Query(
        description="true: only the records waiting for their patient (nhsa.reentry = \"patient_present\"); "
                    "false: only the others")] = None,
) -> dict[str, Any]:
    """Transactions in seq order, `limit` at a time after `after_seq`; every filter given must hold."""
    if business_date is not None:
        try:
            datetime.date.fromisoformat(business_date)
        except ValueError as exc:
            raise ValidationFailed(f"query.business_date: {business_date!r} is not a calendar date (YYYY-MM-DD)",
                                   errors=[{"loc": ["query", "business_date"], "msg": "not a calendar date",
                                            "type": "date"}]) from exc
    d = daemon(request)
    assert d.spool is not None
    spool = d.spool

    def search(status: str | None, after: int) -> list[Record]:
        return spool.search(status, after, limit, idempotency_key=idempotency_key, pos_order_id=pos_order_id,
                            business_date=business_date)

    if awaiting_patient is None:
        records = await asyncio.to_thread(search, status, after_seq)
    elif awaiting_patient and status not in (None, "pending"):
        records = []  # only pending records wait
    else:
        # Filtered in memory, page after page: only pending records can wait, so `true` reads
        # the backlog alone; `false` reads what the other filters give.
        records = []
        after = after_seq
        query_status = "pending" if awaiting_patient else status
        while len(records) < limit:
            page = await asyncio.to_thread(search, query_status, after)
            records += [r for r in page if d.reentry.awaiting(r) == awaiting_patient][:limit - len(records)]
            if len(page) < limit:
                break
            after = page[-1].seq
    return {"items": [_answer(d, r, None) for r in records],
            "next_after_seq": records[-1].seq if len(records) == limit else None}


@router.post("/v1/transactions/{record_id}/refund", response_model=TransactionOut,
             responses=problems({404: "not_found", 409: "invalid_transition, refund_amount_mismatch",
                                 422: "validation_failed", 503: "spool_unavailable", 507: "spool_full"}))
async def refund(request: Request, record_id: str, body: Annotated[RefundIn, Body()]) -> dict[str, Any]:
    """Record that what an outage sale owed the patient (the fund's share, or all they paid when
    it was voided) was handed over: exactly the amount owed (`refund_owed_fen`), once."""
    d = daemon(request)
    assert d.spool is not None
    try:
        record = await asyncio.to_thread(d.spool.refund, record_id, body.paid_fen, body.operator.model_dump())
    except RefundMismatch as exc:  # the amount owed is part of the answer, not only of its text
        raise ConflictError(str(exc), code="refund_amount_mismatch", owed_fen=exc.owed_fen) from exc
    d.publish("transaction.refunded", {"id": record.record_id, "seq": record.seq, "paid_fen": body.paid_fen})
    history = await asyncio.to_thread(d.spool.history, record_id)
    return _answer(d, record, history)


@router.post("/v1/transactions/{record_id}/resolve", response_model=TransactionOut,
             responses=problems({404: "not_found", 409: "invalid_transition", 422: "validation_failed",
                                 503: "spool_unavailable", 507: "spool_full"}))
async def resolve(request: Request, record_id: str, body: Annotated[ResolveIn, Body()]) -> dict[str, Any]:
    d = daemon(request)
    assert d.spool is not None
    record = await asyncio.to_thread(d.spool.resolve, record_id, body.resolution, body.note)
    d.publish("transaction.resolved", {"id": record.record_id, "seq": record.seq,
                                       "resolution": body.resolution})
    history = await asyncio.to_thread(d.spool.history, record_id)
    return _answer(d, record, history)


@router.post("/v1/transactions/{record_id}/resettle", response_model=TransactionOut,
             responses={202: {"model": TransactionOut, "description": "released; central has not answered yet"},
                        **problems({404: "not_found",
                                    409: "not_awaiting_patient, card_read_other_person",
                                    422: "validation_failed, card_read_unknown, card_read_used",
                                    503: "spool_unavailable"})})
async def resettle(request: Request, record_id: str, body: Annotated[ResettleIn, Body()],
                   wait: Annotated[float | None, Query(
                       ge=0, le=WAIT_MAX_S,
                       description="seconds to wait for central's outcome (default: upstream.wait_s)")] = None,
                   ) -> JSONResponse:
    """Re-settle an outage sale that waits for its patient (nhsa.reentry = "patient_present"),
    now that the patient is here: `card_read_id` is a read of their card. Their earlier outage
    sales go first. 200: decided (settled with central's split, or rejected); 202: still pending
    when `wait` ended. A repeat answers the state and sends nothing again."""
    d = daemon(request)
    outcome = await d.recorder.resettle(record_id, body.card_read_id, wait)
    history = await asyncio.to_thread(d.spool.history, record_id)  # type: ignore[union-attr]
    return JSONResponse(_answer(d, outcome.record, history), status_code=outcome.status_code)

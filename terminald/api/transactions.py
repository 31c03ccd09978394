"""Transactions: record (write-ahead), look up, list, resolve."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse

from terminald.api.deps import daemon, load_record
from terminald.api.models import ResolveIn, TransactionIn, TransactionList, TransactionOut
from terminald.errors import ValidationFailed
from terminald.transactions import answer

router = APIRouter(tags=["transactions"])

STATUSES = ("pending", "settled", "rejected", "resolved")


@router.post("/v1/transactions", status_code=201, response_model=TransactionOut,
             responses={200: {"model": TransactionOut, "description": "the stored answer for a repeated key"},
                        202: {"model": TransactionOut, "description": "committed, central has not answered yet"}},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": TransactionIn.model_json_schema(ref_template="#/components/schemas/{model}")}}}})
async def create(
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    wait: Annotated[float | None, Query(ge=0, le=30)] = None,
) -> JSONResponse:
    d = daemon(request)
    raw = await request.body()
    outcome = await d.recorder.record(raw, idempotency_key, wait)
    history = await asyncio.to_thread(d.spool.history, outcome.record.record_id)  # type: ignore[union-attr]
    body = answer(outcome.record, history, timed_out=outcome.status_code == 202)
    return JSONResponse(body, status_code=outcome.status_code)


@router.get("/v1/transactions/{record_id}", response_model=TransactionOut)
async def get_one(request: Request, record_id: str) -> dict[str, Any]:
    d = daemon(request)
    record = await load_record(d, record_id)
    history = await asyncio.to_thread(d.spool.history, record_id)  # type: ignore[union-attr]
    return answer(record, history)


@router.get("/v1/transactions", response_model=TransactionList)
async def list_all(
    request: Request,
    status: Annotated[str | None, Query()] = None,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    if status is not None and status not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}")
    d = daemon(request)
    assert d.spool is not None
    records = await asyncio.to_thread(d.spool.records, status, after_seq, limit)
    return {"items": [answer(r) for r in records],
            "next_after_seq": records[-1].seq if len(records) == limit else None}


@router.post("/v1/transactions/{record_id}/resolve", response_model=TransactionOut)
async def resolve(request: Request, record_id: str, body: Annotated[ResolveIn, Body()]) -> dict[str, Any]:
    d = daemon(request)
    assert d.spool is not None
    record = await asyncio.to_thread(d.spool.resolve, record_id, body.resolution, body.note)
    d.publish("transaction.resolved", {"id": record.record_id, "seq": record.seq,
                                       "resolution": body.resolution})
    history = await asyncio.to_thread(d.spool.history, record_id)
    return answer(record, history)

"""Receipts: print (a durable job), preview as PNG, job state."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response

from terminald.api.deps import daemon, load_record
from terminald.api.models import PrintSubmitted, ReceiptIn
from terminald.api.problems import problems
from terminald.errors import NotFoundError, PrinterNotConfigured
from terminald.receipts.documents import receipt_png, receipt_tx, renderer
from terminald.receipts.templates import document_kind

router = APIRouter(tags=["receipts"])


@router.post("/v1/transactions/{record_id}/receipt", status_code=202, response_model=PrintSubmitted,
             responses=problems({404: "not_found", 422: "validation_failed", 503: "printer_unavailable"}))
async def print_receipt(request: Request, record_id: str,
                        body: Annotated[ReceiptIn | None, Body()] = None) -> JSONResponse:
    d = daemon(request)
    args = body or ReceiptIn()
    record = await load_record(d, record_id)
    name = args.printer or next(iter(d.printers), None)
    if name is None or name not in d.printers:
        raise PrinterNotConfigured(f"no printer named {name!r} is configured" if name else "no printer is configured")
    tx = await asyncio.to_thread(receipt_tx, d, record)
    render = renderer(d, tx, d.printers[name].cfg, args.document)
    # The first copy of each document (receipt, notice) is the original; the queue counts
    # per (transaction, document) and queues under one lock, so a race cannot make two originals.
    job_id, reprint = await asyncio.to_thread(d.print_queue.submit_document, record_id,
                                              document_kind(args.document), render, name, args.copies)
    return JSONResponse({"job_id": job_id, "printer": name, "reprint": reprint}, status_code=202)


@router.get("/v1/transactions/{record_id}/receipt.png",
            responses={200: {"content": {"image/png": {}}}, **problems({404: "not_found", 422: "validation_failed"})},
            response_class=Response)
async def preview(request: Request, record_id: str, document: str = "receipt") -> Response:
    d = daemon(request)
    record = await load_record(d, record_id)
    png = await asyncio.to_thread(receipt_png, d, record, "notice" if document == "notice" else "receipt")
    return Response(png, media_type="image/png")


@router.get("/v1/print-jobs/{job_id}", responses=problems({404: "not_found", 422: "validation_failed"}))
async def job(request: Request, job_id: str) -> dict[str, Any]:
    d = daemon(request)
    found = await asyncio.to_thread(d.print_queue.get, job_id)
    if found is None:
        raise NotFoundError(f"no print job {job_id}")
    return found

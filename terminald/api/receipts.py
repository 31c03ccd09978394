"""Receipts: print (a durable job), preview as PNG; print jobs: state, cancel, retry."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from terminald.api.deps import daemon, load_record
from terminald.api.models import PrintJob, PrintJobList, PrintRetried, PrintSubmitted, ReceiptIn
from terminald.api.problems import problems
from terminald.errors import NotFoundError, PrinterNotConfigured
from terminald.receipts.documents import receipt_png, receipt_tx, renderer
from terminald.receipts.templates import document_kind
from terminald.timefmt import local_times
from terminald.transactions import KEY_MAX, KEY_PATTERN

router = APIRouter(tags=["receipts"])

# Like a transaction's key (1-64 visible ASCII characters, inner spaces allowed), but optional;
# kept apart from transaction keys, so a POS may use its order id for both.
ReceiptKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=KEY_MAX, pattern=KEY_PATTERN,
    description="optional: a repeat of the request with this key prints nothing more and gets the first "
                "answer (200); the key with another transaction, document, printer or copies is 409")]


@router.post("/v1/transactions/{record_id}/receipt", status_code=202, response_model=PrintSubmitted,
             responses={200: {"model": PrintSubmitted,
                              "description": "a repeat of the Idempotency-Key: the first request's job"},
                        **problems({404: "not_found", 409: "idempotency_conflict", 422: "validation_failed",
                                    503: "printer_unavailable"})})
async def print_receipt(request: Request, record_id: str,
                        body: Annotated[ReceiptIn | None, Body()] = None,
                        idempotency_key: ReceiptKey = None) -> JSONResponse:
    d = daemon(request)
    args = body or ReceiptIn()
    record = await load_record(d, record_id)
    name = args.printer or next(iter(d.printers), None)
    if name is None or name not in d.printers:
        raise PrinterNotConfigured(f"no printer named {name!r} is configured" if name else "no printer is configured")
    tx = await asyncio.to_thread(receipt_tx, d, record)
    render = renderer(d, tx, d.printers[name].cfg, args.document)
    kind = document_kind(args.document)
    # The first copy of each document (receipt, notice) is the original; the queue counts
    # per (transaction, document) and queues under one lock, so a race cannot make two originals.
    if idempotency_key is None:
        job_id, reprint = await asyncio.to_thread(d.print_queue.submit_document, record_id, kind, render, name,
                                                  args.copies)
        created = True
    else:
        job_id, reprint, created = await asyncio.to_thread(d.print_queue.submit_once, idempotency_key, record_id,
                                                           kind, render, name, args.copies)
    return JSONResponse({"job_id": job_id, "printer": name, "reprint": reprint, "document": kind},
                        status_code=202 if created else 200)


@router.get("/v1/transactions/{record_id}/receipt.png",
            responses={200: {"content": {"image/png": {}}}, **problems({404: "not_found", 422: "validation_failed"})},
            response_class=Response)
async def preview(request: Request, record_id: str, document: str = "receipt") -> Response:
    d = daemon(request)
    record = await load_record(d, record_id)
    png = await asyncio.to_thread(receipt_png, d, record, "notice" if document == "notice" else "receipt")
    return Response(png, media_type="image/png")


@router.get("/v1/print-jobs", response_model=PrintJobList, responses=problems({422: "validation_failed"}))
async def jobs(
    request: Request,
    state: Annotated[list[Literal["queued", "printing", "done", "failed", "unknown", "cancelled"]] | None,
                     Query(description="only jobs in these states (repeat the parameter for several)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Print jobs, newest first: e.g. `?state=unknown&state=failed`, what a person must look at."""
    d = daemon(request)
    found = await asyncio.to_thread(d.print_queue.jobs, tuple(state or ()), limit)
    return {"items": [local_times(job, d.cfg.terminal.timezone) for job in found]}


@router.get("/v1/print-jobs/{job_id}", response_model=PrintJob,
            responses=problems({404: "not_found", 422: "validation_failed"}))
async def job(request: Request, job_id: str) -> dict[str, Any]:
    d = daemon(request)
    found = await asyncio.to_thread(d.print_queue.get, job_id)
    if found is None:
        raise NotFoundError(f"no print job {job_id}")
    return local_times(found, d.cfg.terminal.timezone)


@router.delete("/v1/print-jobs/{job_id}", response_model=PrintJob,
               responses=problems({404: "not_found", 409: "invalid_transition", 422: "validation_failed"}))
async def cancel(request: Request, job_id: str) -> dict[str, Any]:
    """Cancel a job not sent yet (queued, or waiting for paper or power): it never prints."""
    d = daemon(request)
    return local_times(await asyncio.to_thread(d.print_queue.cancel, job_id), d.cfg.terminal.timezone)


@router.post("/v1/print-jobs/{job_id}/retry", status_code=202, response_model=PrintRetried,
             responses=problems({404: "not_found", 409: "invalid_transition", 422: "validation_failed",
                                 503: "printer_unavailable"}))
async def retry(request: Request, job_id: str) -> JSONResponse:
    """Print an `unknown` job again (a person checked the paper): a new job, marked as a reprint."""
    d = daemon(request)
    old = await asyncio.to_thread(d.print_queue.retryable, job_id)
    printer = d.printers.get(old["printer"])
    if printer is None:
        raise PrinterNotConfigured(f"no printer named {old['printer']!r} is configured")
    record = await load_record(d, old["tx_id"])
    tx = await asyncio.to_thread(receipt_tx, d, record)
    new = await asyncio.to_thread(d.print_queue.retry, job_id, renderer(d, tx, printer.cfg, old["document"]))
    return JSONResponse({"job_id": new["job_id"], "printer": new["printer"], "reprint": new["reprint"],
                         "document": new["document"], "retry_of": job_id}, status_code=202)

"""Outage log and reconciliation, in the form insurance offices ask for."""

from __future__ import annotations

import asyncio
import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from terminald import reports
from terminald.api.deps import daemon
from terminald.api.problems import problems
from terminald.errors import ValidationFailed
from terminald.timefmt import local_times

router = APIRouter(tags=["reports"])


@router.get("/v1/outages", responses=problems({422: "validation_failed"}))
async def outages(request: Request, reportable: bool = False) -> list[dict[str, Any]]:
    d = daemon(request)
    rows = await asyncio.to_thread(reports.outages, d.cfg.spool_path, reportable)
    return [local_times(row, d.cfg.terminal.timezone) for row in rows]


@router.get("/v1/reconciliation", responses=problems({422: "validation_failed"}))
async def reconciliation(
    request: Request,
    # A plain string with the date pattern: pydantic's lax date parsing would take "+0.0" as 1970-01-01.
    date: Annotated[str, Query(description="business day, YYYY-MM-DD", pattern=r"^\d{4}-\d{2}-\d{2}$",
                               json_schema_extra={"format": "date"})],
) -> dict[str, Any]:
    """Local vs central totals of a business day: count and net sums of the records central accepted.

    `{date, local{count,total_fen,fund_paid_fen,account_paid_fen,by_status}, central{…}|null, matches,
    differences[, note][, error]}`. `matches` when central answered and count, total_fen, fund_paid_fen
    and account_paid_fen are equal; otherwise `differences` lists each figure that differs, then the
    local records of that day that can explain it (pending here, or settled without fund/account
    figures): central's totals have no per-record detail. See docs/api.md, "Reconciliation".
    """
    try:
        day = datetime.date.fromisoformat(date)
    except ValueError as exc:
        raise ValidationFailed(f"date: {date!r} is not a calendar date (YYYY-MM-DD)") from exc
    d = daemon(request)
    assert d.spool is not None
    return await reports.reconcile(d.spool, d.cfg, day.isoformat())

"""Outage log and reconciliation, in the form insurance offices ask for."""

from __future__ import annotations

import asyncio
import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from terminald import reports
from terminald.api.deps import daemon
from terminald.api.problems import problems

router = APIRouter(tags=["reports"])


@router.get("/v1/outages", responses=problems({422: "validation_failed"}))
async def outages(request: Request, reportable: bool = False) -> list[dict[str, Any]]:
    d = daemon(request)
    return await asyncio.to_thread(reports.outages, d.cfg.spool_path, reportable)


@router.get("/v1/reconciliation", responses=problems({422: "validation_failed"}))
async def reconciliation(request: Request,
                         date: Annotated[datetime.date, Query(description="business day, YYYY-MM-DD")]
                         ) -> dict[str, Any]:
    d = daemon(request)
    assert d.spool is not None
    return await reports.reconcile(d.spool, d.cfg, date.isoformat())

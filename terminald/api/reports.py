"""Outage log and reconciliation, in the form insurance offices ask for."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from terminald import reports
from terminald.api.deps import daemon
from terminald.errors import ValidationFailed

router = APIRouter(tags=["reports"])


@router.get("/v1/outages")
async def outages(request: Request, reportable: bool = False) -> list[dict[str, Any]]:
    d = daemon(request)
    return await asyncio.to_thread(reports.outages, d.cfg.spool_path, reportable)


@router.get("/v1/reconciliation")
async def reconciliation(request: Request, date: Annotated[str, Query()]) -> dict[str, Any]:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise ValidationFailed("date must be YYYY-MM-DD")
    d = daemon(request)
    assert d.spool is not None
    return await reports.reconcile(d.spool, d.cfg, date)

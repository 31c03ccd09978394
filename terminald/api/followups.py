"""Follow-ups: the patients staff must contact (refunds owed, rejections to settle, outage sales
waiting for their patient)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request

from terminald import followups
from terminald.api.deps import daemon
from terminald.api.problems import problems

if TYPE_CHECKING:  # the daemon is built above the routes: importing it here would add floors
    from terminald.daemon import Daemon

router = APIRouter(tags=["followups"])


async def current(d: Daemon) -> list[followups.Followup]:
    """Every follow-up now, oldest first (also what /v1/status counts)."""
    assert d.spool is not None
    spool = d.spool
    records = await asyncio.to_thread(spool.followups)
    awaiting = await asyncio.to_thread(d.reentry.records_waiting, spool) if d.reentry.enabled else []
    today = datetime.now(ZoneInfo(d.cfg.terminal.timezone)).date()
    return followups.followups_of(records, d.cfg, today, awaiting)


@router.get("/v1/followups", responses=problems({503: "spool_unavailable"}))
async def list_followups(request: Request) -> dict[str, Any]:
    """Patients to contact, oldest first: `reason` "refund" (the fund's share of an outage sale
    is owed: hand it over and record it with POST /v1/transactions/{id}/refund), "rejected"
    (settle as self-pay or void: POST /v1/transactions/{id}/resolve) or "awaiting_patient" (an
    outage sale to re-settle when the patient is back: POST /v1/transactions/{id}/resettle)."""
    items = await current(daemon(request))
    return {"items": [followups.answer(i) for i in items], **followups.summary(items)}

"""Reading the patient's card."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from terminald.api.deps import daemon
from terminald.api.models import CardReadIn, CardReadOut
from terminald.api.problems import problems
from terminald.privacy import mask_card, mask_name, mask_ssn
from terminald.timefmt import local_iso

router = APIRouter()


@router.post("/v1/card/read", tags=["card"], response_model=CardReadOut,
             responses=problems({408: "no_card", 409: "reader_busy",
                                 422: "validation_failed, card_unreadable, card_locked", 503: "no_reader"}))
async def read_card(request: Request, body: CardReadIn | None = None) -> dict[str, Any]:
    d = daemon(request)
    args = body or CardReadIn()
    read = await asyncio.to_thread(d.cards.read, args.reader, args.timeout_s)
    read_id = d.card_reads.remember(read)
    # Re-entry that needs the patient: this holder's outage sales can be re-settled now.
    awaiting: list[dict[str, Any]] = []
    if d.reentry.enabled and d.spool is not None:
        awaiting = await asyncio.to_thread(d.reentry.sales_for_card, d.spool, read.card)
    if awaiting:
        d.publish("reentry.awaiting_patient", {
            "reader": read.reader,
            "card": {"card_number": mask_card(read.card.card_number), "ssn_masked": mask_ssn(read.card.ssn),
                     "name_masked": mask_name(read.card.name)},
            "items": awaiting})
    return {
        "card_read_id": read_id,
        "read_at": local_iso(read.read_at.isoformat(timespec="seconds"), d.cfg.terminal.timezone),
        "reader": read.reader,
        "atr": read.atr,
        "card": read.card.as_dict(),
        "awaiting_patient": awaiting,
    }

"""Reading the patient's card."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from terminald.api.deps import daemon
from terminald.api.models import CardReadIn, CardReadOut
from terminald.api.problems import problems
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
    return {
        "card_read_id": read_id,
        "read_at": local_iso(read.read_at.isoformat(timespec="seconds"), d.cfg.terminal.timezone),
        "reader": read.reader,
        "atr": read.atr,
        "card": read.card.as_dict(),
    }

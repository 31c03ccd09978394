"""Liveness, status at a glance, and the devices."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from terminald import followups
from terminald.api.deps import daemon
from terminald.api.followups import current as current_followups
from terminald.timefmt import local_iso

if TYPE_CHECKING:
    from terminald.daemon import Daemon

router = APIRouter()
public_router = APIRouter()  # no token needed


class Health(BaseModel):
    status: Literal["ok"]


@public_router.get("/v1/health", tags=["status"], response_model=Health)
async def health() -> dict[str, str]:
    return {"status": "ok"}


def devices_of(request: Request) -> dict[str, Any]:
    d = daemon(request)
    readers = [{"name": r.name, "kind": r.kind, "state": r.state, "card_present": r.card_present}
               for r in d.cards.readers()]
    states = d.print_queue.printer_states()
    printers = [{"name": name, "uri": p.cfg.uri, "state": states.get(name, "unknown")}
                for name, p in d.printers.items()]
    return {"readers": readers, "reader_state": d.cards.state, "printers": printers}


@router.get("/v1/devices", tags=["status"])
async def devices(request: Request) -> dict[str, Any]:
    return await asyncio.to_thread(devices_of, request)


@router.get("/v1/status", tags=["status"])
async def status(request: Request) -> dict[str, Any]:
    d = daemon(request)
    assert d.spool is not None
    stats = await asyncio.to_thread(d.spool.stats)
    owed = followups.summary(await current_followups(d))
    link = d.uploader.link
    tz = d.cfg.terminal.timezone
    return {
        "terminal_id": d.cfg.terminal.id,
        "institution_name": d.cfg.terminal.institution_name,
        "version": d.version,
        "instance_id": d.instance_id,
        "started_at": local_iso(d.started_at, tz),
        "mode": link.state,
        "upstream": {
            "state": link.state,
            "url_configured": bool(d.cfg.upstream.url),
            "cause": link.cause,
            "last_ok_at": local_iso(link.last_ok_at, tz),
            "last_error": link.last_error,
            "outage_since": local_iso(link.outage_since, tz),
            "planned_downtime": link.planned_downtime,
            "alarms": link.alarms,
            "halted": link.halted,
        },
        "spool": {
            "pending": stats.pending,
            "pending_amount_fen": stats.pending_amount_fen,
            "oldest_pending_at": local_iso(stats.oldest_pending_at, tz),
            "rejected_unresolved": stats.rejected_unresolved,
            "settled_total": stats.settled_total,
            "last_seq": stats.last_seq,
            "integrity": d.spool.integrity,
            "error": d.spool.integrity_error,
        },
        "followups": owed,
        "mirror": mirror_of(d),
        "devices": await asyncio.to_thread(devices_of, request),
    }


def mirror_of(d: Daemon) -> dict[str, Any]:
    """The mirror's section: the copier's state from memory (no query, never a wait for PostgreSQL)."""
    if d.mirror is None:  # mirror.dsn empty: the same keys, nothing known (psycopg not even imported)
        return {"enabled": False, "pid": None, "connected": False, "server": None, "mirrored_seq": None,
                "spool_seq": None, "unmirrored": None, "lag_s": None, "oldest_unmirrored_at": None, "last_ok_at": None,
                "last_error": None, "lag_alarm_s": None, "alarms": []}
    return d.mirror.status_dict()

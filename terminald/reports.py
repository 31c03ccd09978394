"""Reports the insurance office asks for: the outage log and the daily reconciliation.

`outages()` reads the uploader's outage table from the spool file (read-only);
an outage is reportable when it lasted over one hour. `reconcile()` compares
the spool's totals for a business date with central's `GET .../totals` (upstream-v1,
pinned): the count and the net sums of the records central accepted. When they differ it
names the local records that can explain it; protocol v1 has no per-record view of
central's books, so that list is what this side knows, not a record-by-record comparison
(docs/api.md, "Reconciliation").
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spool import Spool
from spool.store import connect
from terminald.config import Config
from terminald.errors import ConfigError
from terminald.upload.calendar import parse_time
from terminald.upload.client import CentralClient
from terminald.upload.errors import UpstreamError
from terminald.upload.state import OUTAGES_TABLE

__all__ = ["REPORTABLE_S", "outages", "reconcile"]

REPORTABLE_S = 3600

# What reconciliation compares: the figures of the pinned `totals`, by_status aside.
COMPARED = ("count", "total_fen", "fund_paid_fen", "account_paid_fen")

_WHY = {
    "pending": "pending here: central may hold it already (its answer was not received); "
    "counted at central if accepted there, not here",
    "outcome_missing": "settled here, but its stored settlement has no integer fund/account figures "
    "(counted here as 0)",
    "unknown_status": "a local status central has no word for",
}


def outages(
    db_path: str | Path, reportable_only: bool = False, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Each offline period, oldest first: started_at, ended_at (None while going on), duration_s, cause,
    planned, reportable (over one hour)."""
    path = Path(db_path)
    if not path.exists():
        return []
    conn = connect(path, readonly=True)
    try:
        rows = conn.execute(
            f"SELECT started_at, ended_at, cause, planned FROM {OUTAGES_TABLE} ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:
        return []  # the uploader never ran on this file: no outage table yet
    finally:
        conn.close()
    current = now or datetime.now(UTC)
    result = []
    for started_at, ended_at, cause, planned in rows:
        start = parse_time(started_at)
        end = parse_time(ended_at) if ended_at else current
        duration = max(0.0, (end - start).total_seconds()) if start and end else 0.0
        item = {
            "started_at": started_at,
            "ended_at": ended_at,
            "duration_s": round(duration, 3),
            "cause": cause,
            "planned": bool(planned),
            "reportable": duration > REPORTABLE_S,
        }
        if item["reportable"] or not reportable_only:
            result.append(item)
    return result


async def reconcile(spool: Spool, cfg: Config, date: str) -> dict[str, Any]:
    """Local totals for a business date vs central's.

    ``{date, local{count,total_fen,fund_paid_fen,account_paid_fen,by_status}, central{…}|None,
    matches, differences[, note][, error]}``. ``matches``: central answered and the four COMPARED
    figures are equal. ``differences`` (empty when they match, or when central could not be
    asked): one ``{"figure", "local", "central"}`` per figure that differs, then the local records
    of that date that can explain it (``{"record_id", "seq", "kind", "status", "total_fen", "why",
    "original_id", "revoked_by", "detail"}``, why ∈ pending, outcome_missing, unknown_status).
    """
    local = await asyncio.to_thread(spool.totals, date)
    local_part = {
        "count": local.count,
        "total_fen": local.total_fen,
        "fund_paid_fen": local.fund_paid_fen,
        "account_paid_fen": local.account_paid_fen,
        "by_status": dict(local.by_status),
    }
    central_part: dict[str, Any] | None = None
    error: str | None = None
    if cfg.upstream.url:
        try:
            client = CentralClient(cfg.upstream, cfg.terminal.id)
        except ConfigError as exc:
            error = exc.detail
        else:
            try:
                totals = await client.totals(local.date)
                if totals.date != local.date:
                    error = f"central answered the totals of {totals.date}, not of {local.date}"
                else:
                    central_part = {
                        "count": totals.count,
                        "total_fen": totals.total_fen,
                        "fund_paid_fen": totals.fund_paid_fen,
                        "account_paid_fen": totals.account_paid_fen,
                        "by_status": dict(totals.by_status),
                    }
            except UpstreamError as exc:
                error = exc.detail
            finally:
                await client.aclose()
    else:
        error = "no upstream configured"
    differences: list[dict[str, Any]] = []
    if central_part is not None:
        differences = [
            {"figure": key, "local": local_part[key], "central": central_part[key]}
            for key in COMPARED
            if local_part[key] != central_part[key]
        ]
    result: dict[str, Any] = {
        "date": local.date,
        "local": local_part,
        "central": central_part,
        "matches": central_part is not None and not differences,
        "differences": differences,
    }
    pending = local.by_status.get("pending", 0)
    if differences:
        differences += [{**_named(r), "detail": _WHY.get(r["why"], r["why"])} for r in local.uncertain]
        result["note"] = _note(local.uncertain_count, len(local.uncertain))
    elif result["matches"] and pending:
        result["note"] = (
            f"matches so far: {pending} record(s) of this date are still pending here (not counted on either "
            "side until central accepts them); reconcile again once they are uploaded"
        )
    if error is not None:
        result["error"] = error
    return result


def _named(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "record_id": record["record_id"],
        "seq": record["seq"],
        "kind": record["kind"],
        "status": record["status"],
        "total_fen": record["total_fen"],
        "why": record["why"],
        "original_id": record.get("original_id"),  # a revoke's original
        "revoked_by": record.get("revoked_by"),  # the revoke cancelling this settlement
    }


def _note(count: int, listed: int) -> str:
    """What the named records are, honestly: central's totals say nothing about single records."""
    if count == 0:
        return (
            "central's totals carry no per-record detail (protocol v1), and no local record of this date is "
            "pending or lacks its settlement: central's books hold records or amounts this spool does not "
            "(check the cursor; records pruned here past retention are no longer counted)"
        )
    more = f" (the first {listed} of {count})" if listed < count else ""
    return (
        "central's totals carry no per-record detail (protocol v1): the records named are the local records "
        f"of this date whose money central may count otherwise{more}, not a record-by-record comparison"
    )

"""Reports the insurance office asks for: the outage log and the daily reconciliation.

`outages()` reads the uploader's outage table from the spool file (read-only);
an outage is reportable when it lasted over one hour. `reconcile()` compares
the spool's totals for a business date with central's `GET .../totals`.
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

# Local statuses that mean central decided, and how central names that decision.
_CENTRAL_STATUS = {"settled": "accepted", "rejected": "rejected", "resolved": "rejected"}


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
    """Local totals for a business date vs central's; `central` is None when it cannot be asked."""
    local = await asyncio.to_thread(spool.totals, date)
    local_part = {"count": local.count, "total_fen": local.total_fen, "by_status": dict(local.by_status)}
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
                central_part = {
                    "count": totals.count,
                    "total_fen": totals.total_fen,
                    "by_status": dict(totals.by_status),
                }
            except UpstreamError as exc:
                error = exc.detail
            finally:
                await client.aclose()
    else:
        error = "no upstream configured"
    result: dict[str, Any] = {
        "date": local.date,
        "local": local_part,
        "central": central_part,
        "matches": _matches(local_part, central_part),
    }
    if error is not None:
        result["error"] = error
    return result


def _matches(local: dict[str, Any], central: dict[str, Any] | None) -> bool:
    """Same count and amount, nothing still pending, and each decision counted on both sides."""
    if central is None or local["by_status"].get("pending", 0):
        return False
    expected: dict[str, int] = {}
    for status, count in local["by_status"].items():
        name = _CENTRAL_STATUS.get(status, status)
        expected[name] = expected.get(name, 0) + count
    got = {k: v for k, v in central["by_status"].items() if v}
    return bool(
        local["count"] == central["count"] and local["total_fen"] == central["total_fen"] and expected == got
    )

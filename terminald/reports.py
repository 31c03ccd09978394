"""Reports the insurance office asks for: the outage log and the daily reconciliation.

`outages()` reads the uploader's outage table from the spool file (read-only);
an outage is reportable when it lasted over one hour. `reconcile()` compares
the spool's totals for a business date with central's, through the adapter of
`upstream.protocol` (v1: `GET .../totals`, pinned): the count and the net sums of the records
central accepted. When they differ it names the local records that can explain it; protocol v1
has no per-record view of central's books, so that list is what this side knows, not a
record-by-record comparison (docs/api.md, "Reconciliation"). It runs in the daemon and from the
CLI alike, with a `ReportHost` of its own rather than the uploader; an adapter that writes while
reconciling (nhsa: the 3201 rows of its call log) needs a writable spool, so the CLI asks the
running daemon instead (terminald/cli/upstream.py). Central that cannot be asked is the report's
`error`, never a raise.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from spool import Record, Spool
from spool.store import connect
from terminald.config import Config
from terminald.errors import ConfigError
from terminald.upload.calendar import parse_time
from terminald.upload.errors import UpstreamError
from terminald.upload.results import RecordResult
from terminald.upload.state import OUTAGES_TABLE, UploadState
from terminald.upstream.adapters import adapter_for
from terminald.upstream.reconcile import compare, local_totals

__all__ = ["REPORTABLE_S", "ReportHost", "outages", "reconcile"]

log = logging.getLogger("terminald.reports")

REPORTABLE_S = 3600


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
    """Local totals for a business date vs central's, through the adapter of
    `upstream.protocol`: the report terminald/upstream/reconcile.py describes (``central`` None
    and an ``error`` when central could not be asked)."""
    local = local_totals(await asyncio.to_thread(spool.totals, date))
    if not cfg.upstream.url:
        return compare(local, None, "no upstream configured")
    try:
        adapter = adapter_for(cfg.upstream.protocol, ReportHost(spool, cfg))
    except ConfigError as exc:
        return compare(local, None, exc.detail)
    try:
        return await adapter.reconcile(local["date"], local)
    except UpstreamError as exc:
        # An adapter that could not ask central raised rather than reporting it: still a report.
        log.warning("reconciliation of %s: central could not be asked: %s", local["date"], exc.detail)
        return compare(local, None, exc.detail)
    finally:
        await adapter.aclose()


class ReportHost:
    """The adapter's host for a report, in the daemon or from the CLI: no uploader runs it.

    It reads; it never sends records, writes outcomes or raises alarms (an adapter's
    `reconcile` has no cause to), and it has no upload state.
    """

    def __init__(self, spool: Spool, cfg: Config) -> None:
        self.spool = spool
        self.cfg = cfg
        self.tz = ZoneInfo(cfg.terminal.timezone)

    @property
    def state(self) -> UploadState:
        raise RuntimeError("a report has no upload state: only the uploader keeps one")

    @state.setter
    def state(self, value: UploadState) -> None:
        raise RuntimeError("a report has no upload state: only the uploader keeps one")

    def reached(self) -> None:
        """A report does not move the link state: the uploader's calls do."""

    async def apply(self, results: list[RecordResult]) -> None:
        raise RuntimeError("a report writes no outcomes")

    def alarm(self, code: str, message: str) -> bool:
        log.warning("alarm %s while reconciling: %s", code, message)
        return False

    def clear_alarm(self, code: str) -> None:
        """Alarms are the uploader's."""

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Events are the daemon's."""

    def eligible(self, record: Record) -> bool:
        return False  # a report sends nothing

    @property
    def stopping(self) -> bool:
        return False  # a report's one call runs to its end

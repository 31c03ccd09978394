"""The data of the uploader's events: JSON-able, with `at`, personal fields masked only."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from spool import Record, SpoolStats
from terminald.privacy import mask_card, mask_name, mask_ssn
from terminald.upload.calendar import WorkCalendar, now_iso, parse_time, working_days_between

__all__ = ["backlog_event", "overdue_message", "transaction_event"]


def transaction_event(record: Record) -> dict[str, Any]:
    """`transaction.settled` / `transaction.rejected`."""
    raw_card = record.payload.get("card")
    card: dict[str, Any] = raw_card if isinstance(raw_card, dict) else {}
    data: dict[str, Any] = {
        "at": record.updated_at,
        "id": record.record_id,
        "seq": record.seq,
        "kind": record.kind,
        "total_fen": record.total_fen,
        "offline": record.told[0],  # what the POS was told (an outage sale: refund owed)
        "card": {
            "card_number": mask_card(card.get("card_number")),
            "ssn_masked": mask_ssn(card.get("ssn")),
            "name_masked": mask_name(card.get("name")),
        },
    }
    data["settlement" if record.status == "settled" else "rejection"] = record.outcome
    return data


def backlog_event(stats: SpoolStats, tz: tzinfo) -> dict[str, Any]:
    """`spool.backlog`: how much is waiting for central."""
    return {
        "at": now_iso(tz),
        "pending": stats.pending,
        "pending_amount_fen": stats.pending_amount_fen,
        "oldest_pending_at": stats.oldest_pending_at,
    }


def overdue_message(oldest_pending: Record | None, now: datetime, tz: tzinfo, limit_days: int,
                    calendar: WorkCalendar | None = None) -> str | None:
    """Why the re-entry deadline has passed for the oldest pending record, or None when it has not."""
    when = parse_time(oldest_pending.business_time) if oldest_pending is not None else None
    if oldest_pending is None or when is None:
        return None
    if working_days_between(when.astimezone(tz).date(), now.astimezone(tz).date(), calendar) <= limit_days:
        return None
    return (
        f"pending records from {oldest_pending.business_time} are older than {limit_days} working days: "
        "the re-entry deadline has passed"
    )

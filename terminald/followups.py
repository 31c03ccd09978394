"""Who staff must contact, and by when: money owed to patients, rejections to settle, and
outage sales waiting for their patient.

A patient who paid in full during an outage is owed the fund's share (统筹 +
个人账户) once central settles the sale; a sale central rejected must be settled
with the patient as self-pay (or voided, and then all the patient paid is owed
back); where re-entry needs the patient
(`nhsa.reentry = "patient_present"`), an outage sale waits until its patient comes
back with the card to re-settle it. All wait for a person, so all are
listed here, oldest first, with the deadline the insurance office sets
(`offline.deadline_working_days` working days after the business day, with the
configured holidays and make-up working days).

The facts come from the spool, decided once (the record's `outage`, central's
outcome, the refund handed over): nothing here recomputes them. Which pending sales
wait for their patient only the daemon knows (terminald/reentry.py): its caller passes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from spool import Record
from terminald.config import Config
from terminald.privacy import mask_card, mask_name, mask_phone
from terminald.upload.calendar import WorkCalendar, parse_time

__all__ = ["Followup", "answer", "followups_of", "summary"]


@dataclass(frozen=True)
class Followup:
    record: Record
    # "refund" (the fund's share is owed, or all the patient paid: voided) | "rejected" (settle as self-pay or void) |
    # "awaiting_patient" (an outage sale to re-settle when the patient is back with the card)
    reason: str
    owed_fen: int
    deadline: date | None
    overdue: bool


def followups_of(records: Iterable[Record], cfg: Config, today: date,
                 awaiting: Iterable[Record] = ()) -> list[Followup]:
    """The follow-ups among ``records`` (from ``Spool.followups``) and the outage sales
    ``awaiting`` their patient (from ``ReentryBook.records_waiting``), oldest first."""
    calendar = WorkCalendar(cfg.offline.holidays, cfg.offline.workdays)
    found = []
    waiting = {r.record_id for r in awaiting if r.status == "pending"}
    merged = {r.record_id: r for r in [*records, *awaiting]}
    for record in sorted(merged.values(), key=lambda r: r.seq):
        if record.record_id in waiting:
            reason, owed = "awaiting_patient", 0
        elif record.status == "rejected":
            reason, owed = "rejected", 0
        elif record.refund_owed_fen > 0:
            reason, owed = "refund", record.refund_owed_fen
        else:
            continue
        business = parse_time(record.business_time)
        deadline = calendar.add(business.date(), cfg.offline.deadline_working_days) if business else None
        found.append(Followup(record, reason, owed, deadline, deadline is not None and today > deadline))
    return found


def answer(item: Followup) -> dict[str, Any]:
    """One entry of `GET /v1/followups`: personal data masked."""
    record = item.record
    card = record.payload.get("card") or {}
    return {
        "id": record.record_id,
        "seq": record.seq,
        "idempotency_key": record.idempotency_key,  # the POS finds its own order by these
        "meta": record.payload.get("meta") or {},
        "reason": item.reason,
        "business_time": record.business_time,
        "total_fen": record.total_fen,
        "owed_fen": item.owed_fen,
        "settlement": record.outcome if record.status == "settled" else None,
        "rejection": record.outcome if record.status in ("rejected", "resolved") else None,
        "deadline": item.deadline.isoformat() if item.deadline else None,
        "overdue": item.overdue,
        "card": {"card_number": mask_card(card.get("card_number")), "name_masked": mask_name(card.get("name"))},
        "contact_phone_masked": mask_phone(record.contact_phone) or None,
    }


def summary(items: list[Followup]) -> dict[str, int]:
    """For the status page and /v1/status: how many, how many overdue, how much is owed."""
    return {
        "count": len(items),
        "overdue": sum(1 for i in items if i.overdue),
        "refunds": sum(1 for i in items if i.reason == "refund"),
        "owed_fen": sum(i.owed_fen for i in items),
        "awaiting_patient": sum(1 for i in items if i.reason == "awaiting_patient"),
    }

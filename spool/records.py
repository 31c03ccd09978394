"""The spool's value types: records, requests, outcomes and reports.

A ``Record`` is one row: the upstream-v1 wire record (``wire()``) plus local
state (status, central's outcome, staff resolution, idempotency key).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spool.errors import InvalidRequest, SpoolCorrupt

__all__ = [
    "FINAL_STATUSES",
    "RESOLUTIONS",
    "REVOKING_STATUSES",
    "STATUSES",
    "AppendRequest",
    "AppendResult",
    "ChangeMark",
    "Changes",
    "CheckReport",
    "Outcome",
    "Record",
    "SpoolStats",
    "Totals",
    "Transition",
    "business_date_of",
]

STATUSES = ("pending", "settled", "rejected", "resolved")
FINAL_STATUSES = ("settled", "resolved")
RESOLUTIONS = ("self_pay", "voided")

WIRE_FIELDS = (
    "record_id",
    "seq",
    "terminal_id",
    "kind",
    "business_time",
    "spooled_at",
    "offline",
    "offline_reason",
    "payload",
    "prev_hash",
    "hash",
)

# The statuses of a revoke that count: a settlement with such a revoke is revoked. A revoke
# central rejected cancelled nothing, so the settlement may be revoked again.
REVOKING_STATUSES = ("pending", "settled")

# The column list every query selects (always ``FROM records``), in Record field order. The
# last one, the revoke that cancelled this settlement, is derived: one indexed lookup.
RECORD_COLUMNS = (
    "record_id, seq, terminal_id, kind, business_time, spooled_at, offline, offline_reason, payload,"
    " prev_hash, hash, status, outcome, resolution, idempotency_key, request_digest, updated_at,"
    " original_seq, outage, outage_reason, contact_phone, refund,"
    " (SELECT r.record_id FROM records r WHERE r.original_seq = records.seq"
    "  AND r.status IN ('pending', 'settled') ORDER BY r.seq LIMIT 1)"
)


@dataclass(frozen=True)
class Record:
    record_id: str
    seq: int
    terminal_id: str
    kind: str
    business_time: str
    spooled_at: str
    offline: bool
    offline_reason: str | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    status: str
    outcome: dict[str, Any] | None
    resolution: dict[str, Any] | None
    idempotency_key: str
    request_digest: str
    updated_at: str
    # Local facts outside the hashed record (schema step 3).
    original_seq: int | None = None  # a revoke's original
    # True: the patient paid the full amount at the counter (the POS was answered "pending");
    # False/None: the POS got central's answer (None while the sale still waits for it).
    outage: bool | None = None
    outage_reason: str | None = None
    contact_phone: str | None = None
    refund: dict[str, Any] | None = None  # the fund's share handed to the patient, once
    revoked_by: str | None = None  # the revoke (pending or settled) that cancels this settlement

    def wire(self) -> dict[str, Any]:
        """Exactly the upstream-v1 Record."""
        return {name: getattr(self, name) for name in WIRE_FIELDS}

    @property
    def total_fen(self) -> int:
        value = self.payload.get("total_fen", 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple[Any, ...]) -> Record:
        """Build from a RECORD_COLUMNS row; SpoolCorrupt if the stored row is malformed."""
        try:
            return cls._from_row(row)
        except (TypeError, ValueError, IndexError) as exc:
            seq = row[1] if len(row) > 1 else "?"
            raise SpoolCorrupt(f"record seq {seq} is malformed ({type(exc).__name__})") from exc

    @classmethod
    def _from_row(cls, row: sqlite3.Row | tuple[Any, ...]) -> Record:
        if not isinstance(row[8], str):
            raise TypeError("payload is not text")
        return cls(
            record_id=row[0],
            seq=row[1],
            terminal_id=row[2],
            kind=row[3],
            business_time=row[4],
            spooled_at=row[5],
            offline=bool(row[6]),
            offline_reason=row[7],
            payload=json.loads(row[8]),
            prev_hash=row[9],
            hash=row[10],
            status=row[11],
            outcome=None if row[12] is None else json.loads(row[12]),
            resolution=None if row[13] is None else json.loads(row[13]),
            idempotency_key=row[14],
            request_digest=row[15],
            updated_at=row[16],
            original_seq=row[17],
            outage=None if row[18] is None else bool(row[18]),
            outage_reason=row[19],
            contact_phone=row[20],
            refund=None if row[21] is None else json.loads(row[21]),
            revoked_by=row[22],
        )

    @property
    def told(self) -> tuple[bool, str | None]:
        """(offline, offline_reason) as the POS was told: the outage fact once decided (at the
        commit, or when the POS got its answer); until then, a sale still waiting for central
        shows how it was spooled; central deciding before any "pending" answer means online."""
        if self.outage is not None:
            return self.outage, self.outage_reason if self.outage else None
        if self.status == "pending":
            return self.offline, self.offline_reason
        return False, None

    @property
    def paid_in_full(self) -> bool:
        """The patient paid the whole amount at the counter: an outage sale."""
        return self.outage is True

    @property
    def refund_owed_fen(self) -> int:
        """What is owed back to the patient of an outage sale (0 once handed over).

        Central settled it: the fund's share (统筹 + 个人账户) of central's settlement, which
        the patient paid in cash. Central rejected it and staff voided it: what the resolution
        decided (``owed_fen``: the whole amount paid, or 0 when a revoke of it had handed the
        money back; resolutions from before it was recorded owe nothing). A sale resolved as
        self-pay owes nothing: what was paid stands. A revoked sale owes nothing: the revoke
        refunded what the patient paid.
        """
        if self.kind != "settlement" or not self.paid_in_full or self.refund is not None:
            return 0
        if self.status == "resolved":
            owed = (self.resolution or {}).get("owed_fen")
            return owed if isinstance(owed, int) and not isinstance(owed, bool) and owed > 0 else 0
        if self.status != "settled" or self.revoked_by is not None or not self.outcome:
            return 0
        parts = [self.outcome.get(k, 0) for k in ("fund_paid_fen", "account_paid_fen")]
        return sum(p for p in parts if isinstance(p, int) and not isinstance(p, bool) and p > 0)


@dataclass(frozen=True)
class AppendRequest:
    kind: str
    business_time: str
    payload: dict[str, Any]
    idempotency_key: str
    request_digest: str
    offline: bool = False
    offline_reason: str | None = None
    # For an offline record: refuse it (OfflineLimitExceeded) if the amount pending offline,
    # this record's total_fen included, would pass this many fen.
    offline_limit_fen: int | None = None
    # Set when the POS will be answered "pending" at once (nothing can settle now): the patient
    # pays in full, decided in the commit. None: decided later (Spool.mark_outage, or settled).
    outage_reason: str | None = None
    # A revoke's original: the commit refuses (NotRevocable) a second revoke, a revoke of a
    # revoke or of a rejected sale, and a revoke whose amount is not the original's negative.
    original_record_id: str | None = None
    contact_phone: str | None = None

    def validate(self) -> None:
        """Raise InvalidRequest naming the first bad field."""
        if not isinstance(self.kind, str) or not self.kind:
            raise InvalidRequest("kind must be a non-empty string")
        if not isinstance(self.idempotency_key, str) or not self.idempotency_key:
            raise InvalidRequest("idempotency_key must be a non-empty string")
        if not isinstance(self.request_digest, str) or not self.request_digest:
            raise InvalidRequest("request_digest must be a non-empty string")
        if not isinstance(self.payload, dict):
            raise InvalidRequest("payload must be a JSON object")
        if not isinstance(self.offline, bool):
            raise InvalidRequest("offline must be a bool")
        if self.offline_reason is not None and not isinstance(self.offline_reason, str):
            raise InvalidRequest("offline_reason must be a string or None")
        for name in ("outage_reason", "original_record_id", "contact_phone"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidRequest(f"{name} must be a non-empty string or None")
        if self.original_record_id is not None and self.kind != "revoke":
            raise InvalidRequest("original_record_id is only for a revoke")
        limit = self.offline_limit_fen
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidRequest("offline_limit_fen must be a non-negative int or None")
        business_date_of(self.business_time)


def business_date_of(business_time: str) -> str:
    """The date part of an RFC 3339 time, in its own offset; InvalidRequest if malformed."""
    if not isinstance(business_time, str) or len(business_time) < 20 or business_time[10] not in "Tt ":
        raise InvalidRequest(f"business_time must be RFC 3339 with an offset, got {business_time!r}")
    try:
        parsed = datetime.fromisoformat(business_time.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(f"business_time is not RFC 3339: {business_time!r}") from exc
    if parsed.tzinfo is None:
        raise InvalidRequest(f"business_time needs a UTC offset: {business_time!r}")
    return business_time[:10]


@dataclass(frozen=True)
class AppendResult:
    record: Record
    created: bool


@dataclass(frozen=True)
class Outcome:
    seq: int
    status: str  # "settled" | "rejected"
    detail: dict[str, Any]


@dataclass(frozen=True)
class Transition:
    at: str
    status: str
    detail: str

    @classmethod
    def spooled(cls, spooled_at: str, offline: bool, offline_reason: str | None) -> Transition:
        """Every record's first entry, made from the record itself (no history row is stored for it)."""
        return cls(at=spooled_at, status="pending",
                   detail=f"spooled offline: {offline_reason}" if offline else "spooled")


@dataclass(frozen=True)
class SpoolStats:
    pending: int
    pending_amount_fen: int
    oldest_pending_at: str | None
    rejected_unresolved: int
    settled_total: int
    last_seq: int
    last_hash: str
    # Outage settlements (paid in full at the counter) still pending: the offline limit's
    # measure. Revokes never lower it.
    pending_offline_fen: int = 0


@dataclass(frozen=True)
class ChangeMark:
    """A ``history`` row: where a reader of ``Spool.changes_since`` has handled changes up to."""

    id: int
    seq: int
    at: str


@dataclass(frozen=True)
class Changes:
    """What ``Spool.changes_since`` found after a mark."""

    seqs: tuple[int, ...]  # records changed after the mark, each once, in the order of their first change
    mark: ChangeMark | None  # where to continue from
    broken: bool  # the mark's row is gone (a prune): the reader must compare every open record instead


@dataclass(frozen=True)
class Totals:
    """One business date as central counts it (upstream-v1 `totals`, reconciliation).

    ``count`` and the sums cover the records central accepted (local status ``settled``)
    only; a revoke carries its negative amounts, so the sums are net. fund/account are read
    from each record's stored settlement. ``by_status`` counts every record of the date in
    central's words: ``accepted`` (settled), ``rejected`` (rejected or resolved), ``pending``
    (central has not answered). ``uncertain`` names, in seq order (at most 1000 of
    ``uncertain_count``), the records whose money may differ from central's: pending ones and
    settled ones without integer fund/account figures in their outcome, each as
    ``{record_id, seq, kind, status, total_fen, why}``.
    """

    date: str
    count: int
    total_fen: int
    by_status: dict[str, int]
    fund_paid_fen: int = 0
    account_paid_fen: int = 0
    uncertain: tuple[dict[str, Any], ...] = ()
    uncertain_count: int = 0


@dataclass(frozen=True)
class CheckReport:
    ok: bool
    records: int
    problems: list[str] = field(default_factory=list)

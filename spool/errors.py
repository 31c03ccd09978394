"""Errors raised by the spool.

Every error carries a stable ``code`` (the one the local API reports), so the
daemon maps them to HTTP answers without looking at messages::

    SpoolError                  spool_unavailable   base class
    ├── SpoolFull               spool_full          SQLITE_FULL / ENOSPC: nothing was written
    ├── SpoolIOError            spool_unavailable   I/O error on write or sync: fate unknown
    ├── SpoolCorrupt            spool_unavailable   file refused at open, or appends stopped
    ├── SpoolClosed             spool_unavailable   the Spool was closed
    ├── IdempotencyConflict     idempotency_conflict  same key, other request body
    ├── OfflineLimitExceeded    offline_limit_exceeded  the pending offline amount would pass a limit
    ├── NotRevocable            not_revocable       revoked already, a revoke, rejected, or another amount
    ├── RefundMismatch          refund_amount_mismatch  a refund of another amount than the one owed
    ├── NotFound                not_found           no such record
    ├── InvalidTransition       invalid_transition  e.g. resolving a record that is not rejected
    └── InvalidRequest          validation_failed   a malformed AppendRequest / argument

Messages name the file, seq or page involved; they never contain payloads
(personal data stays out of logs). This module imports nothing of the spool:
every other module may import it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidTransition",
    "NotFound",
    "NotRevocable",
    "OfflineLimitExceeded",
    "RefundMismatch",
    "SpoolClosed",
    "SpoolCorrupt",
    "SpoolError",
    "SpoolFull",
    "SpoolIOError",
]


class SpoolError(Exception):
    """Base of every spool error."""

    code: str = "spool_unavailable"


class SpoolFull(SpoolError):
    """The disk (or the file size limit) is full; the append was not committed."""

    code = "spool_full"


class SpoolIOError(SpoolError):
    """An I/O error during write or sync; the append may or may not be on disk."""

    code = "spool_unavailable"


class SpoolCorrupt(SpoolError):
    """The file failed a structural or hash-chain check; appends are refused."""

    code = "spool_unavailable"


class SpoolClosed(SpoolError):
    """The spool was closed."""

    code = "spool_unavailable"


class IdempotencyConflict(SpoolError):
    """The idempotency key is already used by a request with another body.

    ``existing`` is the stored ``spool.Record`` that holds the key (typed loosely so that
    this module stays below records.py, which raises the errors defined here).
    """

    code = "idempotency_conflict"

    def __init__(self, message: str, existing: Any) -> None:
        super().__init__(message)
        self.existing = existing


class OfflineLimitExceeded(SpoolError):
    """Appending would take the amount pending offline past the request's ``offline_limit_fen``.

    Nothing was written. Decided inside the commit, so appends racing each other cannot
    together pass the limit.
    """

    code = "offline_limit_exceeded"

    def __init__(self, message: str, limit_fen: int) -> None:
        super().__init__(message)
        self.limit_fen = limit_fen


class NotRevocable(SpoolError):
    """The revoke's original cannot be revoked: it is revoked already (by a revoke pending or
    settled), it is itself a revoke, central rejected it, or the amounts differ. Nothing was
    written. Decided inside the commit, so two revokes racing each other cannot both pass.
    """

    code = "not_revocable"


class RefundMismatch(SpoolError):
    """A refund of another amount than the fund's share owed to the patient."""

    code = "refund_amount_mismatch"

    def __init__(self, message: str, owed_fen: int = 0) -> None:
        super().__init__(message)
        self.owed_fen = owed_fen


class NotFound(SpoolError):
    """No record with that id or seq."""

    code = "not_found"


class InvalidTransition(SpoolError):
    """The requested status change is not allowed from the record's status."""

    code = "invalid_transition"


class InvalidRequest(SpoolError):
    """An argument is malformed (bad time, non-JSON payload, unknown format...)."""

    code = "validation_failed"

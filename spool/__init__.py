"""spool: the durable, ordered, hash-chained outbox of one terminal (SQLite, WAL).

No hardware, no HTTP, no asyncio: the daemon calls ``Spool`` from threads, or has the
writer thread call it back (``Spool.append_later``).
See docs/spool.md for the schema, guarantees and errors.
"""

from spool.chain import GENESIS_HASH, canonical_json, digest, record_hash
from spool.errors import (
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    NotFound,
    NotRevocable,
    OfflineLimitExceeded,
    RefundMismatch,
    SpoolClosed,
    SpoolCorrupt,
    SpoolError,
    SpoolFull,
    SpoolIOError,
)
from spool.outbox import Spool
from spool.records import (
    AppendRequest,
    AppendResult,
    CheckReport,
    Outcome,
    Record,
    SpoolStats,
    Totals,
    Transition,
)
from spool.restored import RestoredFrom
from spool.store import connect, migrate

__all__ = [
    "GENESIS_HASH",
    "AppendRequest",
    "AppendResult",
    "CheckReport",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidTransition",
    "NotFound",
    "NotRevocable",
    "OfflineLimitExceeded",
    "Outcome",
    "Record",
    "RefundMismatch",
    "RestoredFrom",
    "Spool",
    "SpoolClosed",
    "SpoolCorrupt",
    "SpoolError",
    "SpoolFull",
    "SpoolIOError",
    "SpoolStats",
    "Totals",
    "Transition",
    "canonical_json",
    "connect",
    "digest",
    "migrate",
    "record_hash",
]

"""The spool's tables, as namespaced migration steps (namespace ``spool``).

One file holds one terminal's chain: ``seq`` is the primary key, so gapless
order and uniqueness are the table's own invariants. ``total_fen`` and
``business_date`` are copied out of the record for indexed sums; they are
derived data, the hashed columns are the record.
"""

from __future__ import annotations

__all__ = ["NAMESPACE", "STEPS"]

NAMESPACE = "spool"

STEPS: tuple[str, ...] = (
    """
    CREATE TABLE records (
        seq             INTEGER PRIMARY KEY CHECK (seq >= 1),
        record_id       TEXT NOT NULL UNIQUE,
        terminal_id     TEXT NOT NULL,
        kind            TEXT NOT NULL,
        business_time   TEXT NOT NULL,
        business_date   TEXT NOT NULL,
        spooled_at      TEXT NOT NULL,
        offline         INTEGER NOT NULL CHECK (offline IN (0, 1)),
        offline_reason  TEXT,
        payload         TEXT NOT NULL,
        prev_hash       TEXT NOT NULL,
        hash            TEXT NOT NULL,
        status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'settled', 'rejected', 'resolved')),
        outcome         TEXT,
        resolution      TEXT,
        idempotency_key TEXT NOT NULL UNIQUE,
        request_digest  TEXT NOT NULL,
        total_fen       INTEGER NOT NULL,
        updated_at      TEXT NOT NULL,
        updated_epoch   REAL NOT NULL
    );
    CREATE INDEX records_status_seq ON records (status, seq);
    CREATE INDEX records_business_date ON records (business_date);
    CREATE TABLE history (
        id      INTEGER PRIMARY KEY,
        seq     INTEGER NOT NULL REFERENCES records (seq) ON DELETE CASCADE,
        at      TEXT NOT NULL,
        status  TEXT NOT NULL,
        detail  TEXT NOT NULL
    );
    CREATE INDEX history_seq ON history (seq);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE checkpoint (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        seq     INTEGER NOT NULL,
        hash    TEXT NOT NULL,
        pruned  INTEGER NOT NULL,
        at      TEXT NOT NULL
    );
    """,
)

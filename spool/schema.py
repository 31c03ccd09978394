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
    # Step 2: counts and amounts per status, kept by triggers in the same transaction as the
    # change. The offline policy asks "how much is pending offline?" on every sale, and the
    # status page and watchdog ask for the backlog: after ten days offline that is tens of
    # thousands of rows, which a sum would walk each time.
    """
    CREATE TABLE status_totals (
        status  TEXT NOT NULL,
        offline INTEGER NOT NULL,
        count   INTEGER NOT NULL,
        amount  INTEGER NOT NULL,
        PRIMARY KEY (status, offline)
    ) WITHOUT ROWID;
    INSERT INTO status_totals (status, offline, count, amount)
        SELECT status, offline, COUNT(*), COALESCE(SUM(total_fen), 0) FROM records GROUP BY status, offline;
    CREATE TRIGGER status_totals_insert AFTER INSERT ON records
    BEGIN
        INSERT INTO status_totals (status, offline, count, amount) VALUES (NEW.status, NEW.offline, 1, NEW.total_fen)
            ON CONFLICT (status, offline) DO UPDATE SET count = count + 1, amount = amount + excluded.amount;
    END;
    CREATE TRIGGER status_totals_move AFTER UPDATE OF status ON records WHEN OLD.status IS NOT NEW.status
    BEGIN
        UPDATE status_totals SET count = count - 1, amount = amount - OLD.total_fen
            WHERE status = OLD.status AND offline = OLD.offline;
        INSERT INTO status_totals (status, offline, count, amount) VALUES (NEW.status, NEW.offline, 1, NEW.total_fen)
            ON CONFLICT (status, offline) DO UPDATE SET count = count + 1, amount = amount + excluded.amount;
    END;
    CREATE TRIGGER status_totals_delete AFTER DELETE ON records
    BEGIN
        UPDATE status_totals SET count = count - 1, amount = amount - OLD.total_fen
            WHERE status = OLD.status AND offline = OLD.offline;
    END;
    """,
    # Step 3: the money facts decided after the append, outside the hashed record.
    # - original_seq: a revoke's original (from its payload), so "revoked at most once" is one
    #   indexed lookup inside the commit.
    # - outage / outage_reason: whether the patient paid in full at the counter, fixed when the
    #   POS got its answer (NULL while undecided: a sale still waiting for central). The hashed
    #   `offline` says how the record was spooled; this says what the patient was told.
    # - contact_phone: what the POS may send so staff can call the patient back (never uploaded).
    # - refund: the hand-over of the fund's share to the patient, once.
    # status_totals is keyed by (status, kind, outage) from here on: the offline limit counts the
    # outage settlements pending, and a revoke's negative amount must never lower it.
    """
    ALTER TABLE records ADD COLUMN original_seq INTEGER;
    ALTER TABLE records ADD COLUMN outage INTEGER CHECK (outage IN (0, 1));
    ALTER TABLE records ADD COLUMN outage_reason TEXT;
    ALTER TABLE records ADD COLUMN contact_phone TEXT;
    ALTER TABLE records ADD COLUMN refund TEXT;
    UPDATE records SET original_seq = (SELECT o.seq FROM records o
                                       WHERE o.record_id = json_extract(records.payload, '$.original_record_id'))
        WHERE kind = 'revoke';
    UPDATE records SET outage = 1, outage_reason = offline_reason
        WHERE offline = 1 AND offline_reason IN ('upstream_unreachable', 'planned_downtime');
    CREATE INDEX records_original ON records (original_seq) WHERE original_seq IS NOT NULL;
    DROP TRIGGER status_totals_insert;
    DROP TRIGGER status_totals_move;
    DROP TRIGGER status_totals_delete;
    DROP TABLE status_totals;
    CREATE TABLE status_totals (
        status  TEXT NOT NULL,
        kind    TEXT NOT NULL,
        outage  INTEGER NOT NULL,
        count   INTEGER NOT NULL,
        amount  INTEGER NOT NULL,
        PRIMARY KEY (status, kind, outage)
    ) WITHOUT ROWID;
    INSERT INTO status_totals (status, kind, outage, count, amount)
        SELECT status, kind, COALESCE(outage, 0), COUNT(*), COALESCE(SUM(total_fen), 0) FROM records
        GROUP BY status, kind, COALESCE(outage, 0);
    CREATE TRIGGER status_totals_insert AFTER INSERT ON records
    BEGIN
        INSERT INTO status_totals (status, kind, outage, count, amount)
            VALUES (NEW.status, NEW.kind, COALESCE(NEW.outage, 0), 1, NEW.total_fen)
            ON CONFLICT (status, kind, outage) DO UPDATE SET count = count + 1, amount = amount + excluded.amount;
    END;
    CREATE TRIGGER status_totals_move AFTER UPDATE OF status, outage ON records
        WHEN OLD.status IS NOT NEW.status OR COALESCE(OLD.outage, 0) IS NOT COALESCE(NEW.outage, 0)
    BEGIN
        UPDATE status_totals SET count = count - 1, amount = amount - OLD.total_fen
            WHERE status = OLD.status AND kind = OLD.kind AND outage = COALESCE(OLD.outage, 0);
        INSERT INTO status_totals (status, kind, outage, count, amount)
            VALUES (NEW.status, NEW.kind, COALESCE(NEW.outage, 0), 1, NEW.total_fen)
            ON CONFLICT (status, kind, outage) DO UPDATE SET count = count + 1, amount = amount + excluded.amount;
    END;
    CREATE TRIGGER status_totals_delete AFTER DELETE ON records
    BEGIN
        UPDATE status_totals SET count = count - 1, amount = amount - OLD.total_fen
            WHERE status = OLD.status AND kind = OLD.kind AND outage = COALESCE(OLD.outage, 0);
    END;
    """,
    # Step 4: the POS finds its sale by its own order id (`GET /v1/transactions?pos_order_id=`),
    # the `meta.pos_order_id` it sent. An index on the expression rather than a stored column:
    # the payload is the hashed record and stays the one place the value lives, the writer's
    # insert and every reader are unchanged, and SQLite computes the key in the same commit.
    # Partial: sales without one cost no index entry. Guarded by json_valid: a damaged payload
    # (salvage keeps such rows aside) has no key, rather than failing every write or delete that
    # touches its row. A query must use this exact expression (spool.outbox.POS_ORDER_ID) for
    # SQLite to use the index.
    """
    CREATE INDEX records_pos_order_id
        ON records (CASE WHEN json_valid(payload) THEN json_extract(payload, '$.meta.pos_order_id') END)
        WHERE CASE WHEN json_valid(payload) THEN json_extract(payload, '$.meta.pos_order_id') END IS NOT NULL;
    """,
)

"""The mirror's tables, view, roles and row-level security (contract: mirror-postgresql.md).

``init_db`` runs ``SCHEMA_SQL`` once per database, in one transaction: every statement is
idempotent (``IF NOT EXISTS``, ``CREATE OR REPLACE``, policies dropped and created again), so IT
may run it again after an upgrade. It creates, besides the contract's two tables and view:

- ``terminald_roles(role_name, terminal_id)``: which database role is which terminal. Every
  policy is keyed on it (``current_user`` -> terminal id), so a role may be named anything
  (``terminald_t0001`` by default, or a client certificate's CN) without a naming rule in SQL.
- ``record_text text`` in ``terminald_records``: the record itself, verbatim, as the canonical
  JSON its hash is computed from (``sha256(record_text) = hash``; rows.py). The contract's
  ``record jsonb`` stays as a queryable view of it for IT: jsonb does not keep every number as
  written (``1e16``, ``-0.0``) nor U+0000, so a restore reads ``record_text``, and ``record`` only
  for rows mirrored before the column existed (NULL there: ``ADD COLUMN IF NOT EXISTS`` upgrades
  an existing database when init-db runs again).
- ``local_state jsonb`` in ``terminald_records``: the local facts a restore needs and the wire
  record does not carry (idempotency key, request digest, resolution, refund, outage facts, a
  revoke's original); like ``status``/``outcome`` it is outside the hash chain.
- ``base_seq``/``base_hash`` in ``terminald_terminals``: where the terminal's chain starts in the
  mirror, (0, genesis) unless its spool had been pruned before anything was mirrored; then the
  spool's prune checkpoint (the rows are seq ``base_seq + 1`` to ``last_seq``).
- heartbeat columns in ``terminald_terminals``: ``overdue_reentries``, ``spool_last_seq`` and
  ``oldest_unmirrored_at``, from which the fleet view shows the mirror's lag.
- two group roles: ``terminald_terminal`` (what each terminal's login role is granted: its own
  rows only, under row-level security; it may change a mirrored record's status columns, never
  the record or its hashes, and delete nothing) and ``terminald_reader`` (IT, Grafana: reads
  everything, writes nothing).

``role_statements`` prints what IT runs for each terminal: its login role, the group grant and
its line in ``terminald_roles``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "READER_ROLE",
    "SCHEMA_SQL",
    "TERMINAL_GROUP",
    "init_db",
    "role_name",
    "role_statements",
]

TERMINAL_GROUP = "terminald_terminal"
READER_ROLE = "terminald_reader"
_TERMINAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,49}")

# The terminal of the role running the statement: one indexed lookup, planned once per
# statement (an InitPlan), not once per row.
_MINE = "(SELECT r.terminal_id FROM terminald_roles r WHERE r.role_name = current_user)"


def _group(name: str) -> str:
    # PostgreSQL has no CREATE ROLE IF NOT EXISTS.
    return (f"DO $$ BEGIN CREATE ROLE {name} NOLOGIN; "
            f"EXCEPTION WHEN duplicate_object THEN NULL; END $$;")


SCHEMA_SQL = f"""
{_group(TERMINAL_GROUP)}
{_group(READER_ROLE)}

CREATE TABLE IF NOT EXISTS terminald_records (
    terminal_id   text        NOT NULL,
    seq           bigint      NOT NULL CHECK (seq >= 1),
    record_id     uuid        NOT NULL UNIQUE,
    prev_hash     char(64)    NOT NULL,
    hash          char(64)    NOT NULL,
    kind          text        NOT NULL,
    business_time timestamptz NOT NULL,
    total_fen     bigint      NOT NULL,
    offline       boolean     NOT NULL,
    record        jsonb       NOT NULL,
    record_text   text,
    status        text        NOT NULL,
    outcome       jsonb,
    status_at     timestamptz,
    local_state   jsonb,
    mirrored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (terminal_id, seq)
);
-- A database made by an older terminald: the verbatim record (NULL in the rows it already has).
ALTER TABLE terminald_records ADD COLUMN IF NOT EXISTS record_text text;
COMMENT ON COLUMN terminald_records.record_text IS
    'The record, verbatim: the canonical JSON its hash is the SHA-256 of (the wire record without hash). '
    'NULL in rows mirrored before this column existed.';
COMMENT ON COLUMN terminald_records.record IS
    'A queryable view of the wire record (hash included), not verbatim: jsonb rewrites some numbers '
    '(1e16, -0.0) and U+0000 is stored as U+FFFD. The record is record_text.';
-- What can still change (a restart compares these with the spool) and the business-day reports.
CREATE INDEX IF NOT EXISTS terminald_records_open ON terminald_records (terminal_id, seq)
    WHERE status IN ('pending', 'rejected');
CREATE INDEX IF NOT EXISTS terminald_records_business_time ON terminald_records (business_time);

CREATE TABLE IF NOT EXISTS terminald_terminals (
    terminal_id          text PRIMARY KEY,
    last_seq             bigint   NOT NULL DEFAULT 0,
    last_hash            char(64) NOT NULL DEFAULT repeat('0', 64),
    mode                 text,
    pending              bigint,
    pending_amount_fen   bigint,
    oldest_pending_at    timestamptz,
    outage_since         timestamptz,
    alarms               jsonb,
    version              text,
    seen_at              timestamptz,
    overdue_reentries    bigint,
    spool_last_seq       bigint,
    oldest_unmirrored_at timestamptz,
    base_seq             bigint   NOT NULL DEFAULT 0,
    base_hash            char(64) NOT NULL DEFAULT repeat('0', 64)
);
-- A database made by an older terminald: every chain there starts at seq 1.
ALTER TABLE terminald_terminals ADD COLUMN IF NOT EXISTS base_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE terminald_terminals ADD COLUMN IF NOT EXISTS base_hash char(64) NOT NULL DEFAULT repeat('0', 64);
COMMENT ON COLUMN terminald_terminals.base_seq IS
    'Where this terminal''s chain starts in the mirror (rows base_seq+1 to last_seq): 0, or the spool''s '
    'prune checkpoint when nothing had been mirrored before its records were pruned.';

CREATE TABLE IF NOT EXISTS terminald_roles (
    role_name   text PRIMARY KEY,
    terminal_id text NOT NULL UNIQUE
);

CREATE OR REPLACE VIEW terminald_fleet AS
SELECT t.terminal_id,
       t.mode,
       t.pending,
       t.pending_amount_fen,
       t.oldest_pending_at,
       t.overdue_reentries,
       t.outage_since,
       t.last_seq AS mirrored_seq,
       t.spool_last_seq,
       GREATEST(COALESCE(t.spool_last_seq, t.last_seq) - t.last_seq, 0) AS mirror_lag_records,
       CASE WHEN COALESCE(t.spool_last_seq, t.last_seq) > t.last_seq AND t.oldest_unmirrored_at IS NOT NULL
            THEN now() - t.oldest_unmirrored_at ELSE interval '0' END AS mirror_lag,
       t.alarms,
       t.version,
       t.seen_at,
       now() - t.seen_at AS since_seen
FROM terminald_terminals t;

ALTER TABLE terminald_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE terminald_terminals ENABLE ROW LEVEL SECURITY;
ALTER TABLE terminald_roles ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS terminald_own_rows ON terminald_records;
CREATE POLICY terminald_own_rows ON terminald_records TO {TERMINAL_GROUP}
    USING (terminal_id = {_MINE}) WITH CHECK (terminal_id = {_MINE});
DROP POLICY IF EXISTS terminald_own_row ON terminald_terminals;
CREATE POLICY terminald_own_row ON terminald_terminals TO {TERMINAL_GROUP}
    USING (terminal_id = {_MINE}) WITH CHECK (terminal_id = {_MINE});
DROP POLICY IF EXISTS terminald_own_role ON terminald_roles;
CREATE POLICY terminald_own_role ON terminald_roles FOR SELECT TO {TERMINAL_GROUP}
    USING (role_name = current_user);
DROP POLICY IF EXISTS terminald_read_all ON terminald_records;
CREATE POLICY terminald_read_all ON terminald_records FOR SELECT TO {READER_ROLE} USING (true);
DROP POLICY IF EXISTS terminald_read_all ON terminald_terminals;
CREATE POLICY terminald_read_all ON terminald_terminals FOR SELECT TO {READER_ROLE} USING (true);
DROP POLICY IF EXISTS terminald_read_all ON terminald_roles;
CREATE POLICY terminald_read_all ON terminald_roles FOR SELECT TO {READER_ROLE} USING (true);

-- A terminal appends records and moves their status; it never rewrites a record or a hash,
-- and deletes nothing.
REVOKE ALL ON terminald_records, terminald_terminals, terminald_roles, terminald_fleet FROM {TERMINAL_GROUP};
GRANT SELECT, INSERT ON terminald_records TO {TERMINAL_GROUP};
GRANT UPDATE (status, outcome, status_at, local_state) ON terminald_records TO {TERMINAL_GROUP};
GRANT SELECT, INSERT, UPDATE ON terminald_terminals TO {TERMINAL_GROUP};
GRANT SELECT ON terminald_roles TO {TERMINAL_GROUP};
REVOKE ALL ON terminald_records, terminald_terminals, terminald_roles, terminald_fleet FROM {READER_ROLE};
GRANT SELECT ON terminald_records, terminald_terminals, terminald_roles, terminald_fleet TO {READER_ROLE};
"""


def init_db(conn: Any) -> None:
    """Create or update the schema on ``conn`` (a psycopg ``Connection`` of the database's owner
    or a superuser: it creates roles, tables and policies) in one transaction."""
    with conn.transaction():
        # Two IT sessions running init-db at once would race on the DO blocks and policies.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('terminald_init_db'))")
        conn.execute(SCHEMA_SQL)


def role_name(terminal_id: str, prefix: str = "terminald_") -> str:
    """The default login role of a terminal: ``terminald_`` and its id in lower case."""
    _check_id(terminal_id)
    name = prefix + terminal_id.lower()
    if len(name.encode()) > 63:
        raise ValueError(f"role name {name!r} is longer than PostgreSQL's 63 bytes")
    return name


def role_statements(terminal_ids: Iterable[str], prefix: str = "terminald_") -> list[str]:
    """SQL lines for IT: each terminal's login role, its group grant and its mapping row.

    Safe to run again (an existing role is kept; the mapping row is replaced). Passwords are not
    set here: ``\\password`` in psql, or client certificates (docs/mirror.md).
    """
    lines: list[str] = []
    for terminal_id in terminal_ids:
        role = role_name(terminal_id, prefix)
        lines += [
            f"-- terminal {terminal_id}",
            f'DO $$ BEGIN CREATE ROLE "{role}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;',
            f'GRANT {TERMINAL_GROUP} TO "{role}";',
            f"INSERT INTO terminald_roles (role_name, terminal_id) VALUES ('{role}', '{terminal_id}')"
            " ON CONFLICT (role_name) DO UPDATE SET terminal_id = EXCLUDED.terminal_id;",
        ]
    return lines


def _check_id(terminal_id: str) -> None:
    # Ids go into SQL text IT runs: only characters that need no quoting beyond the quotes used.
    if not isinstance(terminal_id, str) or not _TERMINAL_ID.fullmatch(terminal_id):
        raise ValueError(f"terminal id {terminal_id!r}: 1-50 letters, digits, '_', '.', '-' (first a letter or digit)")

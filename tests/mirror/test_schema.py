"""The mirror's schema on a real PostgreSQL: idempotent, and one terminal's role sees and writes
only its own rows (row-level security), never a record's content or hash."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from spool import GENESIS_HASH
from terminald.mirror import init_db, role_name, role_statements
from terminald.mirror.schema import READER_ROLE
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import OTHER, TID, prepare


def test_role_lines_name_each_terminal_and_refuse_unsafe_ids() -> None:
    lines = role_statements(["T0001", "pharmacy-2"])
    assert lines[0] == "-- terminal T0001"
    assert any('CREATE ROLE "terminald_t0001" LOGIN' in line for line in lines)
    assert 'GRANT terminald_terminal TO "terminald_pharmacy-2";' in lines
    assert any("VALUES ('terminald_pharmacy-2', 'pharmacy-2')" in line for line in lines)
    for bad in ("", "T'1", 'T"1', "T 1", "x" * 51, "-T1"):
        with pytest.raises(ValueError):
            role_name(bad)


def _record_row(terminal_id: str, seq: int) -> tuple[Any, ...]:
    return (terminal_id, seq, str(uuid.uuid4()), GENESIS_HASH, "a" * 64, "settlement", "2026-11-23T10:15:00+08:00",
            100, False, Jsonb({"seq": seq}), "pending")


_INSERT = ("INSERT INTO terminald_records (terminal_id, seq, record_id, prev_hash, hash, kind, business_time,"
           " total_fen, offline, record, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")


def test_init_db_is_idempotent_and_each_terminal_sees_only_its_rows(pg_pair: PgPair, pg_database: str) -> None:
    dsns = prepare(pg_pair, pg_database, TID, OTHER)
    with pg_pair.admin(pg_database) as conn:  # a second run changes nothing and fails nothing
        init_db(conn)
        for line in role_statements([TID, OTHER]):
            if not line.startswith("--"):
                conn.execute(line)
        conn.execute(f'DO $$ BEGIN CREATE ROLE "{pg_database}_it" LOGIN IN ROLE {READER_ROLE}; END $$')

    with psycopg.connect(dsns[TID], autocommit=True) as mine:
        mine.execute("INSERT INTO terminald_terminals (terminal_id) VALUES (%s)", (TID,))
        mine.execute(_INSERT, _record_row(TID, 1))
        mine.execute("UPDATE terminald_records SET status = 'settled' WHERE terminal_id = %s AND seq = 1", (TID,))
        assert mine.execute("SELECT count(*) FROM terminald_records").fetchone() == (1,)
        # The chain itself is not the terminal's to rewrite, nor to delete.
        for sql in ("UPDATE terminald_records SET hash = repeat('b', 64)",
                    "UPDATE terminald_records SET record = '{}'::jsonb",
                    "DELETE FROM terminald_records"):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                mine.execute(sql)
        with pytest.raises(pg_errors.InsufficientPrivilege):
            mine.execute("SELECT * FROM terminald_fleet")

    with psycopg.connect(dsns[OTHER], autocommit=True) as other:
        assert other.execute("SELECT count(*) FROM terminald_records").fetchone() == (0,)
        assert other.execute("SELECT count(*) FROM terminald_terminals").fetchone() == (0,)
        assert other.execute("SELECT terminal_id FROM terminald_roles").fetchall() == [(OTHER,)]
        # Writing as the other terminal: refused by the policy, or matching no row.
        with pytest.raises(pg_errors.InsufficientPrivilege):
            other.execute(_INSERT, _record_row(TID, 2))
        with pytest.raises(pg_errors.InsufficientPrivilege):
            other.execute("INSERT INTO terminald_terminals (terminal_id) VALUES (%s)", (TID,))
        moved = other.execute("UPDATE terminald_terminals SET last_seq = 99 WHERE terminal_id = %s", (TID,))
        assert moved.rowcount == 0
        changed = other.execute("UPDATE terminald_records SET status = 'rejected' WHERE terminal_id = %s", (TID,))
        assert changed.rowcount == 0
        other.execute(_INSERT, _record_row(OTHER, 1))  # its own: fine

    with pg_pair.admin(pg_database) as conn:
        rows = conn.execute("SELECT terminal_id, seq, status FROM terminald_records ORDER BY 1").fetchall()
        assert rows == [(TID, 1, "settled"), (OTHER, 1, "pending")]
        head = conn.execute("SELECT last_seq FROM terminald_terminals WHERE terminal_id = %s", (TID,)).fetchone()
        assert head == (0,)

    with psycopg.connect(pg_pair.dsn(pg_database, user=f"{pg_database}_it"), autocommit=True) as it:
        assert it.execute("SELECT count(*) FROM terminald_records").fetchone() == (2,)
        assert it.execute("SELECT terminal_id FROM terminald_fleet").fetchall() == [(TID,)]
        with pytest.raises(pg_errors.InsufficientPrivilege):
            it.execute("UPDATE terminald_terminals SET mode = 'x'")

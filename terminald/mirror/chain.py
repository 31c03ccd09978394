"""The append rule: records go to the mirror in seq order, exactly once, never forking.

One batch is one transaction: move the terminal's head row from (first-1, first's prev_hash) to
(last, last's hash) with a compare-and-set, insert the records, commit. The head row and the
records move together or not at all, so after any fault (a commit whose answer was lost, a
reset, a failover to the synchronous standby, a ``kill -9``) the head says exactly what the
mirror holds, and ``verify_head`` decides what to do next:

- the head is on this spool's chain (same hash at its seq, and the mirror's row of that seq
  agrees): carry on after it; a batch the head has passed already is done, once its rows are
  found with the same hashes (the retry after a lost commit);
- the head's own record was pruned from the spool since it was mirrored (a counter idle for
  longer than the retention): the head is checked against the spool's prune checkpoint instead;
- a spool pruned before anything of it was mirrored (a counter in service longer than the
  retention before the mirror was set up) starts the mirror at its prune checkpoint
  (``start_at``: the head row's ``base_seq``/``base_hash`` say where the terminal's chain starts);
- anything else (another hash, a seq past this spool's end, a missing row, records pruned from
  the spool after the head before they were mirrored): ``MirrorFork``, and nothing is written.
  A head moved back by hand, with rows still after it, is caught by the primary key when the
  next batch inserts: the transaction is rolled back, ``MirrorFork``.

Async, on one connection; the spool is read by the caller (in a thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from spool import GENESIS_HASH, Record
from terminald.mirror.errors import MirrorFork, MirrorSchemaMissing
from terminald.mirror.rows import INSERT_BATCH_SQL, batch_param

__all__ = [
    "Head",
    "already_there",
    "copy_batch",
    "ensure_head",
    "mirrored_hashes",
    "read_base",
    "read_head",
    "start_at",
    "verify_head",
]

Head = tuple[int, str]  # (last_seq, last_hash)

_CAS_SQL = (
    "UPDATE terminald_terminals SET last_seq = %s, last_hash = %s"
    " WHERE terminal_id = %s AND last_seq = %s AND last_hash = %s"
)

# The compare-and-set and the batch's inserts as one statement, so one implicit transaction and one
# round trip (no BEGIN, no COMMIT of their own): the rows go in only if the head row was where the
# batch starts, and the head moves only if every row goes in. Its row count is the rows inserted,
# 0 when the head was elsewhere.
_APPEND_SQL = f"WITH head AS ({_CAS_SQL} RETURNING 1) {INSERT_BATCH_SQL} WHERE EXISTS (SELECT FROM head)"


async def ensure_head(conn: psycopg.AsyncConnection[Any], terminal_id: str) -> Head:
    """The terminal's head row, created at (0, genesis) the first time."""
    head = await read_head(conn, terminal_id)
    if head is not None:
        return head  # the usual case: a read, no write to wait for the standby on
    try:
        await conn.execute("INSERT INTO terminald_terminals (terminal_id, last_seq, last_hash) VALUES (%s, 0, %s)"
                           " ON CONFLICT (terminal_id) DO NOTHING", (terminal_id, GENESIS_HASH))
    except (pg_errors.UndefinedTable, pg_errors.InsufficientPrivilege) as exc:
        raise _schema_missing(exc, terminal_id) from exc
    head = await read_head(conn, terminal_id)
    if head is None:  # inserted (or there) but not visible: this role is not mapped to the terminal
        raise MirrorSchemaMissing(f"the head row of terminal {terminal_id} is not visible to this role: "
                                  "is the role in terminald_roles (mirror init-db's role lines)?")
    return head


async def read_head(conn: psycopg.AsyncConnection[Any], terminal_id: str) -> Head | None:
    try:
        cur = await conn.execute("SELECT last_seq, last_hash FROM terminald_terminals WHERE terminal_id = %s",
                                 (terminal_id,))
    except (pg_errors.UndefinedTable, pg_errors.InsufficientPrivilege) as exc:
        raise _schema_missing(exc, terminal_id) from exc
    row = await cur.fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


async def read_base(conn: psycopg.AsyncConnection[Any], terminal_id: str) -> Head:
    """Where the terminal's chain starts in the mirror: (0, genesis), or a prune checkpoint."""
    try:
        cur = await conn.execute("SELECT base_seq, base_hash FROM terminald_terminals WHERE terminal_id = %s",
                                 (terminal_id,))
    except (pg_errors.UndefinedColumn, pg_errors.UndefinedTable, pg_errors.InsufficientPrivilege) as exc:
        raise _schema_missing(exc, terminal_id) from exc
    row = await cur.fetchone()
    return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))


# The head (and the chain's start) moves to the spool's checkpoint only while the mirror holds
# nothing of this terminal: no row, and the head where the chain starts.
_START_SQL = (
    "UPDATE terminald_terminals SET last_seq = %(seq)s, last_hash = %(hash)s, base_seq = %(seq)s,"
    " base_hash = %(hash)s WHERE terminal_id = %(terminal_id)s AND last_seq = %(head_seq)s"
    " AND last_hash = %(head_hash)s AND base_seq = last_seq AND base_hash = last_hash"
    " AND NOT EXISTS (SELECT FROM terminald_records WHERE terminal_id = %(terminal_id)s)"
)


async def start_at(conn: psycopg.AsyncConnection[Any], terminal_id: str, head: Head, checkpoint: Head) -> bool:
    """Start the terminal's chain in the mirror at the spool's prune ``checkpoint`` (its records up to
    it were pruned before any was mirrored): True if the head row moved from ``head`` to it, False
    if the mirror holds something of this terminal already (its head stays: ``verify_head`` says
    whether that is a gap)."""
    try:
        cur = await conn.execute(_START_SQL, {"seq": checkpoint[0], "hash": checkpoint[1], "terminal_id": terminal_id,
                                              "head_seq": head[0], "head_hash": head[1]})
    except (pg_errors.UndefinedColumn, pg_errors.UndefinedTable, pg_errors.InsufficientPrivilege) as exc:
        raise _schema_missing(exc, terminal_id) from exc
    return cur.rowcount == 1


async def mirrored_hashes(conn: psycopg.AsyncConnection[Any], terminal_id: str, first: int,
                          last: int) -> dict[int, str]:
    """seq -> hash of the mirror's rows in [first, last]."""
    cur = await conn.execute("SELECT seq, hash FROM terminald_records"
                             " WHERE terminal_id = %s AND seq BETWEEN %s AND %s", (terminal_id, first, last))
    return {int(seq): str(h) for seq, h in await cur.fetchall()}


async def verify_head(conn: psycopg.AsyncConnection[Any], terminal_id: str, head: Head,
                      at_head: Record | None, spool_last_seq: int, checkpoint: Head | None = None) -> None:
    """MirrorFork unless ``head`` is on this spool's chain: ``at_head`` is the spool's record at the
    head's seq (None if the spool has none), ``spool_last_seq`` the spool's tail, ``checkpoint``
    the spool's prune checkpoint (needed when ``at_head`` is None: the head's record was pruned)."""
    seq, hash_ = head
    if seq == 0:
        if hash_ != GENESIS_HASH:
            raise MirrorFork(f"the mirror's head of {terminal_id} is seq 0 with a hash other than the genesis", 0)
        return
    if seq > spool_last_seq:
        raise MirrorFork(f"the mirror holds {terminal_id} up to seq {seq}, this spool ends at seq {spool_last_seq}: "
                         "the mirror has records this spool does not (a spool from an older copy, or two PCs "
                         "with one terminal id)", seq)
    if at_head is None:
        # Pruned from the spool: only the checkpoint (the last record pruned) is still known.
        cp_seq, cp_hash = checkpoint if checkpoint is not None else (0, GENESIS_HASH)
        if seq < cp_seq:
            raise MirrorFork(f"records {seq + 1}-{cp_seq} of {terminal_id} were pruned from this spool before they "
                             f"were mirrored (the mirror's head is seq {seq}): a gap, they are in neither", seq)
        if seq != cp_seq:
            raise MirrorFork(f"the mirror's head of {terminal_id} is seq {seq}, which this spool does not hold "
                             f"(its chain starts after seq {cp_seq}): it cannot be verified", seq)
        if cp_hash != hash_:
            raise MirrorFork(f"the mirror's head of {terminal_id} at seq {seq} has hash {hash_[:12]}…, this spool's "
                             f"prune checkpoint at seq {seq} has {cp_hash[:12]}…: a fork; nothing is overwritten", seq)
    elif at_head.hash != hash_:
        raise MirrorFork(f"the mirror's head of {terminal_id} at seq {seq} has hash {hash_[:12]}…, this spool's "
                         f"record {seq} has {at_head.hash[:12]}…: a fork; nothing is overwritten", seq)
    stored = await mirrored_hashes(conn, terminal_id, seq, seq)
    if seq not in stored and await read_base(conn, terminal_id) == head:
        return  # the mirror's chain starts here (start_at): no row of its own
    if stored.get(seq) != hash_:
        raise MirrorFork(f"the mirror's head of {terminal_id} says seq {seq}, but its row of seq {seq} is "
                         f"{'missing' if seq not in stored else 'another record'}: a gap", seq)


async def already_there(conn: psycopg.AsyncConnection[Any], terminal_id: str, batch: Sequence[Record],
                        head: Head) -> None:
    """After a head found past a batch's start: MirrorFork unless the mirror holds the batch's records
    (up to the head) with the same hashes."""
    upto = min(batch[-1].seq, head[0])
    stored = await mirrored_hashes(conn, terminal_id, batch[0].seq, upto)
    for record in batch:
        if record.seq > upto:
            break
        if stored.get(record.seq) != record.hash:
            state = "missing" if record.seq not in stored else "another record"
            raise MirrorFork(f"seq {record.seq} of {terminal_id} in the mirror is {state}, under a head at seq "
                             f"{head[0]}: a fork or a gap; nothing is overwritten", record.seq)


async def copy_batch(conn: psycopg.AsyncConnection[Any], batch: Sequence[Record], text: str | None = None) -> bool:
    """Append ``batch`` (consecutive records of one terminal) in one transaction; ``text``: its
    ``rows.batch_text``, if built already (in a thread).

    True: committed. False: the head was not where the batch starts (nothing written; read the
    head and ``verify_head`` again). MirrorFork: the head moved but a row is already there.
    Connection errors propagate (psycopg.OperationalError): the outcome is then unknown, and
    the next ``verify_head`` finds it out.
    """
    first, last = batch[0], batch[-1]
    terminal_id = first.terminal_id
    try:
        cur = await conn.execute(_APPEND_SQL, (last.seq, last.hash, terminal_id, first.seq - 1, first.prev_hash,
                                               batch_param(batch, text)))
    except pg_errors.UniqueViolation as exc:
        raise MirrorFork(f"a record of seqs {first.seq}-{last.seq} of {terminal_id} is in the mirror already, "
                         "after a head that says it is not (a head row moved back by hand?), or its record_id "
                         f"is another terminal's: nothing is overwritten ({_diag(exc)})", first.seq) from exc
    except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn, pg_errors.InsufficientPrivilege) as exc:
        # UndefinedColumn: a schema older than this terminald (record_text): init-db brings it up to date.
        raise _schema_missing(exc, terminal_id) from exc
    # 0: the head was elsewhere. Any other count short of the batch cannot happen (one statement
    # inserts every row or none); if it did, the caller's head check and already_there would find it.
    return cur.rowcount == len(batch)


def _schema_missing(exc: psycopg.Error, terminal_id: str) -> MirrorSchemaMissing:
    return MirrorSchemaMissing(f"the mirror's tables are missing or not granted to terminal {terminal_id}'s role "
                               f"(run `terminald mirror init-db` and its role lines): {_diag(exc)}")


def _diag(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary if exc.diag is not None else None
    return primary or type(exc).__name__

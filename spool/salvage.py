"""Salvage a damaged spool: copy what can still be read into a fresh one, never writing the source.

``Spool.open`` refuses a damaged file (and ``check``/``export`` go through it), so
this works on the file directly:

- **SRC is only read.** Without a WAL beside it, SRC is opened
  ``mode=ro&immutable=1`` (no lock, no ``-shm``, no ``-wal``). With a non-empty
  ``SRC-wal`` (a crash left commits there: often the newest acknowledged
  records), SRC and its WAL are *copied* into a private directory next to DEST
  and the copy is read: ``immutable`` would ignore the WAL, and reading SRC in
  place would create ``SRC-shm``. A file whose 100-byte header is garbled is
  read from a private copy with the header rebuilt; whatever that yields is
  still verified record by record, so a wrong guess can only lose records,
  never let a wrong one in.
- **Row by row.** Records are read by seq in chunks; a chunk SQLite cannot read
  is bisected down to single rows, so one bad page costs only its own rows.
- **One chain.** DEST gets the records of the unbroken chain from the prune
  checkpoint (or seq 1) up to the first break (a missing, unreadable or
  malformed row, a hash or link that does not match), with status, outcome,
  resolution and history as far as readable. Rows are inserted normally, so
  the triggers keep ``status_totals``; ``total_fen``/``business_date`` are
  recomputed from the record.
- **The file's marks go along**: its terminal id, its prune checkpoint, and the mark of a spool
  rebuilt from the mirror and not acknowledged yet (spool/restored.py: the nhsa adapter holds
  the restored pending records until staff checked them; a salvage must not release them).
- **Nothing readable is dropped.** Records after the break cannot be chained;
  they go, one JSON line each (the export's jsonl shape plus ``history`` and a
  ``salvage`` verdict), to ``DEST.after-break.jsonl``.
- **The other parts' tables** (uploader, print jobs, events: every table that is
  not the spool's, with their ``schema_migrations`` rows) are copied as they
  are when all of them read cleanly, else none of them (the daemon then creates
  them empty): copying half a namespace would leave a schema the daemon's
  migrations cannot continue.

DEST (and the side file) appear only when the salvage finished: they are
built in the private directory and linked into place, never overwriting.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from spool import restored
from spool.chain import GENESIS_HASH, verify_links
from spool.errors import InvalidRequest, SpoolCorrupt, SpoolError
from spool.maintenance import check_file
from spool.records import RECORD_COLUMNS, STATUSES, WIRE_FIELDS, CheckReport, Record, business_date_of
from spool.schema import NAMESPACE, STEPS
from spool.store import connect, migrate, translate
from spool.witness import read_witness

__all__ = ["AFTER_BREAK_SUFFIX", "LostRange", "SalvageReport", "after_break_path", "salvage"]

AFTER_BREAK_SUFFIX = ".after-break.jsonl"
_CHUNK = 500
_SPOOL_TABLES = frozenset({"records", "history", "meta", "checkpoint", "status_totals", "schema_migrations"})
# The columns of schema step 1, handled one by one. Local columns added by later steps (a
# revoke's original, the outage facts, the refund, ...) are copied as they are, whichever of
# them SRC and DEST both have.
_CORE = (
    "seq", "record_id", "terminal_id", "kind", "business_time", "spooled_at", "offline", "offline_reason",
    "payload", "prev_hash", "hash", "status", "outcome", "resolution", "idempotency_key", "request_digest",
    "updated_at", "updated_epoch", "total_fen", "business_date",
)  # fmt: skip
_TEXT_FIELDS = ("record_id", "terminal_id", "kind", "business_time", "spooled_at", "prev_hash", "hash")
_SQLITE_NOTADB = 26
_SQLITE_VERSION_NUMBER = 3040001


def after_break_path(dest: Path) -> Path:
    """Where the records readable after the chain's break are written."""
    return dest.with_name(dest.name + AFTER_BREAK_SUFFIX)


@dataclass(frozen=True)
class LostRange:
    """Seqs that existed but could not be read (``unreadable``) or are not in the file (``missing``)."""

    first: int
    last: int
    reason: str

    def __str__(self) -> str:
        seqs = f"seq {self.first}" if self.first == self.last else f"seq {self.first}-{self.last}"
        return f"{seqs} ({self.last - self.first + 1}): {self.reason}"


@dataclass(frozen=True)
class SalvageReport:
    src: Path
    dest: Path
    terminal_id: str
    read_from: str  # how SRC was read, and why
    chain_start: int  # the chain continues after this seq (the prune checkpoint; 0: genesis)
    copied: int  # records in DEST's chain
    first_seq: int | None
    last_seq: int | None
    lost: tuple[LostRange, ...]  # unreadable or missing seqs, in order
    broken_at: int | None  # first seq that could not be chained (None: the chain is whole)
    break_reason: str | None
    after_break: int  # records readable after the break, written to after_break_file
    after_break_seqs: tuple[int, int] | None  # the first and last of them
    after_break_held: int  # how many of them central acknowledged
    after_break_file: Path | None
    acked_seq: int | None  # upload_state.acked_seq: what central acknowledged (None: unknown)
    witness_seq: int | None  # the -seq witness beside SRC (None: absent or unreadable)
    side_tables: tuple[str, ...]  # the other parts' tables copied into DEST
    side_tables_note: str | None  # why they were not copied
    damaged: tuple[str, ...]  # local state of copied records that could not be kept
    notes: tuple[str, ...]  # repairs and remarks that lost nothing
    dest_check: CheckReport  # DEST through the same check as `terminald spool check`

    @property
    def complete(self) -> bool:
        """Every record and its local state is in DEST, and DEST verifies."""
        return not self.lost and self.broken_at is None and not self.damaged and self.dest_check.ok

    def held_by_central(self, first: int, last: int) -> int:
        """How many of seqs ``first..last`` central acknowledged (it holds them)."""
        if self.acked_seq is None or self.acked_seq < first:
            return 0
        return min(last, self.acked_seq) - first + 1


@dataclass
class _Row:
    seq: int
    values: dict[str, Any]
    wire: dict[str, Any] | None  # None: malformed
    problem: str | None


@dataclass
class _Gap:
    seq: int  # the first seq of the gap
    last: int
    reason: str  # "unreadable" | "missing"


@dataclass
class _State:
    terminal_id: str
    expected_prev: str
    chain_open: bool = True
    copied: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    broken_at: int | None = None
    break_reason: str | None = None
    after_break: int = 0
    after_break_seqs: tuple[int, int] | None = None
    after_break_held: int = 0
    acked: int | None = None
    prev_stored_hash: str | None = None  # stored hash of the seq just before (None: not readable)
    extras: tuple[str, ...] = ()  # local columns beyond _CORE that SRC and DEST both have
    lost: list[LostRange] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lose(self, first: int, last: int, reason: str) -> None:
        if self.lost and self.lost[-1].last == first - 1 and self.lost[-1].reason == reason:
            self.lost[-1] = LostRange(self.lost[-1].first, last, reason)
        else:
            self.lost.append(LostRange(first, last, reason))

    def stop_chain(self, seq: int, reason: str) -> None:
        if self.chain_open:
            self.chain_open = False
            self.broken_at, self.break_reason = seq, reason


def salvage(src: Path, dest: Path, terminal_id: str | None = None) -> SalvageReport:
    """Copy every readable record of the spool ``src`` into the new spool ``dest``; never write ``src``.

    InvalidRequest for a usage error (``src`` missing or not a spool, ``dest`` or its side file
    existing, the terminal unknown or not the file's); SpoolError if DEST cannot be written.
    """
    src, dest = Path(src), Path(dest)
    side = after_break_path(dest)
    _refuse_bad_paths(src, dest, side)
    try:
        work = Path(tempfile.mkdtemp(prefix=".spool-salvage-", dir=dest.parent))
    except OSError as exc:
        raise translate(exc, dest, "salvage") from exc
    try:
        return _salvage(src, dest, side, terminal_id, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _refuse_bad_paths(src: Path, dest: Path, side: Path) -> None:
    if not src.is_file():
        raise InvalidRequest(f"{src}: no such spool file")
    for path in (dest, side):
        if os.path.lexists(path):
            raise InvalidRequest(f"{path} exists: salvage creates a new spool and never overwrites")
    if not dest.parent.is_dir():
        raise InvalidRequest(f"{dest.parent}: no such directory")
    beside = {src.with_name(src.name + suffix).resolve() for suffix in ("-wal", "-shm", "-seq", "-journal")}
    for path in (dest, side):
        if path.resolve() in beside:
            raise InvalidRequest(f"{path} would be one of {src.name}'s own side files")


def _salvage(src: Path, dest: Path, side: Path, terminal_id: str | None, work: Path) -> SalvageReport:
    conn, read_from = _open_source(src, work)
    try:
        tid, tid_note = _terminal_id(conn, src, terminal_id)
        state = _State(terminal_id=tid, expected_prev=GENESIS_HASH)
        if tid_note:
            state.notes.append(tid_note)
        checkpoint = _checkpoint(conn, state)
        chain_start = checkpoint[0] if checkpoint else 0
        if checkpoint:
            state.expected_prev = checkpoint[1]
        state.prev_stored_hash = state.expected_prev
        acked = state.acked = _acked_seq(conn)
        witness = read_witness(src)
        witness_seq = witness[0] if witness else None
        src_steps = _schema_steps(conn, state)

        tmp_dest, tmp_side = work / dest.name, work / side.name
        out = connect(tmp_dest)
        try:
            # DEST starts at SRC's schema step: the later steps then derive their columns from the
            # copied records exactly as an upgrade of SRC would have.
            migrate(out, NAMESPACE, STEPS[:src_steps])
            state.extras = _extra_columns(conn, out)
            _write_meta(out, tid, checkpoint, _restored_marker(conn, state))
            # 0600 whatever the umask: the records after the break, with full identities.
            side_fd = os.open(tmp_side, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(side_fd, "w", encoding="utf-8") as side_fh:
                _copy_records(conn, out, side_fh, state, chain_start, acked, witness_seq)
                side_fh.flush()
                os.fsync(side_fh.fileno())
            migrate(out, NAMESPACE, STEPS)
            _readable_in_dest(out, state)
            side_tables, side_note = _copy_side_tables(conn, out)
            out.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, dest, "salvage") from exc
        finally:
            out.close()
    finally:
        conn.close()

    dest_check = check_file(tmp_dest, tid)
    try:
        _link_into_place(tmp_dest, dest)
        if state.after_break:
            _link_into_place(tmp_side, side)
        _sync_dir(dest.parent)
    except OSError as exc:
        raise translate(exc, dest, "salvage") from exc
    return SalvageReport(
        src=src,
        dest=dest,
        terminal_id=tid,
        read_from=read_from,
        chain_start=chain_start,
        copied=state.copied,
        first_seq=state.first_seq,
        last_seq=state.last_seq,
        lost=tuple(state.lost),
        broken_at=state.broken_at,
        break_reason=state.break_reason,
        after_break=state.after_break,
        after_break_seqs=state.after_break_seqs,
        after_break_held=state.after_break_held,
        after_break_file=side if state.after_break else None,
        acked_seq=acked,
        witness_seq=witness_seq,
        side_tables=side_tables,
        side_tables_note=side_note,
        damaged=tuple(state.damaged),
        notes=tuple(state.notes),
        dest_check=dest_check,
    )


# -- opening SRC without writing it -------------------------------------------------------------------


def _connect_ro(path: Path, *, immutable: bool) -> sqlite3.Connection:
    flags = "mode=ro&immutable=1" if immutable else "mode=ro"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, isolation_level=None,
                           check_same_thread=False)
    # Invalid UTF-8 (a damaged cell) reads as U+FFFD instead of failing the whole row: such a
    # record cannot hash right, so it is reported, never chained.
    conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
    conn.execute("PRAGMA query_only = 1")
    # A file shorter than its header says (truncated) is refused outright unless the schema is
    # "writable"; nothing can be written through a read-only, query-only connection anyway.
    conn.execute("PRAGMA writable_schema = 1")
    return conn


def _probe(conn: sqlite3.Connection) -> sqlite3.DatabaseError | None:
    try:
        conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as exc:
        return exc
    return None


def _open_source(src: Path, work: Path) -> tuple[sqlite3.Connection, str]:
    """A read-only connection on SRC or on a private copy of it, and how it was read."""
    wal = src.with_name(src.name + "-wal")
    copy = work / "source.db"
    copied_wal: Path | None = None
    try:
        has_wal = wal.is_file() and wal.stat().st_size > 0
        if has_wal:
            shutil.copyfile(src, copy)
            copied_wal = work / "source.db-wal"
            shutil.copyfile(wal, copied_wal)
            how = (f"a private copy of {src.name} and {wal.name} (the WAL holds commits not yet in the main "
                   "file; opening SRC immutable would ignore them, replaying them in place would write beside SRC)")
            conn = _connect_ro(copy, immutable=False)
        else:
            how = f"{src} itself, read-only and immutable (no WAL beside it)"
            conn = _connect_ro(src, immutable=True)
    except (OSError, sqlite3.Error) as exc:
        raise SpoolError(f"{src}: cannot be read ({exc})") from exc
    error = _probe(conn)
    if error is None:
        _require_spool(conn, src)
        return conn, how
    if getattr(error, "sqlite_errorcode", None) != _SQLITE_NOTADB:
        return conn, how + f"; its schema is unreadable ({error})"
    conn.close()
    try:
        if not has_wal:
            shutil.copyfile(src, copy)
        rebuilt = _rebuild_header(copy, copied_wal)
    except OSError as exc:
        raise SpoolError(f"{src}: cannot be read ({exc})") from exc
    if rebuilt is None:
        conn = _connect_ro(copy, immutable=copied_wal is None)
        return conn, how + f"; not an SQLite file any more ({error}), its header could not be rebuilt"
    conn, page_size = rebuilt
    _require_spool(conn, src)
    return conn, (f"a private copy of {src.name}{' and its WAL' if copied_wal else ''} with the garbled "
                  f"100-byte header rebuilt (page size {page_size}); every record read is still verified")


def _require_spool(conn: sqlite3.Connection, src: Path) -> None:
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "records" not in names:
        conn.close()
        raise InvalidRequest(f"{src} is an SQLite file without a records table: not a spool")


def _rebuild_header(copy: Path, wal: Path | None) -> tuple[sqlite3.Connection, int] | None:
    """Write a plausible database header over the copy's first 100 bytes; a connection if it reads."""
    candidates = [4096, 1024, 2048, 8192, 16384, 32768, 65536, 512]
    if wal is not None:
        with wal.open("rb") as fh:
            head = fh.read(32)
        if len(head) == 32 and struct.unpack(">I", head[:4])[0] in (0x377F0682, 0x377F0683):
            candidates.insert(0, struct.unpack(">I", head[8:12])[0])
    size = copy.stat().st_size
    for page_size in dict.fromkeys(candidates):
        if page_size < 512 or page_size > 65536 or page_size & (page_size - 1) or size < page_size:
            continue
        mode = 2 if wal is not None else 1
        header = (
            b"SQLite format 3\x00"
            + struct.pack(">HBBBBBB", page_size if page_size < 65536 else 1, mode, mode, 0, 64, 32, 32)
            + struct.pack(">IIIIIIIIIIII", 1, size // page_size, 0, 0, 1, 4, 0, 0, 1, 0, 0, 0)
            + bytes(20)
            + struct.pack(">II", 1, _SQLITE_VERSION_NUMBER)
        )
        with copy.open("r+b") as fh:
            fh.write(header)
        copy.with_name(copy.name + "-shm").unlink(missing_ok=True)  # built from the old header
        try:
            conn = _connect_ro(copy, immutable=wal is None)
        except sqlite3.Error:
            continue
        if _probe(conn) is None:
            try:
                conn.execute("SELECT seq FROM records LIMIT 1").fetchall()
                return conn, page_size
            except sqlite3.DatabaseError:
                pass
        conn.close()
    return None


# -- what SRC says about itself -------------------------------------------------------------------------


def _one(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """The first row, or None when there is none or it cannot be read."""
    try:
        row = conn.execute(sql, args).fetchone()
    except sqlite3.DatabaseError:
        return None
    return tuple(row) if row is not None else None


def _terminal_id(conn: sqlite3.Connection, src: Path, given: str | None) -> tuple[str, str | None]:
    if given is not None and (not isinstance(given, str) or not given):
        raise InvalidRequest("terminal_id must be a non-empty string")
    row = _one(conn, "SELECT value FROM meta WHERE key = 'terminal_id'")
    stored = row[0] if row and isinstance(row[0], str) and row[0] else None
    if given is not None and stored is not None and given != stored:
        raise InvalidRequest(f"{src} holds the spool of terminal {stored!r}, not {given!r}")
    if stored is not None:
        return stored, None
    if given is not None:
        return given, f"meta.terminal_id unreadable: using the given terminal {given!r}"
    row = _one(conn, "SELECT terminal_id FROM records ORDER BY seq LIMIT 1")
    if row and isinstance(row[0], str) and row[0]:
        return row[0], f"meta.terminal_id unreadable: using the first record's terminal {row[0]!r}"
    raise InvalidRequest(f"cannot tell which terminal {src} belongs to: give its terminal id (--terminal-id)")


def _checkpoint(conn: sqlite3.Connection, state: _State) -> tuple[int, str, int, str] | None:
    try:
        row = conn.execute("SELECT seq, hash, pruned, at FROM checkpoint WHERE id = 1").fetchone()
    except sqlite3.DatabaseError as exc:
        state.damaged.append(f"the prune checkpoint is unreadable ({exc}): the chain is verified from seq 1")
        return None
    if row is None:
        return None
    seq, hash_, pruned, at = row
    if not isinstance(seq, int) or not isinstance(hash_, str) or len(hash_) != 64:
        state.damaged.append("the prune checkpoint is malformed: the chain is verified from seq 1")
        return None
    return seq, hash_, pruned if isinstance(pruned, int) else 0, at if isinstance(at, str) else ""


def _acked_seq(conn: sqlite3.Connection) -> int | None:
    row = _one(conn, "SELECT value FROM upload_state WHERE key = 'acked_seq'")
    if row is None:
        return None
    try:
        return int(row[0])
    except (TypeError, ValueError):
        return None


def _schema_steps(conn: sqlite3.Connection, state: _State) -> int:
    """SRC's spool schema step (this version's last when unreadable or newer)."""
    row = _one(conn, "SELECT COUNT(*) FROM schema_migrations WHERE namespace = ?", (NAMESPACE,))
    steps = row[0] if row and isinstance(row[0], int) else None
    if steps is None or steps < 1:
        state.notes.append(f"SRC's schema step is unreadable: DEST is created at step {len(STEPS)}")
        return len(STEPS)
    if steps > len(STEPS):
        state.damaged.append(f"SRC's spool schema is at step {steps}, this version knows {len(STEPS)}: "
                             "columns added later were not copied")
        return len(STEPS)
    return steps


def _columns(conn: sqlite3.Connection) -> list[str]:
    try:
        return [str(row[1]) for row in conn.execute("PRAGMA table_info(records)")]
    except sqlite3.DatabaseError:
        return []


def _extra_columns(conn: sqlite3.Connection, out: sqlite3.Connection) -> tuple[str, ...]:
    theirs, ours = _columns(conn), set(_columns(out))
    return tuple(name for name in theirs if name in ours and name not in _CORE)


def _upper_bounds(conn: sqlite3.Connection, acked: int | None, witness: int | None) -> dict[str, int]:
    """Highest seq each source knows of; used when the records table cannot say."""
    found: dict[str, int] = {}
    for name, sql in (
        ("the records table", "SELECT MAX(seq) FROM records"),
        ("the records' status index", "SELECT MAX(seq) FROM records INDEXED BY records_status_seq"),
        ("the history table", "SELECT MAX(seq) FROM history"),
    ):
        row = _one(conn, sql)
        if row and isinstance(row[0], int):
            found[name] = row[0]
    if witness is not None:
        found["the -seq witness"] = witness
    if acked is not None:
        found["central's acknowledgement (upload_state.acked_seq)"] = acked
    return found


# -- reading records ------------------------------------------------------------------------------------


def _parse(values: dict[str, Any]) -> _Row:
    seq = int(values["seq"])
    bad = [name for name in _TEXT_FIELDS if not isinstance(values[name], str)]
    if values["offline"] not in (0, 1):
        bad.append("offline")
    if values["offline_reason"] is not None and not isinstance(values["offline_reason"], str):
        bad.append("offline_reason")
    payload: Any = None
    if isinstance(values["payload"], str):
        try:
            payload = json.loads(values["payload"])
        except ValueError:
            payload = None
    if not isinstance(payload, dict):
        bad.append("payload")
    if bad:
        return _Row(seq, values, None, f"seq {seq}: record is malformed ({', '.join(bad)} unreadable)")
    wire = {name: values[name] for name in WIRE_FIELDS}
    wire["offline"] = bool(values["offline"])
    wire["payload"] = payload
    return _Row(seq, values, wire, None)


def _select(conn: sqlite3.Connection, columns: tuple[str, ...], where: str,
            args: tuple[Any, ...]) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM records {where}", args).fetchall()
    return [dict(zip(columns, row, strict=True)) for row in rows]


# Every status the CHECK allows: lets SQLite range-scan the (status, seq) index by seq.
_INDEXED = "records INDEXED BY records_status_seq WHERE status IN ('pending', 'settled', 'rejected', 'resolved')"


def _indexed_seqs(conn: sqlite3.Connection, lo: int, hi: int) -> set[int] | None:
    """The seqs of ``lo..hi`` the status index lists (None: unreadable)."""
    try:
        rows = conn.execute(f"SELECT seq FROM {_INDEXED} AND seq BETWEEN ? AND ?", (lo, hi)).fetchall()
    except sqlite3.DatabaseError:
        return None
    return {row[0] for row in rows if isinstance(row[0], int)}


def _window(conn: sqlite3.Connection, columns: tuple[str, ...], lo: int, hi: int) -> list[_Row | _Gap]:
    """Every seq of ``lo..hi``, in order: its row, or why there is none.

    A damaged page may fail the range read, end it early, or yield rows with nonsense seqs and no
    error at all; so every seq the range read did not return once and in place is read on its own.
    A seq that no read returns is ``unreadable`` when the status index still lists it (or the read
    fails), ``missing`` when the index does not know it either.
    """
    found: dict[int, dict[str, Any]] = {}
    doubtful: set[int] = set()
    try:
        rows = _select(conn, columns, "WHERE seq BETWEEN ? AND ? ORDER BY seq", (lo, hi))
    except sqlite3.DatabaseError:
        rows = []
    for values in rows:
        seq = values["seq"]
        if isinstance(seq, int) and lo <= seq <= hi:
            if seq in found:
                doubtful.add(seq)
            found[seq] = values
    holes = sorted(doubtful | {seq for seq in range(lo, hi + 1) if seq not in found})
    listed = _indexed_seqs(conn, lo, hi) if holes else set()
    why: dict[int, str] = {}
    for seq in holes:
        found.pop(seq, None)
        try:
            single = _select(conn, columns, "WHERE seq = ?", (seq,))
        except sqlite3.DatabaseError:
            why[seq] = "unreadable"
            continue
        if len(single) == 1 and single[0]["seq"] == seq:
            found[seq] = single[0]
        else:
            why[seq] = "unreadable" if listed is None or seq in listed or single else "missing"
    items: list[_Row | _Gap] = []
    for seq in range(lo, hi + 1):
        if seq in found:
            items.append(_parse(found[seq]))
            continue
        last = items[-1] if items else None
        if isinstance(last, _Gap) and last.reason == why[seq] and last.last == seq - 1:
            last.last = seq
        else:
            items.append(_Gap(seq, seq, why[seq]))
    return items


def _next_seq(conn: sqlite3.Connection, after: int) -> tuple[int | None, int]:
    """The smallest seq above ``after`` that the table or the status index knows; how many reads failed."""
    found: list[int] = []
    failed = 0
    for sql in (
        "SELECT MIN(seq) FROM records WHERE seq > ?",
        f"SELECT MIN(seq) FROM {_INDEXED} AND seq > ?",
    ):
        try:
            row = conn.execute(sql, (after,)).fetchone()
        except sqlite3.DatabaseError:
            failed += 1
            continue
        if row is not None and isinstance(row[0], int):
            found.append(row[0])
    return (min(found) if found else None), failed


def _chunks(conn: sqlite3.Connection, columns: tuple[str, ...], start: int,
            walk_to: int) -> Iterator[list[_Row | _Gap]]:
    """Seq ``start`` onwards, in order and without holes, a window at a time, to the file's end.

    ``walk_to`` is the highest seq any source knows of. Long runs with nothing in them are crossed
    in one step (asking the table and the index for the next seq), so a nonsense seq costs little.
    """
    lo = start
    while True:
        if lo > walk_to:
            nxt, failed = _next_seq(conn, lo - 1)
            if nxt is None:
                if failed == 2:
                    yield [_Gap(lo, lo, "unreadable (how many records follow it is unknown)")]
                return
            walk_to = nxt + _CHUNK - 1
            if nxt > lo:
                yield [_Gap(lo, nxt - 1, "missing")]
                lo = nxt
        hi = min(lo + _CHUNK - 1, walk_to)
        items = _window(conn, columns, lo, hi)
        yield items
        lo = hi + 1
        if lo <= walk_to and not any(isinstance(item, _Row) for item in items):
            nxt, failed = _next_seq(conn, hi)
            if failed == 0:
                target = walk_to + 1 if nxt is None else min(nxt, walk_to + 1)
                if target > lo:
                    yield [_Gap(lo, target - 1, "missing")]
                    lo = target


def _history(conn: sqlite3.Connection, seqs: list[int]) -> tuple[dict[int, list[tuple[Any, ...]]], set[int]]:
    """History rows of ``seqs`` (ascending) by seq, and the seqs whose history could not be read."""
    sql = "SELECT id, seq, at, status, detail FROM history WHERE seq BETWEEN ? AND ? ORDER BY seq, id"
    found: dict[int, list[tuple[Any, ...]]] = {}
    unreadable: set[int] = set()
    if not seqs:
        return found, unreadable
    try:
        batches = [conn.execute(sql, (seqs[0], seqs[-1])).fetchall()]
    except sqlite3.DatabaseError:
        batches = []
        for seq in seqs:
            try:
                batches.append(conn.execute(sql, (seq, seq)).fetchall())
            except sqlite3.DatabaseError:
                unreadable.add(seq)
    for rows in batches:
        for row in rows:
            found.setdefault(row[1], []).append(tuple(row))
    return found, unreadable


# -- copying --------------------------------------------------------------------------------------------


def _restored_marker(conn: sqlite3.Connection, state: _State) -> str | None:
    """SRC's mark "rebuilt from a copy, not acknowledged yet" (spool/restored.py), as stored: an
    upstream without an idempotency key (nhsa) holds the restored pending records until staff
    checked them, and a salvage must not release them."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (restored.KEY,)).fetchone()
    except sqlite3.DatabaseError as exc:
        state.damaged.append(f"meta.{restored.KEY} is unreadable ({exc}): if this spool was restored from the "
                             "mirror and its restored pending records were not checked with the platform yet, they "
                             "are no longer held: check them before the daemon uploads (docs/mirror.md, section 6)")
        return None
    if row is None:
        return None
    # Not a string (damaged): kept as "unreadable", which spool/restored.py reads as "restored,
    # everything unknown", never as "not restored".
    return row[0] if isinstance(row[0], str) else "unreadable"


def _write_meta(out: sqlite3.Connection, terminal_id: str, checkpoint: tuple[int, str, int, str] | None,
                restored_from: str | None = None) -> None:
    out.execute("BEGIN IMMEDIATE")
    out.execute("INSERT INTO meta (key, value) VALUES ('terminal_id', ?)", (terminal_id,))
    if restored_from is not None:
        out.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (restored.KEY, restored_from))
    if checkpoint is not None:
        out.execute("INSERT INTO checkpoint (id, seq, hash, pruned, at) VALUES (1, ?, ?, ?, ?)", checkpoint)
    out.execute("COMMIT")


def _copy_records(
    conn: sqlite3.Connection,
    out: sqlite3.Connection,
    side: IO[str],
    state: _State,
    chain_start: int,
    acked: int | None,
    witness: int | None,
) -> None:
    """Walk SRC from the chain's start: the chain into ``out``, what follows its break into ``side``.

    Gaps count as lost once a row follows them. Past the last row, only the witness, central's
    cursor, the status index and the history say how many records there were: a window read past
    the file's end proves nothing.
    """
    bounds = _upper_bounds(conn, acked, witness)
    walk_to = max([chain_start, *(seq for name, seq in bounds.items() if not name.startswith("central"))])
    pending: list[_Gap] = []
    last_row = chain_start
    for chunk in _chunks(conn, _CORE + state.extras, chain_start + 1, walk_to):
        rows = [item for item in chunk if isinstance(item, _Row)]
        history, no_history = _history(conn, [row.seq for row in rows])
        out.execute("BEGIN IMMEDIATE")
        for item in chunk:
            if isinstance(item, _Gap):
                pending.append(item)
                continue
            for gap in pending:
                state.lose(gap.seq, gap.last, gap.reason)
                state.stop_chain(gap.seq, f"seq {gap.seq}: {gap.reason}")
                state.prev_stored_hash = None
            pending.clear()
            _take(out, side, state, item, history.get(item.seq, []), item.seq in no_history)
            last_row = item.seq
        out.execute("COMMIT")
    trusted = {name: seq for name, seq in bounds.items() if name != "the records table"}
    end = max([last_row, *trusted.values()])
    unreadable = next((gap.reason for gap in pending if gap.reason.startswith("unreadable")), None)
    if end > last_row:
        source = max(trusted, key=lambda name: trusted[name])
        if unreadable:
            reason = f"unreadable ({source} knows of seq {end})"
        else:
            reason = f"missing after the file's last record ({source} knows of seq {end})"
        state.lose(last_row + 1, end, reason)
        state.stop_chain(last_row + 1, f"seq {last_row + 1}: {reason}")
    elif unreadable:
        reason = "unreadable (how many records follow it is unknown)"
        state.lose(last_row + 1, last_row + 1, reason)
        state.stop_chain(last_row + 1, f"seq {last_row + 1}: {reason}")


def _take(out: sqlite3.Connection, side: IO[str], state: _State, row: _Row,
          history: list[tuple[Any, ...]], history_unreadable: bool) -> None:
    """One readable row: into DEST's chain if it continues it, else into the side file."""
    seq, wire = row.seq, row.wire
    links = None if wire is None or state.prev_stored_hash is None else wire["prev_hash"] == state.prev_stored_hash
    stored = row.values["hash"]  # even a malformed row's hash column says what the next one links to
    state.prev_stored_hash = stored if isinstance(stored, str) else None
    if wire is None:
        problems = [str(row.problem)]
    else:
        # Its own content (hash, terminal), then its link to the record before it.
        problems = verify_links([wire], seq - 1, str(wire["prev_hash"]), state.terminal_id)
        if links is False or (state.chain_open and wire["prev_hash"] != state.expected_prev):
            problems.append(f"seq {seq}: prev_hash does not match the hash of seq {seq - 1}")
    if state.chain_open and not problems and wire is not None:
        try:
            out.execute("SAVEPOINT record")
            _insert(out, state, row, wire, history, history_unreadable)
            out.execute("RELEASE record")
        except sqlite3.IntegrityError as exc:
            out.execute("ROLLBACK TO record")
            out.execute("RELEASE record")
            problems = [f"seq {seq}: cannot be copied ({exc})"]
        else:
            state.expected_prev = str(wire["hash"])
            state.copied += 1
            state.first_seq = seq if state.first_seq is None else state.first_seq
            state.last_seq = seq
            return
    state.stop_chain(seq, problems[0] if problems else f"seq {seq}: follows the break")
    state.after_break += 1
    state.after_break_seqs = (state.after_break_seqs[0] if state.after_break_seqs else seq, seq)
    state.after_break_held += 1 if state.acked is not None and seq <= state.acked else 0
    line = _side_line(row, state.extras, history, problems, links)
    side.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")


def _json_text(value: Any) -> tuple[str | None, bool]:
    """Stored JSON text kept as is if it parses; (None, False) when it does not."""
    if value is None:
        return None, True
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return None, False
        return value, True
    return None, False


def _insert(out: sqlite3.Connection, state: _State, row: _Row, wire: dict[str, Any],
            history: list[tuple[Any, ...]], history_unreadable: bool) -> None:
    values, seq = row.values, row.seq
    payload: dict[str, Any] = wire["payload"]
    status = values["status"]
    if status not in STATUSES:
        state.damaged.append(f"seq {seq}: status unreadable; copied as pending (the uploader asks central again)")
        status = "pending"
    outcome, ok = _json_text(values["outcome"])
    if not ok:
        state.damaged.append(f"seq {seq}: central's outcome unreadable; copied without it")
    resolution, ok = _json_text(values["resolution"])
    if not ok:
        state.damaged.append(f"seq {seq}: resolution unreadable; copied without it")
    key = values["idempotency_key"]
    if not isinstance(key, str) or not key:
        key = payload.get("idempotency_key")
        key = key if isinstance(key, str) and key else f"salvaged:{wire['record_id']}"
        state.damaged.append(f"seq {seq}: idempotency key unreadable; copied as {key!r}")
    request_digest = values["request_digest"]
    if not isinstance(request_digest, str) or not request_digest:
        request_digest = "unreadable"
        state.damaged.append(f"seq {seq}: request digest unreadable (a retry with its key will conflict)")
    updated_at = values["updated_at"] if isinstance(values["updated_at"], str) else wire["spooled_at"]
    updated_epoch = values["updated_epoch"]
    if not isinstance(updated_epoch, int | float) or isinstance(updated_epoch, bool):
        try:
            updated_epoch = datetime.fromisoformat(updated_at).timestamp()
        except ValueError:
            updated_epoch = 0.0
    amount = payload.get("total_fen", 0)
    total_fen = amount if isinstance(amount, int) and not isinstance(amount, bool) else 0
    try:
        business_date = business_date_of(wire["business_time"])
    except InvalidRequest:
        business_date = wire["business_time"][:10]
    if values["total_fen"] != total_fen or values["business_date"] != business_date:
        state.notes.append(f"seq {seq}: stored total_fen/business_date did not match the record; "
                           "DEST has the record's own")
    core = (
        seq, wire["record_id"], wire["terminal_id"], wire["kind"], wire["business_time"], wire["spooled_at"],
        int(wire["offline"]), wire["offline_reason"], values["payload"], wire["prev_hash"], wire["hash"],
        status, outcome, resolution, key, request_digest, updated_at, float(updated_epoch), total_fen,
        business_date,
    )  # fmt: skip
    columns = _CORE + state.extras
    sql = f"INSERT INTO records ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    try:
        out.execute("SAVEPOINT local")
        out.execute(sql, core + tuple(values[name] for name in state.extras))
        out.execute("RELEASE local")
    except sqlite3.IntegrityError:  # a later step's column breaks its CHECK: keep the record without them
        out.execute("ROLLBACK TO local")
        out.execute("RELEASE local")
        out.execute(sql, core + (None,) * len(state.extras))
        state.damaged.append(f"seq {seq}: {', '.join(state.extras)} unreadable; copied without them")
    if history_unreadable:
        state.damaged.append(f"seq {seq}: history unreadable; copied without it")
    for entry in history:
        try:
            out.execute("INSERT INTO history (id, seq, at, status, detail) VALUES (?, ?, ?, ?, ?)", entry)
        except sqlite3.IntegrityError:
            state.damaged.append(f"seq {seq}: history entry {entry[0]} malformed; not copied")


def _readable_in_dest(out: sqlite3.Connection, state: _State) -> None:
    """Every record of DEST must read as a Record (what Spool and check do); a later step's column
    that does not (a refund that is not JSON, say) is cleared, and said so."""
    bad: list[int] = []
    for row in out.execute(f"SELECT {RECORD_COLUMNS} FROM records ORDER BY seq"):
        try:
            Record.from_row(row)
        except SpoolCorrupt:
            bad.append(int(row[1]))
    if not bad or not state.extras:
        state.damaged.extend(f"seq {seq}: does not read back from DEST" for seq in bad)
        return
    out.execute("BEGIN IMMEDIATE")
    for seq in bad:
        out.execute(f"UPDATE records SET {', '.join(f'{name} = NULL' for name in state.extras)} WHERE seq = ?",
                    (seq,))
        state.damaged.append(f"seq {seq}: {', '.join(state.extras)} unreadable; copied without them")
    out.execute("COMMIT")


def _plain(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _side_line(row: _Row, extras: tuple[str, ...], history: list[tuple[Any, ...]], problems: list[str],
               links: bool | None) -> dict[str, Any]:
    """One record after the break: the export's jsonl shape, the later steps' local columns as
    stored, its history and the salvage's verdict."""
    verdict = {"problems": problems, "links_to_previous": links}
    entries = [{"at": _plain(h[2]), "status": _plain(h[3]), "detail": _plain(h[4])} for h in history]
    if row.wire is None:
        raw = {name: _plain(value) for name, value in row.values.items()}
        return {"seq": row.seq, "malformed": raw, "history": entries, "salvage": verdict}
    local: dict[str, Any] = {}
    for name in ("outcome", "resolution"):
        text, ok = _json_text(row.values[name])
        local[name] = json.loads(text) if ok and text is not None else _plain(row.values[name])
    return row.wire | local | {name: _plain(row.values[name]) for name in extras} | {
        "status": _plain(row.values["status"]),
        "idempotency_key": _plain(row.values["idempotency_key"]),
        "updated_at": _plain(row.values["updated_at"]),
        "history": entries,
        "salvage": verdict,
    }


def _copy_side_tables(conn: sqlite3.Connection, out: sqlite3.Connection) -> tuple[tuple[str, ...], str | None]:
    """The other parts' tables, all or none (a half-copied namespace would break their migrations)."""
    try:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
        ).fetchall()
        migrations = conn.execute(
            "SELECT namespace, step, applied_at FROM schema_migrations WHERE namespace != ?", (NAMESPACE,)
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        return (), f"not copied: SRC's schema is unreadable ({exc}); the daemon creates them empty"

    def theirs(name: str, table: str) -> bool:
        return table not in _SPOOL_TABLES and not name.startswith("sqlite_")

    tables = [(name, sql) for kind, name, table, sql in objects if kind == "table" and theirs(name, table)]
    others = [sql for kind, name, table, sql in objects if kind != "table" and theirs(name, table)]
    if not tables:
        return (), None
    out.execute("BEGIN IMMEDIATE")
    try:
        for name, sql in tables:
            out.execute(sql)
            cursor = conn.execute(f'SELECT * FROM "{name}"')
            marks = ", ".join("?" * len(cursor.description))
            while rows := cursor.fetchmany(1000):
                out.executemany(f'INSERT INTO "{name}" VALUES ({marks})', rows)
        for sql in others:
            out.execute(sql)
        out.executemany("INSERT INTO schema_migrations (namespace, step, applied_at) VALUES (?, ?, ?)",
                        migrations)
        out.execute("COMMIT")
    except sqlite3.Error as exc:
        out.execute("ROLLBACK")
        return (), f"not copied: {exc}; the daemon creates them empty"
    return tuple(name for name, _ in tables), None


def _link_into_place(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` without ever replacing an existing file."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (a FAT stick): check, then rename
        if os.path.lexists(final):
            raise FileExistsError(f"{final} appeared during the salvage") from None
        os.rename(tmp, final)
        return
    tmp.unlink()


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

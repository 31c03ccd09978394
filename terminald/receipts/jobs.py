"""Durable print jobs, kept in the spool's SQLite file (table `print_jobs`).

The table is the record (as in Postfix's queue): state, attempts and the next
attempt time live in the row; the worker threads hold nothing that a restart
would lose. Per printer, jobs print strictly in submission order.

    queued ──► printing ──► done
      │ ▲          ├──────► unknown   transfer broke: maybe printed; a person decides
      │ └─ waits ◄─┤                  (paper out, cover open, printer off: nothing sent)
      │            └──────► failed    the job can never print (printer not configured)
      └──► cancelled                  a person withdrew it before the worker took it

A job found in `printing` at start-up was cut off by a crash: it becomes
`unknown`, never printed again automatically. A person may retry an `unknown`
job: a new job, marked as a reprint (the first may have printed), and the old
one points at it (`retried_by`).

Taking a job (`queued` → `printing`) and cancelling it (`queued` →
`cancelled`) are both one conditional UPDATE in a write transaction: whichever
comes first wins, so a job cancelled before the worker took it never prints,
and a job the worker took can no longer be cancelled. While the printer says
it cannot print (paper out, cover open, off), the worker counts the attempt
without taking the job, so a job waiting for paper stays cancellable.

Each job is one document (`receipt` or `notice`) of one transaction. The
first job of a document for a transaction is the original; any later one of
the same document (all but `failed` and `cancelled` ones count) is a reprint.
`submit_document` renders the bytes first, then counts again and queues the
job in one write transaction (rendering again if the count changed), so two
requests at once get one original and one reprint. `submit_once` does the
same for a request carrying an Idempotency-Key: a repeat gets the first
request's job, never a second one.

Every write runs in one transaction on the spool's writer thread
(`Spool.write`) when the daemon has the spool open in this process: the
spool's writer is then the file's only writer, and a job's write shares its
group commit with the sales. Without an open spool (tools, tests of the
queue alone) the queue writes on its own connection. Reads use the queue's
connection either way.

A database error in a worker (disk full, database locked) does not stop it:
it is logged with the job id (never the content), the job's outcome is
recorded as soon as the database takes it again, and the worker backs off and
goes on.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from drivers.errors import PrinterError, PrinterUnavailable, PrintInterrupted
from drivers.printers import Printer
from drivers.printers.status import BLOCKING
from spool import Spool
from spool.errors import SpoolError
from spool.store import connect, migrate, schema_version
from terminald.errors import ConflictError, NotFoundError, PrinterNotConfigured, ValidationFailed

__all__ = ["DOCUMENT_KINDS", "JOB_STATES", "PrintQueue"]

log = logging.getLogger(__name__)

JOB_STATES = ("queued", "printing", "done", "failed", "unknown", "cancelled")
DOCUMENT_KINDS = ("receipt", "notice")
MIGRATIONS = [
    """
    CREATE TABLE print_jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL UNIQUE,
        tx_id TEXT NOT NULL,
        printer TEXT NOT NULL,
        copies INTEGER NOT NULL CHECK (copies BETWEEN 1 AND 3),
        reprint INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'printing', 'done', 'failed', 'unknown')),
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX print_jobs_queue ON print_jobs (printer, state, seq);
    CREATE INDEX print_jobs_tx ON print_jobs (tx_id);
    """,
    # Step 2: which document a job prints, so "reprint" counts per (transaction, document).
    # Jobs queued before it carry no kind: a notice is recognised by its title (GBK
    # "补录结算通知", or "Settlement notice" in English); everything else was a receipt.
    """
    ALTER TABLE print_jobs ADD COLUMN document TEXT NOT NULL DEFAULT 'receipt'
        CHECK (document IN ('receipt', 'notice'));
    UPDATE print_jobs SET document = 'notice'
        WHERE instr(data, X'B2B9C2BCBDE1CBE3CDA8D6AA') > 0 OR instr(data, CAST('Settlement notice' AS BLOB)) > 0;
    DROP INDEX print_jobs_tx;
    CREATE INDEX print_jobs_tx ON print_jobs (tx_id, document);
    """,
    # Step 3: the state `cancelled`, the receipt request's Idempotency-Key (unique), and the link
    # between an `unknown` job and the job that retried it. SQLite cannot widen a CHECK in place:
    # the table is rebuilt with the same rows (and seq, so the order) and its indexes made again.
    """
    CREATE TABLE print_jobs_v3 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL UNIQUE,
        tx_id TEXT NOT NULL,
        printer TEXT NOT NULL,
        copies INTEGER NOT NULL CHECK (copies BETWEEN 1 AND 3),
        reprint INTEGER NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('queued', 'printing', 'done', 'failed', 'unknown', 'cancelled')),
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        data BLOB NOT NULL,
        document TEXT NOT NULL DEFAULT 'receipt' CHECK (document IN ('receipt', 'notice')),
        idempotency_key TEXT UNIQUE,
        retry_of TEXT,
        retried_by TEXT
    );
    INSERT INTO print_jobs_v3 (seq, job_id, tx_id, printer, copies, reprint, state, error, attempts,
                               next_attempt_at, created_at, updated_at, data, document)
        SELECT seq, job_id, tx_id, printer, copies, reprint, state, error, attempts, next_attempt_at,
               created_at, updated_at, data, document FROM print_jobs;
    DROP TABLE print_jobs;
    ALTER TABLE print_jobs_v3 RENAME TO print_jobs;
    CREATE INDEX print_jobs_queue ON print_jobs (printer, state, seq);
    CREATE INDEX print_jobs_tx ON print_jobs (tx_id, document);
    """,
]
_PUBLIC = ("job_id, tx_id, document, printer, copies, reprint, state, error, attempts, created_at, updated_at,"
           " idempotency_key, retry_of, retried_by")
# Copies issued (printed, maybe printed, or about to print): a failed or cancelled job put nothing on paper.
_ISSUED = ("SELECT COUNT(*) AS n FROM print_jobs WHERE tx_id = ? AND document = ?"
           " AND state NOT IN ('failed', 'cancelled')")

EventSink = Callable[[str, dict[str, Any]], None]
T = TypeVar("T")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    job = dict(row)
    job["reprint"] = bool(job["reprint"])
    return job


def _why(exc: BaseException) -> str:
    """What a log line may say about an error: SQLite's and the spool's messages name no
    content; anything else only by its type."""
    if isinstance(exc, sqlite3.Error | SpoolError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


class PrintQueue:
    """Prints queued jobs, one worker thread per printer. `on_event` is
    called from those threads with ("printer.state", {...})."""

    def __init__(
        self,
        db_path: str | Path,
        printers: Mapping[str, Printer],
        on_event: EventSink | None = None,
        *,
        poll_s: float = 5.0,
        retry_min_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self.db_path = Path(db_path)
        self.printers = dict(printers)
        self.on_event = on_event
        self.poll_s, self.retry_min_s, self.retry_max_s = poll_s, retry_min_s, retry_max_s
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.Lock()
        # The spool this process has open on the file: its writer thread makes every write
        # (`_write`), so the queue never holds the file's write lock itself. None: the queue's
        # own connection writes (a queue used without the daemon).
        self._spool = Spool.opened(self.db_path)
        self._states: dict[str, str] = {}
        self._wake = {name: threading.Event() for name in self.printers}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- database --------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            conn = connect(self.db_path)
            migrate(conn, "print_jobs", MIGRATIONS)
            self._db = conn
        return self._db

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._db_lock:
            conn = self._conn()
            cur = conn.execute(sql, args)
            cols = [d[0] for d in cur.description or ()]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Every write: `fn(conn)` in one transaction, on the spool's writer thread (`Spool.write`,
        sharing its group commit) when the spool is open in this process, else on the queue's
        connection under its lock. `fn` must not call the queue."""
        if self._spool is not None:
            with self._db_lock:
                self._conn()  # the table exists (migrated on a connection of the queue's own, once)
            return self._spool.write(fn)
        with self._db_lock, self._transaction() as conn:
            return fn(conn)

    def _changed(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run one write; how many rows it changed."""
        return self._write(lambda conn: int(conn.execute(sql, args).rowcount))

    def _update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = _now()
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._changed(f"UPDATE print_jobs SET {sets} WHERE job_id = ?", (*fields.values(), job_id))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the queue's connection; the caller holds `_db_lock`."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _row(self, conn: sqlite3.Connection, job_id: str) -> dict[str, Any] | None:
        cur = conn.execute(f"SELECT {_PUBLIC} FROM print_jobs WHERE job_id = ?", (job_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

    # -- public ----------------------------------------------------------
    def start(self) -> None:
        """Open the table, settle jobs a crash left behind, start the workers."""
        self._changed(
            "UPDATE print_jobs SET state = 'unknown', error = ?, updated_at = ? WHERE state = 'printing'",
            ("interrupted by a restart while printing", _now()),
        )
        missing = [
            r["printer"]
            for r in self._execute("SELECT DISTINCT printer FROM print_jobs WHERE state = 'queued'")
        ]
        for name in missing:
            if name not in self.printers:
                self._changed(
                    "UPDATE print_jobs SET state = 'failed', error = ?, updated_at = ? "
                    "WHERE state = 'queued' AND printer = ?",
                    (f"printer {name!r} is no longer configured", _now(), name),
                )
        self._stop.clear()
        for name in self.printers:
            t = threading.Thread(target=self._worker, args=(name,), daemon=True, name=f"print-{name}")
            self._threads.append(t)
            t.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop between jobs; a job being sent finishes first (bounded by the
        transport's own timeouts)."""
        self._stop.set()
        for ev in self._wake.values():
            ev.set()
        for t in self._threads:
            t.join(timeout_s)
        self._threads.clear()
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _check(self, tx_id: str, document: str, printer: str, copies: int) -> None:
        if printer not in self.printers:
            raise PrinterNotConfigured(f"no printer named {printer!r} is configured")
        if not isinstance(copies, int) or isinstance(copies, bool) or not 1 <= copies <= 3:
            raise ValidationFailed("copies must be 1, 2 or 3")
        if not isinstance(tx_id, str) or not tx_id:
            raise ValidationFailed("a print job needs a transaction id")
        if document not in DOCUMENT_KINDS:
            raise ValidationFailed(f"document must be one of {DOCUMENT_KINDS}")

    @staticmethod
    def _insert(conn: sqlite3.Connection, tx_id: str, document: str, data: bytes, printer: str, copies: int,
                reprint: bool, key: str | None = None, retry_of: str | None = None) -> str:
        """Queue one job, inside a write (`_write`)."""
        if not isinstance(data, bytes | bytearray) or not data:
            raise ValidationFailed("a print job needs some bytes")
        job_id = f"pj-{uuid.uuid4().hex}"
        now = _now()
        conn.execute(
            "INSERT INTO print_jobs (job_id, tx_id, document, printer, copies, reprint, state, created_at,"
            " updated_at, data, idempotency_key, retry_of) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
            (job_id, tx_id, document, printer, copies, int(bool(reprint)), now, now, bytes(data), key, retry_of),
        )
        return job_id

    def submit(self, tx_id: str, data: bytes, printer: str, copies: int = 1, reprint: bool = False,
               document: str = "receipt") -> str:
        """Queue bytes already rendered; returns the job id. To print a document
        marked as a reprint exactly when it is one, use `submit_document`."""
        self._check(tx_id, document, printer, copies)
        job_id = self._write(lambda conn: self._insert(conn, tx_id, document, data, printer, copies, reprint))
        self._wake[printer].set()
        return job_id

    def submit_document(self, tx_id: str, document: str, render: Callable[[bool], bytes], printer: str,
                        copies: int = 1) -> tuple[str, bool]:
        """Queue `document` of the transaction: an original if none was issued yet, else a
        reprint. `render(reprint)` gives the bytes (see `_submit`: it may be called again).
        Returns (job id, reprint)."""
        self._check(tx_id, document, printer, copies)
        job_id, reprint, _ = self._submit(tx_id, document, render, printer, copies, None)
        self._wake[printer].set()
        return job_id, reprint

    def submit_once(self, key: str, tx_id: str, document: str, render: Callable[[bool], bytes], printer: str,
                    copies: int = 1) -> tuple[str, bool, bool]:
        """`submit_document` for a request carrying an Idempotency-Key: the first request with
        `key` queues the job; a repeat (same transaction, document, printer and copies) gets
        that job back and queues nothing; the key with anything else is a ConflictError
        `idempotency_conflict`. Returns (job id, reprint, created)."""
        self._check(tx_id, document, printer, copies)
        if not isinstance(key, str) or not key:
            raise ValidationFailed("an idempotency key is a non-empty string")
        job_id, reprint, created = self._submit(tx_id, document, render, printer, copies, key)
        if created:
            self._wake[printer].set()
        return job_id, reprint, created

    def _submit(self, tx_id: str, document: str, render: Callable[[bool], bytes], printer: str,
                copies: int, key: str | None) -> tuple[str, bool, bool]:
        """Queue the document as an original if no copy of it was issued, else as a reprint:
        (job id, reprint, created). The bytes are rendered before the write, outside any lock:
        a receipt rendered as an image takes tens of milliseconds, which the spool's writer (and
        every sale behind it) must not wait for. The write counts again; if a concurrent request
        changed the answer meanwhile (it queued the original, or withdrew it), this renders again.
        With `key`, a repeat gets the first request's job and queues nothing."""
        while True:
            if key is not None:
                with self._db_lock:
                    found = self._keyed(self._conn(), key, tx_id, document, printer, copies)
                if found is not None:
                    return found
            reprint = self.printed_count(tx_id, document) > 0
            data = render(reprint)

            def write(conn: sqlite3.Connection, reprint: bool = reprint, data: bytes = data
                      ) -> tuple[str, bool, bool] | None:
                if key is not None:
                    repeat = self._keyed(conn, key, tx_id, document, printer, copies)
                    if repeat is not None:
                        return repeat
                if (int(conn.execute(_ISSUED, (tx_id, document)).fetchone()[0]) > 0) != reprint:
                    return None  # rendered for the other answer: render again
                return self._insert(conn, tx_id, document, data, printer, copies, reprint, key), reprint, True

            done = self._write(write)
            if done is not None:
                return done

    @staticmethod
    def _keyed(conn: sqlite3.Connection, key: str, tx_id: str, document: str, printer: str,
               copies: int) -> tuple[str, bool, bool] | None:
        """The job a request with `key` queued already, or None; ConflictError if that request
        was for something else."""
        row = conn.execute(
            "SELECT job_id, tx_id, document, printer, copies, reprint FROM print_jobs WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        job_id, *request, reprint = row
        if tuple(request) != (tx_id, document, printer, copies):
            raise ConflictError(
                f"this Idempotency-Key was used for another print request, print job {job_id}",
                code="idempotency_conflict", existing_job_id=job_id)
        return str(job_id), bool(reprint), False

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self._execute(f"SELECT {_PUBLIC} FROM print_jobs WHERE job_id = ?", (job_id,))
        return _public(rows[0]) if rows else None

    def jobs(self, states: tuple[str, ...] = (), limit: int = 100) -> list[dict[str, Any]]:
        """The newest jobs first, in any of ``states`` (every state when empty)."""
        where = f"WHERE state IN ({', '.join('?' * len(states))})" if states else ""
        rows = self._execute(f"SELECT {_PUBLIC} FROM print_jobs {where} ORDER BY rowid DESC LIMIT ?",
                             (*states, limit))
        return [_public(row) for row in rows]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Withdraw a job the worker has not taken (`queued`, including one waiting for paper
        or power); returns the job, now `cancelled`. NotFoundError for an unknown id,
        ConflictError `invalid_transition` in any other state: it is being sent or is over."""

        def write(conn: sqlite3.Connection) -> tuple[int, dict[str, Any] | None]:
            changed = conn.execute(
                "UPDATE print_jobs SET state = 'cancelled', updated_at = ?, error = CASE WHEN error IS NULL"
                " THEN 'cancelled while queued' ELSE 'cancelled while waiting: ' || error END"
                " WHERE job_id = ? AND state = 'queued'",
                (_now(), job_id),
            ).rowcount
            return changed, self._row(conn, job_id)

        changed, job = self._write(write)
        if job is None:
            raise NotFoundError(f"no print job {job_id}")
        if not changed:
            raise ConflictError(f"print job {job_id} is {job['state']}: only a queued job can be cancelled",
                                code="invalid_transition", state=job["state"])
        wake = self._wake.get(job["printer"])
        if wake is not None:  # the worker may be waiting on this very job: let it move on
            wake.set()
        return _public(job)

    def retryable(self, job_id: str) -> dict[str, Any]:
        """The job, when a person may retry it (`unknown`, not retried yet); else NotFoundError
        or ConflictError `invalid_transition`."""
        job = self.get(job_id)
        _refuse_retry(job_id, job)
        assert job is not None
        return job

    def retry(self, job_id: str, render: Callable[[bool], bytes]) -> dict[str, Any]:
        """Print an `unknown` job again: a new job of the same document, transaction, printer
        and copies, marked as a reprint (the first may have printed), with the bytes of
        `render(True)` (rendered before the write, outside any lock). The old job stays `unknown`
        and points at the new one (`retried_by`); a job is retried once (then retry the retry,
        if need be). Returns the new job."""
        old = self.retryable(job_id)
        self._check(old["tx_id"], old["document"], old["printer"], old["copies"])
        data = render(True)

        def write(conn: sqlite3.Connection) -> dict[str, Any] | None:
            _refuse_retry(job_id, self._row(conn, job_id))  # still unknown and not retried meanwhile
            new_id = self._insert(conn, old["tx_id"], old["document"], data, old["printer"], old["copies"],
                                  True, retry_of=job_id)
            conn.execute("UPDATE print_jobs SET retried_by = ?, updated_at = ? WHERE job_id = ?",
                         (new_id, _now(), job_id))
            return self._row(conn, new_id)

        new = self._write(write)
        assert new is not None
        self._wake[new["printer"]].set()
        return _public(new)

    def printed_count(self, tx_id: str, document: str = "receipt") -> int:
        """Copies of `document` issued for the transaction: printed, maybe
        printed or about to print (everything but `failed` and `cancelled`). Non-zero means
        the next one of that document is a reprint; another document does not count."""
        return int(self._execute(_ISSUED, (tx_id, document))[0]["n"])

    def printer_states(self) -> dict[str, str]:
        return {name: self._states.get(name, "unknown") for name in self.printers}

    # -- workers ---------------------------------------------------------
    def _set_state(self, name: str, state: str) -> None:
        if self._states.get(name) == state:
            return
        self._states[name] = state
        if self.on_event is not None:
            try:
                self.on_event("printer.state", {"at": _now(), "printer": name, "state": state})
            except Exception:  # a broken listener must not stop printing
                log.exception("printer.state listener failed")

    def _next_job(self, name: str) -> dict[str, Any] | None:
        rows = self._execute(
            "SELECT job_id, copies, attempts, next_attempt_at, data FROM print_jobs "
            "WHERE printer = ? AND state = 'queued' ORDER BY seq LIMIT 1",
            (name,),
        )
        return dict(rows[0]) if rows else None

    def _backoff(self, attempts: int) -> float:
        # Exponential with jitter, so several counters do not retry in waves.
        delay = min(self.retry_max_s, self.retry_min_s * 2.0 ** max(int(attempts) - 1, 0))
        return delay * random.uniform(0.5, 1.0)

    def _worker(self, name: str) -> None:
        """Serve one printer until stopped. Nothing raised in here ends the thread: an error
        (a database that refuses a write, a bug) is logged and the loop backs off and goes on."""
        printer, wake = self.printers[name], self._wake[name]
        failures = 0  # consecutive errors, for the back-off
        self._set_state(name, printer.status())
        while not self._stop.is_set():
            job: dict[str, Any] | None = None
            try:
                job = self._next_job(name)
                if job is None:
                    wake.wait(self.poll_s)
                    wake.clear()
                    if not self._stop.is_set():
                        self._set_state(name, printer.status())
                else:
                    self._serve(name, printer, job)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = self._backoff(failures)
                where = f"job {job['job_id']}" if job is not None else "reading its jobs"
                log.error("print queue %s: %s failed (%s); trying again in %.1f s", name, where, _why(exc), delay,
                          exc_info=not isinstance(exc, sqlite3.Error | SpoolError))
                self._stop.wait(delay)

    def _serve(self, name: str, printer: Printer, job: dict[str, Any]) -> None:
        """Print the printer's head job, or wait for it: its back-off, or the printer."""
        wake = self._wake[name]
        wait_s = job["next_attempt_at"] - time.time()
        if wait_s > 0:
            # Waiting for paper or power: retry as soon as the printer says it is ready
            # again, or when the backoff is over. A cancel of this job wakes us too.
            wake.wait(min(wait_s, self.poll_s))
            wake.clear()
        if wait_s > 0 or self._states.get(name) in BLOCKING:
            state = printer.status()
            self._set_state(name, state)
            if state in BLOCKING:
                if job["next_attempt_at"] <= time.time():
                    self._postpone(printer, job, state)
                return
        self._print(name, printer, job)

    def _postpone(self, printer: Printer, job: dict[str, Any], state: str) -> None:
        """An attempt the printer refused before anything was sent: counted, the job stays
        queued (so still cancellable) until the next try."""
        attempts = job["attempts"] + 1
        self._changed(
            "UPDATE print_jobs SET attempts = ?, error = ?, next_attempt_at = ?, updated_at = ?"
            " WHERE job_id = ? AND state = 'queued'",
            (attempts, f"printer {printer.name} is {state.replace('_', ' ')}", time.time() + self._backoff(attempts),
             _now(), job["job_id"]),
        )

    def _print(self, name: str, printer: Printer, job: dict[str, Any]) -> None:
        job_id, attempts = job["job_id"], job["attempts"] + 1
        try:
            taken = self._changed(
                "UPDATE print_jobs SET state = 'printing', attempts = ?, updated_at = ?"
                " WHERE job_id = ? AND state = 'queued'",
                (attempts, _now(), job_id),
            )
        except Exception as exc:
            self._note(job_id, f"not started, the database refused it ({_why(exc)}); retrying")
            raise
        if not taken:  # cancelled since it was read: never sent
            return
        outcome: dict[str, Any]
        try:
            printer.print_bytes(bytes(job["data"]) * job["copies"], job_id)
        except PrinterUnavailable as exc:
            outcome = {"state": "queued", "error": str(exc), "next_attempt_at": time.time() + self._backoff(attempts)}
        except PrintInterrupted as exc:
            log.warning("print job %s on %s interrupted: %s", job_id, name, exc)
            outcome = {"state": "unknown", "error": str(exc)}
        except PrinterError as exc:
            outcome = {"state": "failed", "error": f"{exc.code}: {exc}"}
        except Exception as exc:  # a transport bug: whether it printed is unknown
            log.exception("print job %s on %s", job_id, name)
            outcome = {"state": "unknown", "error": f"unexpected {type(exc).__name__}"}
        else:
            outcome = {"state": "done", "error": None}
        self._record(name, job_id, outcome)
        self._set_state(name, printer.status())

    def _record(self, name: str, job_id: str, outcome: dict[str, Any]) -> None:
        """Write what became of a job the worker took, however long the database refuses it: the
        job is `printing` until then, so it is neither printed again nor cancellable. Stopped
        first, it stays `printing` and the next start marks it `unknown` (maybe printed)."""
        failures = 0
        while True:
            try:
                self._update(job_id, **outcome)
            except Exception as exc:
                failures += 1
                delay = self._backoff(failures)
                log.error("print queue %s: cannot record job %s as %s (%s); trying again in %.1f s",
                          name, job_id, outcome["state"], _why(exc), delay,
                          exc_info=not isinstance(exc, sqlite3.Error | SpoolError))
                if self._stop.wait(delay):
                    log.error("print queue %s: stopped before job %s was recorded as %s: it will be "
                              "found unknown at the next start", name, job_id, outcome["state"])
                    return
                continue
            if failures:
                log.warning("print queue %s: job %s recorded as %s after %d failed attempt(s)",
                            name, job_id, outcome["state"], failures)
            return

    def _note(self, job_id: str, error: str) -> None:
        """Best effort: say on a queued job why it is late (the database may refuse this too)."""
        with suppress(Exception):
            self._changed("UPDATE print_jobs SET error = ?, updated_at = ? WHERE job_id = ? AND state = 'queued'",
                          (error, _now(), job_id))


def _refuse_retry(job_id: str, job: Mapping[str, Any] | None) -> None:
    if job is None:
        raise NotFoundError(f"no print job {job_id}")
    if job["state"] != "unknown":
        raise ConflictError(f"print job {job_id} is {job['state']}: only a job whose outcome is unknown is retried",
                            code="invalid_transition", state=job["state"])
    if job["retried_by"]:
        raise ConflictError(f"print job {job_id} was retried already, as {job['retried_by']}",
                            code="invalid_transition", state=job["state"], retried_by=job["retried_by"])


def prune_before(db_path: str | Path, before: datetime) -> tuple[int, int]:
    """Retention of print jobs (terminald/retention.py); returns (jobs deleted, jobs emptied).

    Written through the writer of the spool this process has open on the file (`Spool.write`),
    else on a connection of its own; the spool's `records` table says which transactions are
    still kept. A job a worker may still handle (queued, printing) is never
    touched. A finished job goes when its transaction was pruned from the spool, or when it
    failed and finished before ``before``. A done or unknown job of a transaction still kept
    that finished before ``before`` keeps its row, because the row is what marks the next
    print of that document as a reprint, but loses its bytes (the bulk of the row).
    """
    if before.tzinfo is None:
        raise ValueError("before must be timezone-aware")
    cutoff = before.astimezone(UTC).isoformat(timespec="milliseconds")
    finished = "state IN ('done', 'failed', 'unknown', 'cancelled')"
    old = "julianday(updated_at) < julianday(?)"

    def prune(conn: sqlite3.Connection) -> tuple[int, int]:
        deleted = conn.execute(
            f"DELETE FROM print_jobs WHERE {finished} AND (NOT EXISTS"
            " (SELECT 1 FROM records r WHERE r.record_id = print_jobs.tx_id)"
            # Failed and cancelled jobs printed nothing: they mark no reprint, so they go whole.
            f" OR (state IN ('failed', 'cancelled') AND {old}))",
            (cutoff,),
        ).rowcount
        emptied = conn.execute(
            f"UPDATE print_jobs SET data = x'' WHERE {finished} AND {old} AND length(data) > 0", (cutoff,)
        ).rowcount
        return int(deleted), int(emptied)

    spool = Spool.opened(db_path)
    conn = connect(db_path)
    try:
        # A migration takes the write lock even with nothing to do: only when there is something.
        if spool is None or schema_version(conn, "print_jobs") < len(MIGRATIONS):
            migrate(conn, "print_jobs", MIGRATIONS)
        if spool is not None:
            return spool.write(prune)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = prune(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result
    finally:
        conn.close()

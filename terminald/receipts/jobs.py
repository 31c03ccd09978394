"""Durable print jobs, kept in the spool's SQLite file (table `print_jobs`).

The table is the record (as in Postfix's queue): state, attempts and the next
attempt time live in the row; the worker threads hold nothing that a restart
would lose. Per printer, jobs print strictly in submission order.

    queued ──► printing ──► done
      ▲            ├──────► unknown   transfer broke: maybe printed; a person decides
      └── waits ◄──┤                  (paper out, cover open, printer off: nothing sent)
                   └──────► failed    the job can never print (printer not configured)

A job found in `printing` at start-up was cut off by a crash: it becomes
`unknown`, never printed again automatically.

Each job is one document (`receipt` or `notice`) of one transaction. The
first job of a document for a transaction is the original; any later one of
the same document (all but `failed` ones count) is a reprint. `submit_document`
decides that and queues the job under the queue's lock, the only writer of
the table, so two requests at once get one original and one reprint.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.errors import PrinterError, PrinterUnavailable, PrintInterrupted
from drivers.printers import Printer
from drivers.printers.status import BLOCKING
from spool.store import connect, migrate
from terminald.errors import PrinterNotConfigured, ValidationFailed

__all__ = ["DOCUMENT_KINDS", "JOB_STATES", "PrintQueue"]

log = logging.getLogger(__name__)

JOB_STATES = ("queued", "printing", "done", "failed", "unknown")
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
]
_PUBLIC = "job_id, tx_id, document, printer, copies, reprint, state, error, attempts, created_at, updated_at"
_ISSUED = "SELECT COUNT(*) AS n FROM print_jobs WHERE tx_id = ? AND document = ? AND state != 'failed'"

EventSink = Callable[[str, dict[str, Any]], None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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

    def _update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = _now()
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._execute(f"UPDATE print_jobs SET {sets} WHERE job_id = ?", (*fields.values(), job_id))

    # -- public ----------------------------------------------------------
    def start(self) -> None:
        """Open the table, settle jobs a crash left behind, start the workers."""
        self._execute(
            "UPDATE print_jobs SET state = 'unknown', error = ?, updated_at = ? WHERE state = 'printing'",
            ("interrupted by a restart while printing", _now()),
        )
        missing = [
            r["printer"]
            for r in self._execute("SELECT DISTINCT printer FROM print_jobs WHERE state = 'queued'")
        ]
        for name in missing:
            if name not in self.printers:
                self._execute(
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

    def _insert(self, tx_id: str, document: str, data: bytes, printer: str, copies: int, reprint: bool) -> str:
        """Queue one job; the caller holds `_db_lock`."""
        if not isinstance(data, bytes | bytearray) or not data:
            raise ValidationFailed("a print job needs some bytes")
        job_id = f"pj-{uuid.uuid4().hex}"
        now = _now()
        self._conn().execute(
            "INSERT INTO print_jobs (job_id, tx_id, document, printer, copies, reprint, state, created_at,"
            " updated_at, data) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            (job_id, tx_id, document, printer, copies, int(bool(reprint)), now, now, bytes(data)),
        )
        return job_id

    def submit(self, tx_id: str, data: bytes, printer: str, copies: int = 1, reprint: bool = False,
               document: str = "receipt") -> str:
        """Queue bytes already rendered; returns the job id. To print a document
        marked as a reprint exactly when it is one, use `submit_document`."""
        self._check(tx_id, document, printer, copies)
        with self._db_lock:
            job_id = self._insert(tx_id, document, data, printer, copies, reprint)
        self._wake[printer].set()
        return job_id

    def submit_document(self, tx_id: str, document: str, render: Callable[[bool], bytes], printer: str,
                        copies: int = 1) -> tuple[str, bool]:
        """Queue `document` of the transaction: an original if none was issued yet, else a
        reprint. `render(reprint)` gives the bytes; it runs under the queue's lock, between the
        count and the insert (so it must not call the queue). Returns (job id, reprint)."""
        self._check(tx_id, document, printer, copies)
        with self._db_lock:
            issued = self._conn().execute(_ISSUED, (tx_id, document)).fetchone()[0]
            reprint = int(issued) > 0
            job_id = self._insert(tx_id, document, render(reprint), printer, copies, reprint)
        self._wake[printer].set()
        return job_id, reprint

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self._execute(f"SELECT {_PUBLIC} FROM print_jobs WHERE job_id = ?", (job_id,))
        if not rows:
            return None
        job = dict(rows[0])
        job["reprint"] = bool(job["reprint"])
        return job

    def printed_count(self, tx_id: str, document: str = "receipt") -> int:
        """Copies of `document` issued for the transaction: printed, maybe
        printed or about to print (everything but `failed`). Non-zero means the
        next one of that document is a reprint; another document does not count."""
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
        printer, wake = self.printers[name], self._wake[name]
        self._set_state(name, printer.status())
        while not self._stop.is_set():
            try:
                job = self._next_job(name)
            except Exception:
                log.exception("print queue %s: cannot read jobs", name)
                job = None
            if job is None:
                wake.wait(self.poll_s)
                wake.clear()
                if not self._stop.is_set():
                    self._set_state(name, printer.status())
                continue
            wait_s = job["next_attempt_at"] - time.time()
            if wait_s > 0:
                # Waiting for paper or power: retry as soon as the printer
                # says it is ready again, or when the backoff is over.
                wake.wait(min(wait_s, self.poll_s))
                wake.clear()
                state = printer.status()
                self._set_state(name, state)
                if state in BLOCKING and job["next_attempt_at"] > time.time():
                    continue
            self._print(name, printer, job)

    def _print(self, name: str, printer: Printer, job: dict[str, Any]) -> None:
        job_id, attempts = job["job_id"], job["attempts"] + 1
        self._update(job_id, state="printing", attempts=attempts)
        try:
            printer.print_bytes(bytes(job["data"]) * job["copies"], job_id)
        except PrinterUnavailable as exc:
            self._update(
                job_id, state="queued", error=str(exc), next_attempt_at=time.time() + self._backoff(attempts)
            )
            self._set_state(name, printer.status())
            return
        except PrintInterrupted as exc:
            log.warning("print job %s on %s interrupted: %s", job_id, name, exc)
            self._update(job_id, state="unknown", error=str(exc))
        except PrinterError as exc:
            self._update(job_id, state="failed", error=f"{exc.code}: {exc}")
        except Exception as exc:  # a transport bug: whether it printed is unknown
            log.exception("print job %s on %s", job_id, name)
            self._update(job_id, state="unknown", error=f"unexpected {type(exc).__name__}")
        else:
            self._update(job_id, state="done", error=None)
        self._set_state(name, printer.status())


def prune_before(db_path: str | Path, before: datetime) -> tuple[int, int]:
    """Retention of print jobs (terminald/retention.py); returns (jobs deleted, jobs emptied).

    Runs on its own connection to the spool's file, whose `records` table says which
    transactions are still kept. A job a worker may still handle (queued, printing) is never
    touched. A finished job goes when its transaction was pruned from the spool, or when it
    failed and finished before ``before``. A done or unknown job of a transaction still kept
    that finished before ``before`` keeps its row, because the row is what marks the next
    receipt of that transaction as a reprint, but loses its bytes (the bulk of the row).
    """
    if before.tzinfo is None:
        raise ValueError("before must be timezone-aware")
    cutoff = before.astimezone(UTC).isoformat(timespec="milliseconds")
    finished = "state IN ('done', 'failed', 'unknown')"
    old = "julianday(updated_at) < julianday(?)"
    conn = connect(db_path)
    try:
        migrate(conn, "print_jobs", MIGRATIONS)
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = conn.execute(
                f"DELETE FROM print_jobs WHERE {finished} AND (NOT EXISTS"
                " (SELECT 1 FROM records r WHERE r.record_id = print_jobs.tx_id)"
                f" OR (state = 'failed' AND {old}))",
                (cutoff,),
            ).rowcount
            emptied = conn.execute(
                f"UPDATE print_jobs SET data = x'' WHERE {finished} AND {old} AND length(data) > 0", (cutoff,)
            ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(deleted), int(emptied)
    finally:
        conn.close()

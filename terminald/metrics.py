"""Prometheus metrics, one registry per daemon (never the global one). `GET /metrics`
(api/metrics.py) renders it.

Metrics observe; they never wrap. Two kinds of numbers:

- state, read at scrape time by `DaemonCollector` from what the daemon holds
  (`Observed`): the spool (pending count, amount and age, rejected, size,
  integrity), print jobs by state (the durable queue's table), the upstream
  link (state, outage seconds, alarms), the mirror (connected, lag in records and
  seconds, alarms: the copier's memory), readers and printers. The spool is
  the system of record, so these survive restarts and never drift.
- counters of what happened in this process, fed by `Metrics.observe_*`:
  events from the bus (uploads by outcome, outages), card reads by outcome,
  upload errors by kind, and the commit (fsync) latency histogram.

The daemon, the composition root, builds one `Metrics` and subscribes its
`observe_*` methods to its hooks (`add_commit_hook`, `add_upload_error_hook`,
`add_card_read_hook`, `add_event_hook`). This module imports nothing of the
daemon. Names follow Prometheus conventions and pass `promtool check
metrics`: `_total` counters, `_seconds` durations, base units (money in fen).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from spool.store import connect

if TYPE_CHECKING:
    from spool import Spool
    from terminald.config import Config

__all__ = ["COMMIT_BUCKETS", "DaemonCollector", "Metrics", "Observed"]

log = logging.getLogger("terminald.metrics")

# `*_created` series double every counter's output and no dashboard here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# A group commit with fsync takes about 1-20 ms on an SSD and far more on a worn SD card.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UPSTREAM_STATES = ("online", "offline", "planned_downtime")
PRINTER_STATES = ("ok", "paper_near_end", "paper_out", "cover_open", "offline", "unknown")
PRINT_JOB_STATES = ("queued", "printing", "done", "failed", "unknown", "cancelled")


def _age_seconds(iso: str | None, now: float) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.astimezone()
    return max(0.0, now - then.timestamp())


def _file_size(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += path.with_name(path.name + suffix).stat().st_size
    return total


class Observed(Protocol):
    """What the collector reads at scrape time (`terminald.daemon.Daemon` is one).

    The parts the daemon builds in `start()` are read when present: `uploader` (its
    `link`), `cards` (`readers()`, `state`), `printers` and `print_queue`
    (`printer_states()`).
    """

    @property
    def version(self) -> str: ...
    @property
    def instance_id(self) -> str: ...
    @property
    def cfg(self) -> Config: ...
    @property
    def spool(self) -> Spool | None: ...


class DaemonCollector(Collector):
    """Reads the daemon's current state at each scrape; never raises into the scrape."""

    def __init__(self, daemon: Observed, clock: Callable[[], float] = time.time) -> None:
        self._daemon = daemon
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        # No description up front: the registry must not call collect() (and the spool) at registration.
        return []

    def collect(self) -> Iterable[Metric]:
        d = self._daemon
        now = self._clock()
        info = InfoMetricFamily("terminald", "This daemon instance.")
        info.add_metric([], {"version": str(d.version), "terminal_id": d.cfg.terminal.id,
                             "instance_id": d.instance_id})
        yield info
        for part in (self._upstream, self._spool, self._mirror, self._devices, self._print_jobs):
            try:
                yield from part(d, now)
            except Exception:  # a failing part must not hide the others (or the scrape)
                log.exception("metrics: could not read %s", part.__name__.strip("_"))

    @staticmethod
    def _upstream(d: Observed, now: float) -> Iterable[Metric]:
        uploader = getattr(d, "uploader", None)
        if uploader is None:
            return
        link = uploader.link
        state = GaugeMetricFamily("terminald_upstream_state", "1 for the link's current state.",
                                  labels=["state"])
        for name in UPSTREAM_STATES:
            state.add_metric([name], 1.0 if link.state == name else 0.0)
        yield state
        outage = GaugeMetricFamily("terminald_upstream_outage_seconds",
                                   "Seconds since the current outage began (0 while online).")
        current = _age_seconds(link.outage_since, now) or 0.0
        outage.add_metric([], 0.0 if link.state == "online" else current)
        yield outage
        last_ok = _age_seconds(link.last_ok_at, now)
        if last_ok is not None:
            since_ok = GaugeMetricFamily("terminald_upstream_last_ok_age_seconds",
                                         "Seconds since central last answered as the protocol says.")
            since_ok.add_metric([], last_ok)
            yield since_ok
        alarms = GaugeMetricFamily("terminald_upstream_alarms", "Alarms raised and not cleared.")
        alarms.add_metric([], float(len(link.alarms)))
        yield alarms
        halted = GaugeMetricFamily("terminald_upload_halted",
                                   "1 when uploading stopped for good (central's books disagree).")
        halted.add_metric([], 1.0 if link.halted else 0.0)
        yield halted

    @staticmethod
    def _spool(d: Observed, now: float) -> Iterable[Metric]:
        spool = d.spool
        if spool is None:
            return
        stats = spool.stats()
        for name, doc, value in (
            ("terminald_spool_pending_records", "Records not yet settled or rejected by central.",
             stats.pending),
            ("terminald_spool_pending_amount_fen", "Sum of pending totals, in fen.",
             stats.pending_amount_fen),
            ("terminald_spool_rejected_unresolved_records", "Rejected records waiting for staff.",
             stats.rejected_unresolved),
            ("terminald_spool_settled_records", "Settled records kept in the spool.", stats.settled_total),
            ("terminald_spool_last_seq", "Highest sequence number committed.", stats.last_seq),
            ("terminald_spool_size_bytes", "Spool database size including its WAL.",
             _file_size(d.cfg.spool_path)),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], float(value))
            yield gauge
        oldest = GaugeMetricFamily("terminald_spool_oldest_pending_age_seconds",
                                   "Age of the oldest pending record (0 when none).")
        oldest.add_metric([], _age_seconds(stats.oldest_pending_at, now) or 0.0)
        yield oldest
        # "workdays", not "_working_days": promtool reads a `days` word as time and asks for
        # seconds, and a working day is no fixed number of seconds (weekends, holidays).
        deadline = GaugeMetricFamily("terminald_spool_reentry_deadline_workdays",
                                     "Configured re-entry (补录) deadline, in working days.")
        deadline.add_metric([], float(d.cfg.offline.deadline_working_days))
        yield deadline
        integrity = GaugeMetricFamily("terminald_spool_integrity", "1 for the spool's integrity state.",
                                      labels=["state"])
        for name in ("checking", "ok", "corrupt"):
            integrity.add_metric([name], 1.0 if spool.integrity == name else 0.0)
        yield integrity

    @staticmethod
    def _mirror(d: Observed, now: float) -> Iterable[Metric]:
        mirror = getattr(d, "mirror", None)
        if mirror is None:  # mirror.dsn empty: no mirror series at all
            return
        status = mirror.status()  # memory only: no query, no wait for PostgreSQL
        connected = GaugeMetricFamily("terminald_mirror_connected",
                                      "1 while the mirror holds a connection to a read-write PostgreSQL.")
        connected.add_metric([], 1.0 if status.connected else 0.0)
        yield connected
        records = GaugeMetricFamily("terminald_mirror_lag_records",
                                    "Records in the spool not yet in the mirror (NaN before the first contact).")
        records.add_metric([], float("nan") if status.unmirrored is None else float(status.unmirrored))
        yield records
        seconds = GaugeMetricFamily("terminald_mirror_lag_seconds",
                                    "Age of the oldest record not yet mirrored (0 when none waits).")
        seconds.add_metric([], float("nan") if status.lag_s is None else status.lag_s)
        yield seconds
        alarms = GaugeMetricFamily("terminald_mirror_alarms",
                                   "Mirror alarms raised and not cleared (mirror_lag, mirror_fork, ...).")
        alarms.add_metric([], float(len(mirror.alarms(status))))
        yield alarms

    @staticmethod
    def _devices(d: Observed, now: float) -> Iterable[Metric]:
        cards = getattr(d, "cards", None)
        if cards is not None:
            readers = list(cards.readers())
            count = GaugeMetricFamily("terminald_card_readers", "Card readers seen by pcscd.")
            count.add_metric([], float(len(readers)))
            yield count
            present = GaugeMetricFamily("terminald_card_present", "1 when a card is in the reader.",
                                        labels=["reader"])
            for reader in readers:
                present.add_metric([reader.name], 1.0 if reader.card_present else 0.0)
            yield present
            service = GaugeMetricFamily("terminald_card_service_state",
                                        "1 for the card service's state (ok, no_reader, ...).",
                                        labels=["state"])
            service.add_metric([str(cards.state)], 1.0)
            yield service
        queue = getattr(d, "print_queue", None)
        printers = getattr(d, "printers", None)
        if queue is not None and printers is not None:
            states = queue.printer_states()
            gauge = GaugeMetricFamily("terminald_printer_state", "1 for each printer's current state.",
                                      labels=["printer", "state"])
            for name in printers:
                current = states.get(name, "unknown")
                for state in PRINTER_STATES:
                    gauge.add_metric([name, state], 1.0 if current == state else 0.0)
            yield gauge

    @staticmethod
    def _print_jobs(d: Observed, now: float) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("terminald_print_jobs", "Print jobs kept in the spool database, by state.",
                                 labels=["state"])
        counts = _print_job_counts(d.cfg.spool_path)
        for state in PRINT_JOB_STATES:
            jobs.add_metric([state], float(counts.get(state, 0)))
        yield jobs


def _print_job_counts(path: Path) -> dict[str, int]:
    """Jobs by state from the durable print queue (its table lives in the spool's file)."""
    conn = connect(path, readonly=True)
    try:
        rows = conn.execute("SELECT state, COUNT(*) FROM print_jobs GROUP BY state").fetchall()
    except sqlite3.OperationalError:  # no print queue table yet
        return {}
    finally:
        conn.close()
    return {str(state): int(n) for state, n in rows}


class Metrics:
    """One daemon's registry: the scrape-time collector plus counters fed as things happen."""

    def __init__(self, daemon: Observed) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DaemonCollector(daemon))
        r = self.registry
        self.uploads = Counter("terminald_upload_records", "Records central decided, by outcome.",
                               ["outcome"], registry=r)
        self.upload_errors = Counter("terminald_upload_errors", "Failed calls to central, by kind.",
                                     ["kind"], registry=r)
        self.outages = Counter("terminald_upstream_outages", "Transitions out of online, by cause.",
                               ["planned"], registry=r)
        self.card_reads = Counter("terminald_card_reads", "Card reads by outcome (ok or the error code).",
                                  ["outcome"], registry=r)
        self.events = Counter("terminald_events", "Events published on the bus, by name.",
                              ["name"], registry=r)
        self.commit_seconds = Histogram("terminald_spool_commit_seconds",
                                        "Duration of each durable spool commit (write + fsync).",
                                        buckets=COMMIT_BUCKETS, registry=r)
        for outcome in ("settled", "rejected"):
            self.uploads.labels(outcome)
        for planned in ("false", "true"):
            self.outages.labels(planned)
        self.card_reads.labels("ok")

    # -- feeds ----------------------------------------------------------------------------------
    def observe_commit(self, seconds: float) -> None:
        """One durable spool commit; called from the spool writer thread."""
        if seconds >= 0:
            self.commit_seconds.observe(seconds)

    def observe_card_read(self, outcome: str) -> None:
        """`ok`, or the driver error's code (`no_card`, `card_unreadable`, `no_reader`...)."""
        self.card_reads.labels(outcome or "error").inc()

    def observe_upload_error(self, kind: str) -> None:
        """One failed call to central: `unreachable`, `timeout`, `http_503`, `bad_answer`..."""
        self.upload_errors.labels(kind or "unknown").inc()

    def observe_event(self, name: str, data: dict[str, Any]) -> None:
        """One event published on the bus; called from whichever thread published it."""
        self.events.labels(name).inc()
        if name in ("transaction.settled", "transaction.rejected"):
            self.uploads.labels(name.rpartition(".")[2]).inc()
        elif name == "upstream.offline":
            self.outages.labels("true" if data.get("planned") else "false").inc()

    def render(self) -> bytes:
        """The exposition text (`CONTENT_TYPE_LATEST`); reads the spool: call it off the loop."""
        return generate_latest(self.registry)

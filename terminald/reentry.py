"""Re-entry that needs the patient (`[nhsa] reentry = "patient_present"`).

Some regions want the patient's card PIN or e-voucher password for every 2102, so an outage
sale (the POS was told "pending", the patient paid in full) cannot be re-entered by the
uploader alone: it waits until its patient is back at the counter. `ReentryBook` is that
waiting list, and the uploader's `eligible(record)` hook (terminald/upstream/adapters.py):

- a pending outage settlement waits (`awaiting_patient`) until it is released;
- any later pending record of the same person (`person_key`: a revoke of it, a sale taken
  since) waits behind it, so each person's records still reach central in seq order;
- releasing: `POST /v1/transactions/{id}/resettle` with a card read of that person
  (`Recorder.resettle`), or a new sale of that person (the patient is here: their outage sales
  go first, in order). A release covers the person's waiting records up to the one asked for.

Releases are kept in memory only. After a restart a released record that central has not
decided yet waits for its patient again: the patient who was at the counter then has most
likely left, and sending their 2102 without them is what this setting forbids. The one
exception is a record whose 2102/2103 stands in the call log (`ok`: central took it, the daemon
stopped before writing the outcome): finishing it needs no patient, so it is released at start.

With another protocol, or `reentry = "auto"`, nothing waits: `eligible` is always True.

Thread-safe: the uploader may ask from its loop or a thread; nothing here touches SQLite
except `load` (run in a thread at start) and the readers the API calls in threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from spool import Record, Spool, SpoolError, connect
from terminald.config import Config
from terminald.upstream.nhsa.person import person_key

__all__ = ["AwaitingSale", "ReentryBook", "card_person", "patient_present", "sale_item"]

log = logging.getLogger("terminald.reentry")

# Events after which a record is decided: it waits for nobody any more.
_FINAL_EVENTS = frozenset({"transaction.settled", "transaction.rejected", "transaction.resolved"})
# The calls whose `ok` in the call log means central holds the record's settlement or revoke.
_STANDING_INFNOS = ("2102", "2103")
_PAGE = 500


def patient_present(cfg: Config) -> bool:
    """Does re-entry wait for the patient? Only the national platform with that setting."""
    protocol: str = cfg.upstream.protocol  # a str: the name table may know more than today's Literal
    return protocol == "nhsa" and cfg.nhsa.reentry == "patient_present"


def card_person(card: Any) -> str:
    """`person_key` of a card read's card (drivers' CardData): the same key a sale of it gets."""
    return person_key({"card": {"ssn": getattr(card, "ssn", None) or "",
                                "card_number": getattr(card, "card_number", None) or ""}})


@dataclass(frozen=True)
class AwaitingSale:
    """An outage sale waiting for its patient: what the card-read answer lists. Every field is
    fixed once the sale is an outage sale, so the book can keep it without reading the spool."""

    record_id: str
    seq: int
    person: str
    business_time: str
    total_fen: int
    pos_order_id: Any

    @classmethod
    def of(cls, record: Record) -> AwaitingSale:
        meta = record.payload.get("meta")
        return cls(record.record_id, record.seq, person_key(record.payload), record.business_time,
                   record.total_fen, meta.get("pos_order_id") if isinstance(meta, Mapping) else None)


class ReentryBook:
    def __init__(self, cfg: Config) -> None:
        self.enabled = patient_present(cfg)
        self._lock = threading.Lock()
        self._waiting: dict[str, dict[str, AwaitingSale]] = {}  # person -> record id -> sale
        self._released: set[str] = set()  # released, not decided yet (memory only: see above)

    # -- start ------------------------------------------------------------------------------------
    def load(self, spool: Spool) -> int:
        """Read the waiting outage sales from the spool's backlog (blocking: run it in a thread,
        before the uploader starts, so that its first `eligible` already knows every one).
        Returns how many wait."""
        if not self.enabled:
            return 0
        after = 0
        while True:
            page = spool.backlog(after, _PAGE)
            for record in page:
                self.observe(record)
            if len(page) < _PAGE:
                break
            after = page[-1].seq
        standing = _standing_records(spool)
        with self._lock:
            for entries in self._waiting.values():
                for record_id in standing & entries.keys():
                    del entries[record_id]
                    self._released.add(record_id)
            count = sum(len(entries) for entries in self._waiting.values())
        if standing:
            log.info("re-entry: %d record(s) with a settlement standing at central go on without the patient",
                     len(standing))
        log.info("re-entry waits for the patient: %d outage sale(s) awaiting", count)
        return count

    # -- what the uploader and the API ask ---------------------------------------------------------
    def eligible(self, record: Record) -> bool:
        """May the uploader send this pending record now? (the `UpstreamHost.eligible` hook)"""
        if not self.enabled:
            return True
        with self._lock:
            if record.status != "pending":
                self._forget(record.record_id)
                return True
            self._note(record)
            return not self._awaits(record)

    def awaiting(self, record: Record) -> bool:
        """Does this record wait for its patient (the Transaction's `awaiting_patient`)?"""
        if not self.enabled or record.status != "pending":
            return False
        with self._lock:
            self._note(record)
            return self._awaits(record)

    def released(self, record_id: str) -> bool:
        with self._lock:
            return record_id in self._released

    def observe(self, record: Record) -> None:
        """A record as stored now (committed, answered "pending", or decided)."""
        if not self.enabled:
            return
        with self._lock:
            if record.status != "pending":
                self._forget(record.record_id)
            else:
                self._note(record)

    def observe_event(self, name: str, data: dict[str, Any]) -> None:
        """Event hook: a decided record waits for nobody (the uploader announces every outcome)."""
        if self.enabled and name in _FINAL_EVENTS and isinstance(data.get("id"), str):
            with self._lock:
                self._forget(data["id"])

    def release(self, person: str, through: Record | None = None) -> list[AwaitingSale]:
        """The patient is here: release their waiting outage sales (up to `through`'s seq, and
        `through` itself, when given), oldest first. Returns those released."""
        if not self.enabled or not person:
            return []
        with self._lock:
            entries = self._waiting.get(person, {})
            freed = sorted((s for s in entries.values() if through is None or s.seq <= through.seq),
                           key=lambda s: s.seq)
            for sale in freed:
                del entries[sale.record_id]
                self._released.add(sale.record_id)
            if not entries:
                self._waiting.pop(person, None)
            if through is not None:
                self._released.add(through.record_id)
        if freed:
            log.info("re-entry: %d outage sale(s) of a person released (seq %s)", len(freed),
                     ", ".join(str(s.seq) for s in freed))
        return freed

    def waiting_of(self, person: str) -> list[AwaitingSale]:
        """This person's outage sales waiting for them, oldest first (may include one decided a
        moment ago: callers that answer with them read the records again)."""
        with self._lock:
            return sorted(self._waiting.get(person, {}).values(), key=lambda s: s.seq)

    def waiting_ids(self) -> list[str]:
        """Every outage sale waiting for its patient, in seq order (same caveat)."""
        with self._lock:
            found = [s for entries in self._waiting.values() for s in entries.values()]
        return [s.record_id for s in sorted(found, key=lambda s: s.seq)]

    # -- readers for the API (blocking: call them in a thread) ------------------------------------
    def records_waiting(self, spool: Spool, ids: Iterable[str] | None = None) -> list[Record]:
        """The records of `ids` (default: every waiting outage sale) that wait now, as stored,
        in seq order: what the book holds, checked against the spool (one decided a moment ago
        is left out)."""
        wanted = self.waiting_ids() if ids is None else list(ids)
        if ids is None and len(wanted) > _PAGE // 10:
            records = self._backlog_from(spool, wanted)  # many: read them page by page, not one by one
        else:
            records = [r for r in map(spool.get, wanted) if r is not None]
        found = []
        for record in records:
            if self.awaiting(record):
                found.append(record)
            else:
                self.observe(record)
        return sorted(found, key=lambda r: r.seq)

    def _backlog_from(self, spool: Spool, ids: list[str]) -> list[Record]:
        """The pending records among `ids` (in seq order), read from the backlog a page at a time."""
        first = min(s.seq for s in map(self._sale, ids) if s is not None) if ids else 0
        wanted = set(ids)
        found: list[Record] = []
        after = max(first - 1, 0)
        while True:
            page = spool.backlog(after, _PAGE)
            found += [r for r in page if r.record_id in wanted]
            if len(page) < _PAGE:
                return found
            after = page[-1].seq

    def _sale(self, record_id: str) -> AwaitingSale | None:
        with self._lock:
            for entries in self._waiting.values():
                if record_id in entries:
                    return entries[record_id]
        return None

    def sales_for_card(self, spool: Spool, card: Any) -> list[dict[str, Any]]:
        """The card-read answer's `awaiting_patient`: this card's holder's outage sales that can
        be re-settled now, oldest first ([] unless re-entry waits for the patient)."""
        if not self.enabled:
            return []
        person = card_person(card)
        if not person:
            return []
        records = self.records_waiting(spool, [s.record_id for s in self.waiting_of(person)])
        return [sale_item(r) for r in records]

    # -- under the lock ---------------------------------------------------------------------------
    def _note(self, record: Record) -> None:
        if _outage_sale(record) and record.record_id not in self._released:
            sale = AwaitingSale.of(record)
            self._waiting.setdefault(sale.person, {}).setdefault(record.record_id, sale)

    def _awaits(self, record: Record) -> bool:
        """Waiting itself, or behind a waiting record of the same person (a revoke of it, a later
        sale): the person's seq order holds."""
        entries = self._waiting.get(person_key(record.payload))
        if not entries:
            return False
        return record.record_id in entries or any(s.seq < record.seq for s in entries.values())

    def _forget(self, record_id: str) -> None:
        self._released.discard(record_id)
        for person, entries in list(self._waiting.items()):
            if entries.pop(record_id, None) is not None and not entries:
                del self._waiting[person]


def sale_item(record: Record) -> dict[str, Any]:
    """One outage sale waiting for its patient, as the card-read answer and its event list it."""
    meta = record.payload.get("meta")
    return {"id": record.record_id, "seq": record.seq, "business_time": record.business_time,
            "total_fen": record.total_fen,
            "paid_at_counter_fen": record.total_fen,  # an outage sale: the patient paid it all
            "pos_order_id": meta.get("pos_order_id") if isinstance(meta, Mapping) else None,
            "revoked_by": record.revoked_by}


def _outage_sale(record: Record) -> bool:
    return record.kind == "settlement" and record.status == "pending" and record.outage is True


def _standing_records(spool: Spool) -> set[str]:
    """Records whose 2102/2103 answered `ok` in the nhsa call log (none when there is no log yet).

    Read here rather than through CallLog, which would migrate the file: this only looks."""
    from terminald.upstream.nhsa.calllog import TABLE

    try:
        conn = connect(spool.path)
    except (SpoolError, OSError) as exc:
        log.warning("re-entry: the call log cannot be read (%s): every outage sale waits", exc)
        return set()
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone() is None:
            return set()
        marks = ", ".join("?" * len(_STANDING_INFNOS))
        rows: Iterable[tuple[Any, ...]] = conn.execute(
            f"SELECT DISTINCT record_id FROM {TABLE} WHERE state = 'ok' AND record_id IS NOT NULL"
            f" AND infno IN ({marks})", _STANDING_INFNOS).fetchall()
        return {str(row[0]) for row in rows}
    except Exception as exc:  # a read that fails must not stop the start: the sales simply wait
        log.warning("re-entry: the call log cannot be read (%s): every outage sale waits", exc)
        return set()
    finally:
        conn.close()

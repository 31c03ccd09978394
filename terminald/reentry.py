"""Re-entry that needs the patient (`[nhsa] reentry = "patient_present"`).

Some regions want the patient's card PIN or e-voucher password for every 2102, so an outage
sale (the POS was told "pending", the patient paid in full) cannot be re-entered by the
uploader alone: it waits until its patient is back at the counter. `ReentryBook` is that
waiting list, and the uploader's `eligible(record)` hook (terminald/upstream/adapters.py):

- a pending outage settlement waits (`awaiting_patient`) until it is released;
- any later pending record of the same person (`person_of`: a revoke of it, a sale taken
  since) waits behind it, so each person's records still reach central in seq order;
- releasing needs the patient at the counter: `POST /v1/transactions/{id}/resettle` with a
  card read of that person (`Recorder.resettle`), or a new sale made with a card read of that
  person (their outage sales go first, in order, and the new sale itself is released with
  them, so that it never ends up waiting for a patient who was there). A release covers the
  person's waiting records up to the one asked for.

A release lasts as long as the card read that proved the patient there (`CardReads`, 10
minutes from the read): a released record not yet sent when it lapses waits for its patient
again, since its 2102 would otherwise go out (the link down or backing off meanwhile) when the
patient has long left, which this setting forbids. One being sent when it lapses is finished.

Releases are kept in memory only. After a restart a released record that central has not
decided yet waits for its patient again, for the same reason. The one exception is a record
whose 2102/2103 stands at central (`standing_records`: central took it, the daemon stopped
before writing the outcome): finishing it needs no patient, so it is released at start, for good.

The book is protocol-neutral: who a record is about (`person_of`) and what stands at central
(`standing_records`) are given by the daemon, from the nhsa package. With another protocol, or
`reentry = "auto"`, nothing waits: `eligible` is always True.

Thread-safe: the uploader may ask from its loop or a thread; nothing here touches SQLite
except `load` (run in a thread at start) and the readers the API calls in threads.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from spool import Record, Spool, SpoolError
from terminald.config import Config

__all__ = ["AwaitingSale", "PersonOf", "ReentryBook", "patient_present", "sale_item"]

log = logging.getLogger("terminald.reentry")

# Who a record is about, from its payload ("" for nobody): the protocol's order key.
PersonOf = Callable[[Mapping[str, Any]], str]

# Events after which a record is decided: it waits for nobody any more.
_FINAL_EVENTS = frozenset({"transaction.settled", "transaction.rejected", "transaction.resolved"})
_PAGE = 500


def patient_present(cfg: Config) -> bool:
    """Does re-entry wait for the patient? Only the national platform with that setting."""
    protocol: str = cfg.upstream.protocol  # a str: the name table may know more than today's Literal
    return protocol == "nhsa" and cfg.nhsa.reentry == "patient_present"


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
    def of(cls, record: Record, person: str) -> AwaitingSale:
        meta = record.payload.get("meta")
        return cls(record.record_id, record.seq, person, record.business_time,
                   record.total_fen, meta.get("pos_order_id") if isinstance(meta, Mapping) else None)


@dataclass
class _Release:
    until: float | None  # the clock's time it lapses (the card read's end); None: never (stands)
    sale: AwaitingSale | None  # an outage sale: it waits for its patient again when it lapses
    read_id: str | None = None  # the card read that made it


def _nobody(payload: Mapping[str, Any]) -> str:
    return ""


def _none_standing() -> set[str]:
    return set()


class ReentryBook:
    def __init__(self, cfg: Config, *, person_of: PersonOf | None = None,
                 standing_records: Callable[[], set[str]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`person_of(payload)`: who a record is about (required when re-entry waits for the
        patient); `standing_records()`: the records whose settlement stands at central already
        (read once, by `load`); `clock`: the card reads' clock (`CardReads.clock`), which the
        releases' lifetimes are measured on."""
        self.enabled = patient_present(cfg)
        if self.enabled and person_of is None:
            raise ValueError("re-entry that waits for the patient needs person_of: who a record is about")
        self.person_of: PersonOf = person_of or _nobody
        self._standing_records = standing_records or _none_standing
        self.clock = clock
        self._lock = threading.Lock()
        self._waiting: dict[str, dict[str, AwaitingSale]] = {}  # person -> record id -> sale
        self._released: dict[str, _Release] = {}  # not decided yet (memory only: see above)
        self._next_lapse = math.inf  # the earliest `until` among the releases
        self._lapsed: dict[str, str] = {}  # record id -> the card read whose release of it lapsed
        # Every pending record seen (person -> record id -> seq), to count those held back.
        self._pending: dict[str, dict[str, int]] = {}
        self._person: dict[str, str] = {}  # record id -> person, for the two maps above

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
        standing = self._standing()
        with self._lock:
            for entries in self._waiting.values():
                for record_id in standing & entries.keys():
                    del entries[record_id]
                    self._released[record_id] = _Release(None, None)  # central holds it: for good
            self._waiting = {person: entries for person, entries in self._waiting.items() if entries}
            count = sum(len(entries) for entries in self._waiting.values())
        if standing:
            log.info("re-entry: %d record(s) with a settlement standing at central go on without the patient",
                     len(standing))
        log.info("re-entry waits for the patient: %d outage sale(s) awaiting", count)
        return count

    def _standing(self) -> set[str]:
        try:
            return set(self._standing_records())
        except (SpoolError, OSError) as exc:  # a read that fails must not stop the start: they simply wait
            log.warning("re-entry: what stands at central cannot be read (%s): every outage sale waits", exc)
            return set()

    # -- what the uploader and the API ask ---------------------------------------------------------
    def card_person(self, card: Any) -> str:
        """Who a card read's card (drivers' CardData) is about: the same key a sale of it gets."""
        return self.person_of({"card": {"ssn": getattr(card, "ssn", None) or "",
                                        "card_number": getattr(card, "card_number", None) or ""}})

    def eligible(self, record: Record) -> bool:
        """May the uploader send this pending record now? (the `UpstreamHost.eligible` hook)"""
        if not self.enabled:
            return True
        with self._lock:
            if record.status != "pending":
                self._forget(record.record_id)
                return True
            self._lapse()
            self._note(record)
            return not self._awaits(record)

    def awaiting(self, record: Record) -> bool:
        """Does this record wait for its patient (the Transaction's `awaiting_patient`)?"""
        if not self.enabled or record.status != "pending":
            return False
        with self._lock:
            self._lapse()
            self._note(record)
            return self._awaits(record)

    def awaiting_count(self) -> int:
        """How many pending records wait for their patient, themselves or behind one of their
        person's: records the uploader cannot send, so not a backlog ahead of a new sale (the
        uploader's `offline_reason`). From memory: asked on every sale."""
        if not self.enabled:
            return 0
        with self._lock:
            self._lapse()
            count = 0
            for person, entries in self._waiting.items():
                first = min(sale.seq for sale in entries.values())
                count += sum(1 for seq in self._pending.get(person, {}).values() if seq >= first)
            return count

    def released(self, record_id: str) -> bool:
        with self._lock:
            self._lapse()
            return record_id in self._released

    def observe(self, record: Record) -> None:
        """A record as stored now (committed, answered "pending", or decided)."""
        if not self.enabled:
            return
        with self._lock:
            if record.status != "pending":
                self._forget(record.record_id)
            else:
                self._lapse()
                self._note(record)

    def observe_event(self, name: str, data: dict[str, Any]) -> None:
        """Event hook: a decided record waits for nobody (the uploader announces every outcome)."""
        if self.enabled and name in _FINAL_EVENTS and isinstance(data.get("id"), str):
            with self._lock:
                self._forget(data["id"])

    def lapsed_read(self, record_id: str) -> str | None:
        """The card read whose release of this record lapsed (it waits again), if it did: a
        resettle repeated with that read is answered the record's state, not a refusal."""
        with self._lock:
            self._lapse()
            return self._lapsed.get(record_id)

    def release(self, person: str, *, until: float, through: Record | None = None,
                read_id: str | None = None) -> list[AwaitingSale]:
        """The patient is here: release their waiting outage sales (up to `through`'s seq, and
        `through` itself, when given), oldest first, until the clock reads `until` (the end of
        the card read `read_id` that proved them here). Returns those released now."""
        if not self.enabled or not person:
            return []
        with self._lock:
            self._lapse()
            entries = self._waiting.get(person, {})
            freed = sorted((s for s in entries.values() if through is None or s.seq <= through.seq),
                           key=lambda s: s.seq)
            for sale in freed:
                del entries[sale.record_id]
                self._released[sale.record_id] = _Release(until, sale, read_id)
                self._lapsed.pop(sale.record_id, None)
            if not entries:
                self._waiting.pop(person, None)
            # This read proves the patient here now: earlier releases of theirs last as long as it
            # does, or one lapsing first would hold this visit's records behind it again.
            last = through.seq if through is not None else math.inf
            for record_id, release in self._released.items():
                if (release.until is not None and release.until < until and self._person.get(record_id) == person
                        and self._pending.get(person, {}).get(record_id, math.inf) <= last):
                    release.until = until
            if through is not None and through.record_id not in self._released:
                self._released[through.record_id] = _Release(
                    until, AwaitingSale.of(through, person) if _outage_sale(through) else None, read_id)
            self._next_lapse = min(self._next_lapse, until)
        if freed:
            log.info("re-entry: %d outage sale(s) of a person released (seq %s)", len(freed),
                     ", ".join(str(s.seq) for s in freed))
        return freed

    def waiting_of(self, person: str) -> list[AwaitingSale]:
        """This person's outage sales waiting for them, oldest first (may include one decided a
        moment ago: callers that answer with them read the records again)."""
        with self._lock:
            self._lapse()
            return sorted(self._waiting.get(person, {}).values(), key=lambda s: s.seq)

    def waiting_ids(self) -> list[str]:
        """Every outage sale waiting for its patient, in seq order (same caveat)."""
        with self._lock:
            self._lapse()
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
        person = self.card_person(card)
        if not person:
            return []
        records = self.records_waiting(spool, [s.record_id for s in self.waiting_of(person)])
        return [sale_item(r) for r in records]

    # -- under the lock ---------------------------------------------------------------------------
    def _note(self, record: Record) -> None:
        person = self.person_of(record.payload)
        self._pending.setdefault(person, {})[record.record_id] = record.seq
        self._person[record.record_id] = person
        if not _outage_sale(record):
            return
        release = self._released.get(record.record_id)
        if release is None:
            self._waiting.setdefault(person, {}).setdefault(record.record_id, AwaitingSale.of(record, person))
        elif release.sale is None:  # released as a sale central was to decide, answered "pending" since
            release.sale = AwaitingSale.of(record, person)

    def _lapse(self) -> None:
        """Releases whose card read has ended: an outage sale not sent yet waits for its patient
        again (one being sent now is finished: its outcome forgets it)."""
        now = self.clock()
        if now < self._next_lapse:
            return
        lapsed, self._next_lapse = [], math.inf
        for record_id, release in list(self._released.items()):
            if release.until is None:
                continue
            if release.until > now:
                self._next_lapse = min(self._next_lapse, release.until)
                continue
            del self._released[record_id]
            if release.sale is not None:
                self._waiting.setdefault(release.sale.person, {})[record_id] = release.sale
                lapsed.append(release.sale.seq)
                if release.read_id is not None:
                    self._lapsed[record_id] = release.read_id
        if lapsed:
            log.info("re-entry: the card read ended before %d released outage sale(s) were sent (seq %s): "
                     "they wait for their patient again", len(lapsed), ", ".join(map(str, sorted(lapsed))))

    def _awaits(self, record: Record) -> bool:
        """Waiting itself, or behind a waiting record of the same person (a revoke of it, a later
        sale): the person's seq order holds."""
        entries = self._waiting.get(self.person_of(record.payload))
        if not entries:
            return False
        return record.record_id in entries or any(s.seq < record.seq for s in entries.values())

    def _forget(self, record_id: str) -> None:
        self._released.pop(record_id, None)
        self._lapsed.pop(record_id, None)
        person = self._person.pop(record_id, None)
        for key in (person,) if person is not None else list(self._waiting):
            for table in (self._waiting, self._pending):
                entries = table.get(key)
                if entries is not None and entries.pop(record_id, None) is not None and not entries:
                    del table[key]


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

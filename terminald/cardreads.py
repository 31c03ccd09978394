"""Recent card reads, so that a transaction can prove the card was present.

A `card_read_id` names one physical read on this terminal and is honoured
for ten minutes, for one sale: the first transaction that uses it claims it
for its `Idempotency-Key`. A retry of that sale (same key) may use it again;
another sale (another key) is refused with 422 `card_read_used` and the card
is read again (a new read of the same card gives a new, unclaimed id). A read
proves only that *this* card was present: its data is what the sale records.

It lives in memory on purpose: after a restart the patient's card is simply
read again, and nothing about a read needs to outlive that. (A retry after a
restart finds its stored answer by its key before the card read matters.)
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from terminald.errors import CardReadNotFound, TerminaldError

__all__ = ["MAX_KEPT", "TTL_S", "CardReadUsed", "CardReads"]

TTL_S = 600.0
MAX_KEPT = 1000


class CardReadUsed(TerminaldError):
    """The card_read_id already backs another sale (another Idempotency-Key)."""

    code = "card_read_used"
    status = 422
    title = "card_read_id already used"


@dataclass
class _Entry:
    at: float
    read: Any
    claimed_by: str | None = None


class CardReads:
    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        # Monotonic seconds; the re-entry book measures its releases on the same clock (expires_at).
        self.clock = clock
        self._lock = threading.Lock()
        self._reads: OrderedDict[str, _Entry] = OrderedDict()

    def remember(self, read: Any) -> str:
        read_id = "cr_" + secrets.token_urlsafe(12)
        now = self.clock()
        with self._lock:
            self._reads[read_id] = _Entry(now, read)
            while self._reads and (len(self._reads) > MAX_KEPT or self._oldest_at() < now - self._ttl):
                self._reads.popitem(last=False)
        return read_id

    def _oldest_at(self) -> float:
        return next(iter(self._reads.values())).at

    def _live(self, read_id: str) -> _Entry | None:
        entry = self._reads.get(read_id)
        if entry is None or entry.at < self.clock() - self._ttl:
            return None
        return entry

    def expires_at(self, read_id: str) -> float | None:
        """When (on `clock`) the read stops being honoured, or None when unknown or expired: how
        long a read proves its patient at the counter (a re-entry release lasts that long)."""
        with self._lock:
            entry = self._live(read_id)
        return None if entry is None else entry.at + self._ttl

    def get(self, read_id: str) -> Any | None:
        """The read, or None when unknown or expired. Claims nothing (see `claim`)."""
        with self._lock:
            entry = self._live(read_id)
        return None if entry is None else entry.read

    def claim(self, read_id: str, idempotency_key: str) -> Any:
        """The read, now bound to the sale with this `Idempotency-Key`.

        The same key may claim it again (a retried request); another key gets
        `CardReadUsed`. Unknown or expired: `CardReadNotFound`. Atomic: of two
        sales racing for one read, exactly one wins.
        """
        if not idempotency_key:
            raise ValueError("a claim needs the sale's Idempotency-Key")
        with self._lock:
            entry = self._live(read_id)
            if entry is None:
                raise CardReadNotFound("card_read_id is unknown or older than 10 minutes: read the card again")
            if entry.claimed_by is None:
                entry.claimed_by = idempotency_key
            elif entry.claimed_by != idempotency_key:
                raise CardReadUsed("this card_read_id already backs another sale: read the card again")
            return entry.read

    def release(self, read_id: str, idempotency_key: str) -> None:
        """Undo `claim` for a request that was refused with nothing recorded under its key
        (policy denial, validation of a later step, spool full), so the POS may use the read
        for a corrected sale under a new key. A no-op unless this key holds the claim."""
        with self._lock:
            entry = self._reads.get(read_id)
            if entry is not None and entry.claimed_by == idempotency_key:
                entry.claimed_by = None

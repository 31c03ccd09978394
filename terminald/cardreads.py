"""Recent card reads, so that a transaction can prove the card was present.

A `card_read_id` names one physical read on this terminal and is honoured
for ten minutes. It lives in memory on purpose: after a restart the patient's
card is simply read again, and nothing about a read needs to outlive that.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

TTL_S = 600.0
MAX_KEPT = 1000


class CardReads:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._reads: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def remember(self, read: Any) -> str:
        read_id = "cr_" + secrets.token_urlsafe(12)
        now = time.monotonic()
        with self._lock:
            self._reads[read_id] = (now, read)
            while self._reads and (len(self._reads) > MAX_KEPT or self._oldest_at() < now - self._ttl):
                self._reads.popitem(last=False)
        return read_id

    def _oldest_at(self) -> float:
        return next(iter(self._reads.values()))[0]

    def get(self, read_id: str) -> Any | None:
        with self._lock:
            entry = self._reads.get(read_id)
        if entry is None or entry[0] < time.monotonic() - self._ttl:
            return None
        return entry[1]

"""Shared pieces of the nhsa tests: a settable clock, the institution, answers."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from terminald.upstream.nhsa.envelope import Institution, Operator

CODE = "H44030500123"
INSTITUTION = Institution(CODE, "示例大药房", "440300", "YBXT")
OPERATOR = Operator("0001", "王药师")
PSN_NO = "44000012345678901234"
# 2026-03-15 09:30:12 in Shanghai
T0 = datetime(2026, 3, 15, 1, 30, 12, 250_000, tzinfo=UTC)


class Clock:
    """A clock tests set by hand; thread-safe, never sleeps."""

    def __init__(self, now: datetime = T0) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> None:
        with self._lock:
            self._now = now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


def answer(infcode: Any = 0, output: Any = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "infcode": infcode,
        "inf_refmsgid": "440300202603150930120000000001",
        "refmsg_time": "20260315093012300",
        "respond_time": "20260315093012400",
        "err_msg": extra.pop("err_msg", None),
        "output": output if output is not None else {},
    }
    body.update(extra)
    return json.dumps(body, ensure_ascii=False).encode()

"""What every doctor check shares: the result type, its statuses, and a probe timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["FAIL", "OK", "PROBE_TIMEOUT_S", "WARN", "Check", "ProbeTimeout", "within"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
PROBE_TIMEOUT_S = 5.0

T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    status: str  # OK, WARN or FAIL
    topic: str
    detail: str
    fix: str = ""


class ProbeTimeout(Exception):
    pass


def within(seconds: float, fn: Callable[[], T]) -> T:
    """Run `fn` in a daemon thread; a probe stuck in C code cannot hang the doctor."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name="doctor-probe", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise ProbeTimeout(f"no answer within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]

"""Polling with a deadline: the one way tests (tests/waiting.py) and the simulators' starters wait
for something to happen, never a sleep of a guessed length."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, what: str = "a condition",
             interval_s: float = 0.05) -> Any:
    """Call `predicate` until it returns something true (which is returned); fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)

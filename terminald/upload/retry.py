"""The one retry policy of the upstream link (tenacity): what is retried and how long to wait."""

from __future__ import annotations

from tenacity import RetryCallState, wait_random_exponential

__all__ = ["Backoff"]


class Backoff:
    """Exponential backoff with full jitter up to `cap`, or exactly what Retry-After asked for.

    Full jitter (a uniform wait between 0 and the exponential bound) keeps a fleet of
    counters that lost central at the same moment from coming back in waves.
    """

    def __init__(self, base: float, cap: float) -> None:
        self._jitter = wait_random_exponential(multiplier=base, max=cap)
        self._cap = cap

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)):
            # Honoured as asked, within reason: a broken header must not park the queue for days.
            return float(min(max(retry_after, 0.0), max(self._cap, 600.0)))
        return float(self._jitter(state))

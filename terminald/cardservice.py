"""The card service the daemon runs: the driver's `CardService`, telling the daemon how each read ended.

`read` is the driver's own, plus one call to `on_read(outcome)` when it ends:
`ok`, or the error's stable code (`no_card`, `no_reader`, `reader_busy`,
`card_unreadable`, ...), whoever reads (the API route, a test). The daemon
builds it and hands the outcome to its card-read hooks (the metrics count
reads by outcome; `on_read` must not raise or block): the daemon composes,
nothing patches a method at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.cards.model import CardRead
from drivers.cards.service import CardService

__all__ = ["ReportingCardService", "outcome_of"]


def outcome_of(exc: BaseException) -> str:
    """A failed read's outcome: the error's `code`, else its class name."""
    return str(getattr(exc, "code", None) or type(exc).__name__)


class ReportingCardService(CardService):
    def __init__(self, *args: Any, on_read: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_read = on_read

    def read(self, reader: str | None = None, timeout_s: float = 0.0) -> CardRead:
        try:
            result = super().read(reader, timeout_s)
        except Exception as exc:
            self._on_read(outcome_of(exc))
            raise
        self._on_read("ok")
        return result

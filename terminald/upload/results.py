"""One record's result as central answered it, once parsed (answers.py parses it).

Its own module so that both the parser and the errors that carry results
(`SequenceGap`, `ChainBroken` in errors.py) can import it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["RecordResult"]


@dataclass(frozen=True)
class RecordResult:
    seq: int
    record_id: str
    status: Literal["accepted", "rejected", "duplicate"]
    settlement: dict[str, Any] | None
    reason: dict[str, Any] | None

    @property
    def final(self) -> Literal["settled", "rejected"]:
        """The local status this result means (a duplicate carries its stored outcome)."""
        return "settled" if self.settlement is not None else "rejected"

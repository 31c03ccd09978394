"""What a card read returns, and what the daemon shows about readers."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass

__all__ = ["CardData", "CardRead", "ReaderInfo"]


@dataclass(frozen=True)
class CardData:
    """The holder and card fields of a social-security card; dates are ``YYYY-MM-DD``.

    ``ssn`` and ``name`` are personal data: they go to central and nowhere
    else (mask them before logging, printing or emitting events).
    """

    card_number: str | None = None
    ssn: str | None = None
    name: str | None = None
    sex: str | None = None
    birth_date: str | None = None
    nation: str | None = None
    issuer_code: str | None = None
    issued_on: str | None = None
    expires_on: str | None = None
    card_type: str | None = None
    spec_version: str | None = None
    card_identifier: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CardRead:
    """One successful read: where, when, the ATR (hex, upper case) and how many APDUs it took."""

    reader: str
    atr: str
    read_at: _dt.datetime
    card: CardData
    apdus: int


@dataclass(frozen=True)
class ReaderInfo:
    """A reader as the daemon lists it: ``kind`` "pcsc" or "psam"; ``state`` ok/no_card/busy/error."""

    name: str
    kind: str
    state: str
    card_present: bool

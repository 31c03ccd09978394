"""What a card profile is: a name and one ``read`` over an APDU session."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

from drivers.cards.channel import ApduSession
from drivers.cards.model import CardData

__all__ = ["CardProfile", "PsamOpener"]

# Called by a profile the first time it needs the PSAM; the caller (the PC/SC
# service) connects and locks the PSAM slot lazily, so cards that need no
# authentication never touch it, and releases it after the read.
PsamOpener = Callable[[], ApduSession]


class CardProfile(Protocol):
    """Reads one kind of card. Raises only :class:`drivers.errors.DriverError` subclasses."""

    name: ClassVar[str]

    def read(self, card: ApduSession, psam: PsamOpener | None) -> CardData: ...

"""Card readers over PC/SC (pyscard) and card profiles (`cn-ssc`).

The daemon uses :class:`CardService`; everything it raises is a
:class:`~drivers.errors.DriverError` subclass from :mod:`drivers.cards.errors`.
"""

from drivers.cards.errors import CardError, CardLocked, CardUnreadable, NoCard, NoReader, ReaderBusy
from drivers.cards.model import CardData, CardRead, ReaderInfo
from drivers.cards.service import CardService

__all__ = [
    "CardData",
    "CardError",
    "CardLocked",
    "CardRead",
    "CardService",
    "CardUnreadable",
    "NoCard",
    "NoReader",
    "ReaderBusy",
    "ReaderInfo",
]

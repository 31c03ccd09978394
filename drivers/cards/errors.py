"""Card-reader errors, one class per API code.

    DriverError (drivers.errors)
    └── CardError                 card_error
        ├── NoReader              no_reader        no (matching) reader
        │   └── PcscdUnavailable  no_reader        pcscd not running (or restarting)
        ├── NoCard                no_card          no card within the wait
        ├── ReaderBusy            reader_busy      another exchange holds the reader
        ├── CardUnreadable        card_unreadable  .sw, .retry_allowed, .tries_left
        ├── CardLocked            card_locked      .sw
        └── UnknownProfile        unknown_profile  (drivers.cards.profiles) bad config

``detail`` never contains card contents: only status words, reader state and
what the staff can do about it.
"""

from __future__ import annotations

from drivers.errors import DriverError

__all__ = [
    "CardError",
    "CardLocked",
    "CardUnreadable",
    "NoCard",
    "NoReader",
    "PcscdUnavailable",
    "ReaderBusy",
]


class CardError(DriverError):
    """Base of the card stack's errors; ``detail`` is a short, safe text for people."""

    code = "card_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code


class NoReader(CardError):
    """pcscd is not running, or no (matching) reader is attached."""

    code = "no_reader"


class PcscdUnavailable(NoReader):
    """pcscd is not running or went away; same API code, but worth telling apart in `doctor`."""


class NoCard(CardError):
    """No card was present in the reader within the allowed wait."""

    code = "no_card"


class ReaderBusy(CardError):
    """Another exchange (in this process or another one) holds the reader."""

    code = "reader_busy"


class CardUnreadable(CardError):
    """The card answered something we cannot use, or stopped answering.

    ``sw`` is the status word (``None`` for a mute or removed card),
    ``retry_allowed`` says whether the same card may succeed on a second try
    (removed mid-read, transient transport fault), ``tries_left`` is set for
    ``63Cx`` answers.
    """

    code = "card_unreadable"

    def __init__(
        self,
        detail: str,
        *,
        sw: int | None = None,
        retry_allowed: bool = False,
        tries_left: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.sw = sw
        self.retry_allowed = retry_allowed
        self.tries_left = tries_left

    @property
    def sw_hex(self) -> str | None:
        """The status word as four upper-case hex digits, as the API shows it."""
        return None if self.sw is None else f"{self.sw:04X}"


class CardLocked(CardError):
    """A key or the application is blocked (6983, 6A81, 9303)."""

    code = "card_locked"

    def __init__(self, detail: str, *, sw: int) -> None:
        super().__init__(detail)
        self.sw = sw

    @property
    def sw_hex(self) -> str:
        """The status word as four upper-case hex digits."""
        return f"{self.sw:04X}"

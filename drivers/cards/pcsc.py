"""The pyscard boundary: contexts, reader lists, status waits, connections.

Everything pyscard returns or raises is turned into a
:class:`~drivers.cards.errors.CardError` here, and nowhere else. The low-level
``smartcard.scard`` API is used on purpose: it reports PC/SC result codes
instead of raising, which maps cleanly onto our codes, and it avoids the
high-level layer's observer threads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from smartcard import scard

from drivers.cards.errors import CardError, CardUnreadable, NoCard, NoReader, PcscdUnavailable, ReaderBusy

__all__ = [
    "PNP_READER",
    "STATE_MUTE",
    "STATE_PRESENT",
    "STATE_UNAVAILABLE",
    "PcscCard",
    "PcscContext",
    "ReaderState",
    "translate",
]

PNP_READER = "\\\\?PnP?\\Notification"
STATE_PRESENT = int(scard.SCARD_STATE_PRESENT)
STATE_MUTE = int(scard.SCARD_STATE_MUTE)
STATE_UNAVAILABLE = int(scard.SCARD_STATE_UNAVAILABLE)
_STATE_CHANGED = int(scard.SCARD_STATE_CHANGED)

_SERVICE_GONE = {
    int(scard.SCARD_E_NO_SERVICE),
    int(scard.SCARD_E_SERVICE_STOPPED),
    int(scard.SCARD_E_INVALID_HANDLE),
}
_NO_READER = {
    int(scard.SCARD_E_NO_READERS_AVAILABLE),
    int(scard.SCARD_E_UNKNOWN_READER),
    int(scard.SCARD_E_READER_UNAVAILABLE),
}
_NO_CARD = {int(scard.SCARD_E_NO_SMARTCARD), int(scard.SCARD_W_REMOVED_CARD)}
_CARD_TROUBLE = {
    int(scard.SCARD_W_UNRESPONSIVE_CARD),
    int(scard.SCARD_W_UNPOWERED_CARD),
    int(scard.SCARD_W_RESET_CARD),
    int(scard.SCARD_E_NOT_TRANSACTED),
    int(scard.SCARD_E_PROTO_MISMATCH),
    int(scard.SCARD_F_COMM_ERROR),
    int(scard.SCARD_W_UNSUPPORTED_CARD),
}
# Outside an exchange with a card (listing readers, a status wait) this means the
# client library lost its socket to pcscd: pcscd was killed or restarted.
_COMM_ERROR = int(scard.SCARD_F_COMM_ERROR)
SUCCESS = int(scard.SCARD_S_SUCCESS)
TIMEOUT = int(scard.SCARD_E_TIMEOUT)
CANCELLED = int(scard.SCARD_E_CANCELLED)

T = TypeVar("T")


def translate(hresult: int, what: str, *, in_exchange: bool = False) -> CardError:
    """The CardError for a PC/SC result code; ``in_exchange``: a card was being read."""
    code = hresult & 0xFFFFFFFF
    if code in _SERVICE_GONE:
        return PcscdUnavailable(f"{what}: pcscd is not running")
    if code in _NO_READER:
        return NoReader(f"{what}: reader not available")
    if code == int(scard.SCARD_E_SHARING_VIOLATION):
        return ReaderBusy(f"{what}: the reader is in use by another program")
    if code in _NO_CARD:
        if in_exchange:
            return CardUnreadable(f"{what}: card removed during the read", retry_allowed=True)
        return NoCard(f"{what}: no card in the reader")
    if code in _CARD_TROUBLE:
        return CardUnreadable(f"{what}: the card does not answer ({code:08X})", retry_allowed=True)
    return CardUnreadable(f"{what}: PC/SC error {code:08X}", retry_allowed=True)


def _call(what: str, func: Callable[..., T], *args: Any) -> T:
    """Call a pyscard function; its exceptions (bad handles, SWIG type errors) become CardErrors."""
    try:
        return func(*args)
    except (scard.error, SystemError, TypeError, ValueError, OSError) as exc:
        raise CardUnreadable(f"{what}: PC/SC call failed", retry_allowed=True) from exc


@dataclass(frozen=True)
class ReaderState:
    """One reader's state after a status wait: flags as pcsc-lite reports them, and the ATR."""

    name: str
    flags: int
    atr: bytes

    @property
    def present(self) -> bool:
        return bool(self.flags & STATE_PRESENT) and not self.flags & STATE_MUTE

    @property
    def changed(self) -> bool:
        return bool(self.flags & _STATE_CHANGED)


class PcscContext:
    """A PC/SC context (one ``SCardEstablishContext``). Not for concurrent use; make one per
    thread. :meth:`cancel` and :meth:`close` may come from any thread; once closed, every call
    raises PcscdUnavailable."""

    def __init__(self) -> None:
        # No card is involved yet: whatever stops a context (no socket, a pcscd still starting
        # up or refusing this client) means pcscd cannot be used, never an unreadable card.
        try:
            hresult, handle = _call("establish context", scard.SCardEstablishContext, scard.SCARD_SCOPE_USER)
        except CardUnreadable as exc:
            raise PcscdUnavailable("establish context: the PC/SC library failed") from exc
        if hresult != SUCCESS:
            error = translate(hresult, "establish context")
            if not isinstance(error, PcscdUnavailable):
                error = PcscdUnavailable(f"establish context: pcscd did not accept ({hresult & 0xFFFFFFFF:08X})")
            raise error
        self._handle: Any = handle
        self._close_lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _live(self, what: str) -> Any:
        handle = self._handle
        if handle is None:
            raise PcscdUnavailable(f"{what}: the PC/SC context was released")
        return handle

    def close(self) -> None:
        """``SCardReleaseContext``, once; a second call does nothing."""
        with self._close_lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(scard.error, SystemError):  # pcscd may already be gone
                scard.SCardReleaseContext(handle)

    def __enter__(self) -> PcscContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def list_readers(self) -> list[str]:
        hresult, names = _call("list readers", scard.SCardListReaders, self._live("list readers"), [])
        if hresult & 0xFFFFFFFF in _NO_READER:
            return []
        if hresult & 0xFFFFFFFF == _COMM_ERROR:
            raise PcscdUnavailable("list readers: lost the connection to pcscd")
        if hresult != SUCCESS:
            raise translate(hresult, "list readers")
        return [str(n) for n in names]

    def wait(self, known: Sequence[tuple[str, int]], timeout_ms: int) -> list[ReaderState] | None:
        """Block until a reader's state differs from ``known`` (name, flags); None on timeout/cancel."""
        handle = self._live("wait for reader change")
        hresult, states = _call(
            "wait for reader change", scard.SCardGetStatusChange, handle, timeout_ms, list(known)
        )
        if hresult in (TIMEOUT, CANCELLED):
            return None
        if hresult & 0xFFFFFFFF in _NO_READER:
            raise NoReader("wait for reader change: reader list changed")
        if hresult & 0xFFFFFFFF == _COMM_ERROR:
            raise PcscdUnavailable("wait for reader change: lost the connection to pcscd")
        if hresult != SUCCESS:
            raise translate(hresult, "wait for reader change")
        return [ReaderState(str(name), int(flags), bytes(atr)) for name, flags, atr in states]

    def cancel(self) -> None:
        """Wake a :meth:`wait` blocked in another thread."""
        handle = self._handle
        if handle is not None:
            with contextlib.suppress(scard.error, SystemError):  # pcscd may already be gone
                scard.SCardCancel(handle)

    def connect(self, reader: str, exclusive: bool = True, atr: bytes | None = None) -> PcscCard:
        """Connect to the card in ``reader``; pass ``atr`` when a status wait already gave it."""
        share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        hresult, card, protocol = _call(
            f"connect {reader}", scard.SCardConnect, self._live(f"connect {reader}"), reader, share, protocols
        )
        if hresult != SUCCESS:
            raise translate(hresult, f"connect {reader}")
        return PcscCard(reader, card, int(protocol), atr)


class PcscCard:
    """A connected card: a :class:`~drivers.cards.channel.Channel` plus its ATR."""

    def __init__(self, reader: str, handle: Any, protocol: int, atr: bytes | None = None) -> None:
        self.reader = reader
        self._handle: Any = handle
        self._pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        self.protocol = "T=0" if protocol == scard.SCARD_PROTOCOL_T0 else "T=1"
        if atr is None:
            hresult, _name, _state, _proto, status_atr = _call("card status", scard.SCardStatus, handle)
            if hresult != SUCCESS:
                self.close()
                raise translate(hresult, f"status of {reader}", in_exchange=True)
            atr = bytes(status_atr)
        self.atr = atr

    def transmit(self, apdu: bytes) -> bytes:
        if self._handle is None:
            raise CardUnreadable("the card connection is closed", retry_allowed=True)
        hresult, response = _call("transmit", scard.SCardTransmit, self._handle, self._pci, list(apdu))
        if hresult != SUCCESS:
            raise translate(hresult, "transmit", in_exchange=True)
        return bytes(response)

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            with contextlib.suppress(scard.error, SystemError):  # pcscd may already be gone
                scard.SCardDisconnect(handle, scard.SCARD_RESET_CARD)

    def __enter__(self) -> PcscCard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

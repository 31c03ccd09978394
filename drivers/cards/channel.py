"""The one-method contract between card profiles and a reader, and T=0 response handling.

A :class:`Channel` sends one command APDU and returns the raw answer. The PC/SC
layer implements it over pyscard; tests implement it with a plain function
(:class:`FunctionChannel`), so profiles are exercised without a reader.
:class:`ApduSession` adds what every profile needs on top: ``61xx`` GET
RESPONSE chaining, ``6Cxx`` re-send with the right Le, an APDU counter and a
monotonic deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from drivers.cards.apdu import Command, Response
from drivers.cards.errors import CardUnreadable

__all__ = ["ApduSession", "Channel", "FunctionChannel"]

# A chain longer than this is a card stuck in a loop, not a long file.
_MAX_CHAIN = 32


class Channel(Protocol):
    """Send one command APDU, return the raw response (data + SW1 SW2)."""

    def transmit(self, apdu: bytes) -> bytes: ...


class FunctionChannel:
    """A :class:`Channel` over a plain function, for tests and tools."""

    def __init__(self, func: Callable[[bytes], bytes]) -> None:
        self._func = func

    def transmit(self, apdu: bytes) -> bytes:
        return self._func(apdu)


class ApduSession:
    """Command/response exchange with T=0 fix-ups, counting APDUs, bounded by ``deadline`` (monotonic)."""

    def __init__(self, channel: Channel, deadline: float | None = None, name: str = "card") -> None:
        self._channel = channel
        self._deadline = deadline
        self.name = name
        self.apdus = 0

    def _send(self, command: Command) -> Response:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise CardUnreadable(f"{self.name}: read took longer than allowed", retry_allowed=True)
        try:
            raw = command.to_bytes()
        except ValueError as exc:
            raise CardUnreadable(f"{self.name}: cannot encode command ({exc})") from exc
        self.apdus += 1
        return Response.from_bytes(self._channel.transmit(raw))

    def exchange(self, command: Command) -> Response:
        """Send ``command``; follow ``61xx`` with GET RESPONSE and honour one ``6Cxx``."""
        response = self._send(command)
        if response.sw1 == 0x6C:
            response = self._send(command.with_le(response.sw2 or 256))
        data = response.data
        chained = 0
        while response.sw1 == 0x61:
            chained += 1
            if chained > _MAX_CHAIN:
                raise CardUnreadable(f"{self.name}: endless GET RESPONSE chain", sw=response.sw)
            response = self._send(Command(command.cla & 0x03, 0xC0, 0, 0, le=response.sw2 or 256))
            if response.sw1 == 0x6C:
                response = self._send(Command(command.cla & 0x03, 0xC0, 0, 0, le=response.sw2 or 256))
            data += response.data
        return Response(data, response.sw)

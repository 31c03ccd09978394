"""Mutual authentication of a card through a PSAM (the terminal's security module).

The reader never holds keys: the PSAM derives the card's key from the card
identifier and computes or checks every cryptogram. Command set (test scheme,
documented in docs/cards.md, modelled on PBOC PSAM "general DES" commands):

    PSAM  80 1A 00 00 10 <card identifier>      derive the card key (diversify)
    card  00 88 00 00 08 <rnd> 10               INTERNAL AUTHENTICATE -> 16-byte cryptogram
    PSAM  80 FA 01 00 18 <rnd><cryptogram>      check it (9000, or 6988 for a bad card)
    card  00 84 00 00 08                        GET CHALLENGE -> 8 bytes
    PSAM  80 FA 02 00 08 <challenge> 10         compute the terminal's answer
    card  00 82 00 0A 10 <answer>               EXTERNAL AUTHENTICATE
"""

from __future__ import annotations

import os

from drivers.cards.apdu import Command, error_for_sw
from drivers.cards.channel import ApduSession
from drivers.cards.errors import CardUnreadable

__all__ = ["authenticate_card"]

_SW_BAD_CRYPTOGRAM = 0x6988


def _check(sw: int, what: str) -> None:
    error = error_for_sw(sw, what)
    if error is not None:
        raise error


def _expect(data: bytes, length: int, what: str) -> bytes:
    if len(data) != length:
        raise CardUnreadable(f"{what}: expected {length} bytes, got {len(data)}")
    return data


def authenticate_card(card: ApduSession, psam: ApduSession, card_identifier: bytes) -> None:
    """Internal then external authentication of ``card``; raises on any failure."""
    answer = psam.exchange(Command(0x80, 0x1A, 0x00, 0x00, _expect(card_identifier, 16, "card identifier")))
    _check(answer.sw, "PSAM key derivation")

    rnd = os.urandom(8)
    answer = card.exchange(Command(0x00, 0x88, 0x00, 0x00, rnd, le=16))
    _check(answer.sw, "internal authenticate")
    cryptogram = _expect(answer.data, 16, "internal authenticate")
    answer = psam.exchange(Command(0x80, 0xFA, 0x01, 0x00, rnd + cryptogram))
    if answer.sw == _SW_BAD_CRYPTOGRAM:
        raise CardUnreadable("card failed internal authentication (not a genuine card)", sw=answer.sw)
    _check(answer.sw, "PSAM check of the card")

    answer = card.exchange(Command(0x00, 0x84, 0x00, 0x00, le=8))
    _check(answer.sw, "get challenge")
    challenge = _expect(answer.data, 8, "get challenge")
    answer = psam.exchange(Command(0x80, 0xFA, 0x02, 0x00, challenge, le=16))
    _check(answer.sw, "PSAM cryptogram")
    answer = card.exchange(Command(0x00, 0x82, 0x00, 0x0A, _expect(answer.data, 16, "PSAM cryptogram")))
    _check(answer.sw, "external authenticate")

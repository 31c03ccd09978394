"""Who a spooled record is about: the person whose records settle one at a time, in seq order.

The platform keeps a deductible and a personal-account balance per person, so the order of one
person's settlements matters (contracts/upstream-nhsa.md, "Order"). A person is known by the
card's ID number (社会保障号码 = 公民身份号码): it stays when a lost card is replaced by one with
another card number. A card without one falls back to its card number. A revoke carries its
original's card, so it belongs to the same person.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["person_key"]


def person_key(payload: Mapping[str, Any]) -> str:
    """"id:<ID number>" or "card:<card number>"; "" for a record with no card at all."""
    card = payload.get("card")
    if not isinstance(card, Mapping):
        return ""
    ssn = card.get("ssn")
    if isinstance(ssn, str) and ssn.strip():
        return "id:" + ssn.strip().upper()
    number = card.get("card_number")
    if isinstance(number, str) and number.strip():
        return "card:" + number.strip().upper()
    return ""

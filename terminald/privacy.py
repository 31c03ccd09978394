"""Masking of personal data. Full identity numbers go to central and nowhere
else: logs, receipts, events and the status page get these forms only."""

from __future__ import annotations


def mask_ssn(ssn: str | None) -> str:
    """First 6 (the region) and last 4 kept: 110101********1234."""
    if not ssn:
        return ""
    if len(ssn) <= 10:
        return "*" * len(ssn)
    return ssn[:6] + "*" * (len(ssn) - 10) + ssn[-4:]


def mask_name(name: str | None) -> str:
    """张*丰 for three characters and more, 张* for two, * for one."""
    if not name:
        return ""
    if len(name) == 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_card(card_number: str | None) -> str:
    """Card numbers keep their first and last two characters: A1*****89."""
    if not card_number:
        return ""
    if len(card_number) <= 4:
        return "*" * len(card_number)
    return card_number[:2] + "*" * (len(card_number) - 4) + card_number[-2:]


def mask_phone(phone: str | None) -> str:
    """A phone number keeps its first 3 and last 4 digits: 138****5678."""
    if not phone:
        return ""
    digits = "".join(c for c in phone if c.isdigit())
    if len(digits) <= 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]

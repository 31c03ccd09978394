"""Where each `cn-ssc` field lives on the card, how it is encoded, and how it is checked.

Layout from the card-cn-ssc contract. 1.0 cards have no name extension, so
their EF06 records after the name move up by one (sex is record 3).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from drivers.cards.apdu import decode_an, decode_bcd, decode_bcd_date, decode_gbk
from drivers.cards.errors import CardUnreadable

__all__ = [
    "LAYOUT_V1",
    "LAYOUT_V2",
    "RID",
    "Field",
    "decode_field",
    "ssn_check_digit",
    "validate_card_number",
    "validate_ssn",
]

RID = bytes.fromhex("D156000005")


@dataclass(frozen=True)
class Field:
    key: str
    sfi: int
    record: int
    tag: int
    length: int
    required: bool = False


LAYOUT_V2: tuple[Field, ...] = (
    Field("card_identifier", 5, 1, 0x01, 16),
    Field("spec_version", 5, 3, 0x03, 4),
    Field("card_type", 5, 2, 0x02, 1),
    Field("issuer_code", 5, 4, 0x04, 12),
    Field("issued_on", 5, 5, 0x05, 4),
    Field("expires_on", 5, 6, 0x06, 4),
    Field("card_number", 5, 7, 0x07, 9, required=True),
    Field("ssn", 6, 1, 0x08, 18, required=True),
    Field("name", 6, 2, 0x09, 30, required=True),
    Field("name_extension", 6, 3, 0x4E, 20),
    Field("sex", 6, 4, 0x0A, 1),
    Field("nation", 6, 5, 0x0B, 1),
    Field("birth_date", 6, 7, 0x0D, 4),
)

_V1_RECORDS = {"sex": 3, "nation": 4, "birth_date": 6}
LAYOUT_V1: tuple[Field, ...] = tuple(
    Field(f.key, f.sfi, _V1_RECORDS.get(f.key, f.record), f.tag, f.length, f.required)
    for f in LAYOUT_V2
    if f.key != "name_extension"
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_SSN_RE = re.compile(r"\d{17}[\dX]")
_CARD_NUMBER_RE = re.compile(r"[0-9A-Z]{9}")
_VERSION_RE = re.compile(r"\d\.\d\d")


def ssn_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a resident ID number (GB 11643)."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def validate_ssn(ssn: str) -> str:
    ssn = ssn.upper()
    if not _SSN_RE.fullmatch(ssn):
        raise CardUnreadable("social security number is not 17 digits and a check character")
    if ssn_check_digit(ssn[:17]) != ssn[17]:
        raise CardUnreadable("social security number fails its check digit")
    try:
        _dt.date(int(ssn[6:10]), int(ssn[10:12]), int(ssn[12:14]))
    except ValueError as exc:
        raise CardUnreadable("social security number holds no valid birth date") from exc
    return ssn


def validate_card_number(number: str) -> str:
    number = number[:9].upper()
    if not _CARD_NUMBER_RE.fullmatch(number):
        raise CardUnreadable("card number is not 9 letters or digits")
    return number


def _card_identifier(value: bytes) -> str:
    if len(value) != 16:
        raise CardUnreadable("card identifier is not 16 bytes")
    region = decode_bcd(value[:3])
    if len(region) != 6 or value[3:8] != RID:
        raise CardUnreadable("card identifier has no region code and RID D156000005")
    return value.hex().upper()


def _one_of(allowed: frozenset[str], what: str) -> Callable[[bytes], str]:
    def decode(value: bytes) -> str:
        text = decode_an(value)
        if text not in allowed:
            raise CardUnreadable(f"{what} has an unknown code")
        return text

    return decode


def _version(value: bytes) -> str:
    text = decode_an(value)
    if not _VERSION_RE.fullmatch(text):
        raise CardUnreadable("specification version is not like 2.00")
    return text


def _nation(value: bytes) -> str:
    digits = decode_bcd(value)
    if len(digits) != 2:
        raise CardUnreadable("nation code is not two digits")
    return digits


_DECODERS: dict[str, Callable[[bytes], str | None]] = {
    "card_identifier": _card_identifier,
    "card_type": decode_an,
    "spec_version": _version,
    "issuer_code": decode_an,
    "issued_on": decode_bcd_date,
    "expires_on": decode_bcd_date,
    "card_number": lambda v: validate_card_number(decode_an(v)),
    "ssn": lambda v: validate_ssn(decode_an(v)),
    "name": decode_gbk,
    "name_extension": decode_gbk,
    "sex": _one_of(frozenset({"0", "1", "2", "9"}), "sex"),
    "nation": _nation,
    "birth_date": decode_bcd_date,
}


def decode_field(field: Field, value: bytes) -> str | None:
    """Decode and check one field; an empty value is an absent field (None)."""
    if len(value) > field.length:
        raise CardUnreadable(f"{field.key} is longer than {field.length} bytes")
    if not value.strip(b"\x00\xff"):
        return None
    try:
        decoded = _DECODERS[field.key](value)
    except CardUnreadable as exc:
        raise CardUnreadable(f"{field.key}: {exc.detail}") from exc
    return decoded or None

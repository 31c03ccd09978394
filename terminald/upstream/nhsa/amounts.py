"""Money on the wire: integer fen locally, yuan with exactly 2 decimals at the platform.

No float is ever made or sent. Out: `to_wire(fen, amount_as)` gives the string "12.34"
(`amount_as = "string"`) or `Decimal("12.34")` (`"number"`), which `wirejson.dumps` writes as
the JSON number 12.34, digit for digit. In: `to_fen(value)` takes what a parsed answer holds
(str, int, Decimal; answers are parsed with `parse_float=Decimal`, see `wirejson.loads`) and
returns fen, or raises AmountError for anything that is not an exact amount:

- more than 2 decimal places with a non-zero digit past the second (12.345); trailing zeros
  are exact and accepted (12.340 is 1234 fen);
- NaN, infinities, bools, None, exponent or signed-plus text ("1e2", "+1"), blanks, "", ".5",
  "5.", non-ASCII digits, "1_000";
- past the platform's numeric(16,2): more than 14 integer digits;
- negative, unless `allow_negative=True`.

A float (from a caller that parsed JSON without `parse_float=Decimal`) is read through its
shortest repr ("12.34" for 12.34), never through its binary value.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Literal

from terminald.upstream.nhsa.errors import AmountError

__all__ = ["MAX_FEN", "AmountAs", "fen_to_yuan", "to_fen", "to_wire"]

AmountAs = Literal["string", "number"]
# numeric(16,2): 14 digits before the point, 2 after.
MAX_FEN = 10**16 - 1
_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MAX_TEXT = 64


def _check_fen(fen: object) -> int:
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise AmountError(f"an amount in fen must be an int, not {type(fen).__name__}")
    if abs(fen) > MAX_FEN:
        raise AmountError(f"{fen} fen is out of range (at most {MAX_FEN})")
    return fen


def fen_to_yuan(fen: int) -> str:
    """1234 -> "12.34", 5 -> "0.05", -150 -> "-1.50": always two decimals."""
    fen = _check_fen(fen)
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def to_wire(fen: int, amount_as: AmountAs) -> str | Decimal:
    """The wire form of `fen` for the profile's `amount_as`."""
    text = fen_to_yuan(fen)
    if amount_as == "string":
        return text
    if amount_as == "number":
        return Decimal(text)  # exact: built from the digits, scale 2
    raise AmountError(f"amount_as must be 'string' or 'number', not {amount_as!r}")


def _decimal_to_fen(value: Decimal, shown: object) -> int:
    if not value.is_finite():
        raise AmountError(f"{shown!r} is not a finite amount")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digits_list = list(digits)
    # Drop trailing zeros past the second decimal: 12.340 is exact, 12.345 is not.
    while exponent < -2 and digits_list and digits_list[-1] == 0:
        digits_list.pop()
        exponent += 1
    if exponent < -2 and digits_list:
        raise AmountError(f"{shown!r} has more than 2 decimal places")
    magnitude = int("".join(map(str, digits_list)) or "0")
    # Integer arithmetic only: no Decimal context, so nothing is ever rounded.
    fen = magnitude * 10 ** (exponent + 2) if exponent >= -2 else 0
    return -fen if sign else fen


def to_fen(value: object, *, allow_negative: bool = False) -> int:
    """Yuan as the platform sent it -> fen, exactly, or AmountError."""
    if isinstance(value, bool) or value is None:
        raise AmountError(f"{value!r} is not an amount")
    if isinstance(value, int):
        if abs(value) > MAX_FEN // 100:
            raise AmountError(f"{value} yuan is out of range")
        fen = value * 100
    elif isinstance(value, Decimal):
        if value.is_finite() and value.adjusted() > 13:
            raise AmountError(f"{value} yuan is out of range")
        fen = _decimal_to_fen(value, value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise AmountError(f"{value!r} is not a finite amount")
        text = repr(value)
        if "e" in text or "E" in text:
            raise AmountError(f"{value!r} is out of range or not an exact 2-decimal amount")
        return to_fen(text, allow_negative=allow_negative)
    elif isinstance(value, str):
        if len(value) > _MAX_TEXT or not _TEXT.fullmatch(value):
            raise AmountError(f"{value[:_MAX_TEXT]!r} is not a decimal amount in yuan")
        whole = value.lstrip("-").split(".")[0]
        if len(whole.lstrip("0")) > 14:
            raise AmountError(f"{value!r} yuan is out of range")
        fen = _decimal_to_fen(Decimal(value), value)
    else:
        raise AmountError(f"an amount cannot be a {type(value).__name__}")
    if abs(fen) > MAX_FEN:
        raise AmountError(f"{value!r} yuan is out of range")
    if fen < 0 and not allow_negative:
        raise AmountError(f"{value!r} is negative")
    return fen

"""JSON as the platform gets it and gives it: no float in either direction.

`dumps` writes str, int, bool, None, Decimal (as a JSON number, digit for digit: Decimal("12.30")
is 12.30), mappings with str keys, lists and tuples; a float or anything else is a TypeError, so
an amount that skipped `amounts.to_wire` cannot be sent. Non-ASCII text is written as UTF-8.

`loads` reads numbers with a point or an exponent as Decimal, refuses NaN/Infinity and an
object with the same key twice (which one would count?): each refusal is a ValueError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["dumps", "loads"]

_string = json.JSONEncoder(ensure_ascii=False).encode


def dumps(value: Any) -> str:
    out: list[str] = []
    _emit(value, out)
    return "".join(out)


def _emit(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"{value} cannot be sent: not a finite number")
        out.append(format(value, "f"))
    elif isinstance(value, float):
        raise TypeError("floats are never sent: amounts go through amounts.to_wire")
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _emit(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _emit(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def loads(text: str | bytes) -> Any:
    """Parse JSON text; ValueError (json.JSONDecodeError is one) when it is not what dumps allows."""
    return json.loads(text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_unique_keys)

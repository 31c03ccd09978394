"""Fen <-> yuan on the wire: exact both ways, no float ever."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminald.upstream.nhsa import wirejson
from terminald.upstream.nhsa.amounts import MAX_FEN, fen_to_yuan, to_fen, to_wire
from terminald.upstream.nhsa.errors import AmountError

fens = st.integers(min_value=-MAX_FEN, max_value=MAX_FEN)


def _no_float(text: str) -> Any:
    raise AssertionError(f"a float was parsed: {text}")


@given(fens, st.sampled_from(["string", "number"]))
def test_round_trip_through_json_text_is_exact(fen: int, amount_as: str) -> None:
    wire = to_wire(fen, amount_as)  # type: ignore[arg-type]
    assert not isinstance(wire, float)
    text = wirejson.dumps({"medfee_sumamt": wire})
    parsed = wirejson.loads(text)["medfee_sumamt"]
    assert not isinstance(parsed, float)
    assert to_fen(parsed, allow_negative=True) == fen
    # The JSON text itself holds exactly two decimals, and no parser reads it as a float here.
    json.loads(text, parse_float=lambda s: (len(s.split(".")[1]) == 2) or _no_float(s))


@given(fens)
def test_string_form_has_two_decimals(fen: int) -> None:
    text = fen_to_yuan(fen)
    whole, _, cents = text.lstrip("-").partition(".")
    assert len(cents) == 2 and whole.isdigit()
    assert int(Decimal(text) * 100) == fen
    assert to_fen(text, allow_negative=True) == fen


@given(fens)
def test_number_form_is_a_decimal_of_scale_two(fen: int) -> None:
    wire = to_wire(fen, "number")
    assert isinstance(wire, Decimal)
    assert wire.as_tuple().exponent == -2
    assert wirejson.dumps(wire) == fen_to_yuan(fen)


@given(st.integers(min_value=0, max_value=10**14 - 1), st.integers(min_value=1, max_value=9))
def test_a_third_decimal_is_refused(whole: int, third: int) -> None:
    text = f"{whole}.{third % 10}{third}{third}"
    with pytest.raises(AmountError, match="more than 2 decimal"):
        to_fen(text)
    with pytest.raises(AmountError):
        to_fen(Decimal(text))


@given(st.integers(min_value=0, max_value=MAX_FEN))
def test_shortest_float_repr_is_read_exactly(fen: int) -> None:
    value = float(fen_to_yuan(fen))
    if "e" in repr(value) or Decimal(repr(value)) != Decimal(fen_to_yuan(fen)):
        return  # past float's 15-17 digits: only Decimal and text are exact there
    assert to_fen(value) == fen


@pytest.mark.parametrize(("value", "fen"), [
    ("12.34", 1234), ("0.05", 5), ("12", 1200), ("12.3", 1230), ("12.340", 1234), ("0", 0), ("-0.00", 0),
    (12, 1200), (0, 0), (Decimal("12.34"), 1234), (Decimal("1.2E+1"), 1200), (Decimal("12.3400000"), 1234),
    (Decimal("0E-30"), 0), (12.34, 1234), (0.1, 10), ("99999999999999.99", MAX_FEN), ("007.50", 750),
])
def test_accepted(value: object, fen: int) -> None:
    assert to_fen(value) == fen


@pytest.mark.parametrize("value", [
    "12.345", "0.001", Decimal("12.341"), Decimal("1E-3"), Decimal("12.3400000000000000000000000001"),
    True, False, None, float("nan"), float("inf"), float("-inf"), Decimal("NaN"), Decimal("sNaN"),
    Decimal("Infinity"), "NaN", "Infinity", "1e2", "1E2", "+1", " 1", "1 ", "", ".5", "5.", "1_000", "١٢",
    "12,34", "0x10", "100000000000000", "100000000000000.00", 10**14, Decimal("1E+14"), 1e300, 1e16,
    "1" * 100, [], {}, b"12.34", "-12.34", -1, Decimal("-0.01"),
])
def test_refused(value: object) -> None:
    with pytest.raises(AmountError):
        to_fen(value)


def test_negative_only_when_asked() -> None:
    assert to_fen("-12.34", allow_negative=True) == -1234
    assert to_fen(Decimal("-0.01"), allow_negative=True) == -1


@pytest.mark.parametrize("fen", [True, 1.0, "12", None, MAX_FEN + 1, -MAX_FEN - 1, Decimal(1)])
def test_fen_side_refuses_what_is_not_an_int_in_range(fen: object) -> None:
    with pytest.raises(AmountError):
        fen_to_yuan(fen)  # type: ignore[arg-type]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(AmountError):
        to_wire(100, "float")  # type: ignore[arg-type]


def test_amount_error_is_a_value_error() -> None:
    assert issubclass(AmountError, ValueError)


# -- the JSON both ways ---------------------------------------------------------------------------

def test_dumps_refuses_floats_anywhere() -> None:
    with pytest.raises(TypeError, match="floats are never sent"):
        wirejson.dumps({"data": {"drugdetail": [{"pric": 1.5}]}})
    with pytest.raises(TypeError):
        wirejson.dumps({"x": Decimal("NaN")})
    with pytest.raises(TypeError):
        wirejson.dumps({1: "x"})
    with pytest.raises(TypeError):
        wirejson.dumps({"x": object()})


def test_dumps_writes_text_as_utf8_and_numbers_digit_for_digit() -> None:
    text = wirejson.dumps({"a": "示例\"药房", "b": [Decimal("12.30"), 7, True, None], "c": (False,)})
    assert text == '{"a":"示例\\"药房","b":[12.30,7,true,null],"c":[false]}'
    assert json.loads(text)["a"] == '示例"药房'


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": 1, "a": 2}'])
def test_loads_refuses_constants_and_repeated_keys(text: str) -> None:
    with pytest.raises(ValueError):
        wirejson.loads(text)


def test_loads_reads_every_fraction_as_decimal() -> None:
    assert wirejson.loads('{"a": 0.1, "b": 1e2, "c": 3}') == {"a": Decimal("0.1"), "b": Decimal("1E+2"), "c": 3}

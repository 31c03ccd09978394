"""Byte-level helpers: APDU encoding, status words, TLV, BCD, padded text."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.cards.apdu import (
    Command,
    Response,
    decode_an,
    decode_bcd,
    decode_bcd_date,
    decode_gbk,
    encode_bcd,
    encode_padded,
    encode_tlv,
    error_for_sw,
    parse_command,
    parse_tlv,
)
from drivers.cards.errors import CardError, CardLocked, CardUnreadable


@pytest.mark.parametrize(
    ("command", "raw"),
    [
        (Command(0x00, 0xA4, 0x04, 0x00, b"\x01\x02"), "00A404000201 02"),
        (Command(0x00, 0xB2, 0x01, 0x2C, le=18), "00B2012C12"),
        (Command(0x00, 0xC0, 0, 0, le=256), "00C0000000"),
        (Command(0x80, 0xFA, 0x02, 0x00, b"\xaa" * 8, le=16), "80FA020008" + "AA" * 8 + "10"),
        (Command(0x00, 0x84, 0, 0), "00840000"),
    ],
)
def test_command_encodes_every_case_and_parses_back(command: Command, raw: str) -> None:
    encoded = command.to_bytes()
    assert encoded == bytes.fromhex(raw.replace(" ", ""))
    assert parse_command(encoded) == command


@pytest.mark.parametrize("raw", ["", "00A404", "00A4040005AABB", "00A404000000"])
def test_malformed_command_is_a_value_error(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_command(bytes.fromhex(raw))


def test_command_rejects_out_of_range_values() -> None:
    with pytest.raises(ValueError):
        Command(0x00, 0xB2, 0x100, 0).to_bytes()
    with pytest.raises(ValueError):
        Command(0x00, 0xB2, 1, 0, le=0).to_bytes()
    with pytest.raises(ValueError):
        Command(0x00, 0xD6, 0, 0, b"x" * 256).to_bytes()


def test_response_splits_status_word() -> None:
    r = Response.from_bytes(bytes.fromhex("0102619F"))
    assert (r.data, r.sw, r.sw1, r.sw2, r.ok) == (b"\x01\x02", 0x619F, 0x61, 0x9F, False)
    assert Response.from_bytes(b"\x90\x00").ok
    with pytest.raises(CardUnreadable) as info:
        Response.from_bytes(b"\x90")
    assert info.value.retry_allowed


@pytest.mark.parametrize(
    ("sw", "kind", "code"),
    [
        (0x6982, CardUnreadable, "card_unreadable"),
        (0x6983, CardLocked, "card_locked"),
        (0x6A81, CardLocked, "card_locked"),
        (0x9303, CardLocked, "card_locked"),
        (0x6A82, CardUnreadable, "card_unreadable"),
        (0x6A83, CardUnreadable, "card_unreadable"),
        (0x63C2, CardUnreadable, "card_unreadable"),
        (0x6F00, CardUnreadable, "card_unreadable"),
    ],
)
def test_status_words_map_to_contract_codes(sw: int, kind: type[CardError], code: str) -> None:
    error = error_for_sw(sw, "step")
    assert isinstance(error, kind)
    assert error.code == code
    assert error.sw == sw  # type: ignore[attr-defined]
    assert error_for_sw(0x9000, "step") is None


def test_wrong_pin_reports_tries_left() -> None:
    error = error_for_sw(0x63C2, "verify")
    assert isinstance(error, CardUnreadable)
    assert error.tries_left == 2
    assert "2 tries left" in error.detail


def test_tlv_round_trip_and_padding() -> None:
    data = encode_tlv(0x01, b"abc") + encode_tlv(0x4E, b"") + b"\x00\x00\xff"
    assert parse_tlv(data) == [(0x01, b"abc"), (0x4E, b"")]
    with pytest.raises(CardUnreadable, match="claims 5 bytes"):
        parse_tlv(bytes.fromhex("0105AABB"))
    with pytest.raises(CardUnreadable, match="truncated"):
        parse_tlv(bytes.fromhex("0102AABB07"))


def test_bcd_and_dates() -> None:
    assert decode_bcd(bytes.fromhex("110105")) == "110105"
    assert decode_bcd(bytes.fromhex("1101FF")) == "1101"
    assert encode_bcd("1101", 3) == bytes.fromhex("1101FF")
    assert decode_bcd_date(bytes.fromhex("20290520")) == "2029-05-20"
    assert decode_bcd_date(b"\xff" * 4) is None
    assert decode_bcd_date(b"\x00" * 4) is None
    with pytest.raises(CardUnreadable, match="calendar"):
        decode_bcd_date(bytes.fromhex("20230230"))
    with pytest.raises(CardUnreadable, match="non-decimal"):
        decode_bcd(bytes.fromhex("1A"))
    with pytest.raises(ValueError):
        encode_bcd("12345", 2)


def test_text_fields() -> None:
    assert decode_an(encode_padded("A10000123", 9)) == "A10000123"
    assert decode_an(b"2.00\x00\x00") == "2.00"
    assert decode_gbk(encode_padded("张伟", 30, "gbk")) == "张伟"
    with pytest.raises(CardUnreadable, match="GBK"):
        decode_gbk(b"\x81\x20\x00")
    with pytest.raises(CardUnreadable, match="non-printable"):
        decode_an(b"A\x07B")
    with pytest.raises(ValueError):
        encode_padded("张伟", 3, "gbk")


@given(st.binary(max_size=300))
def test_parsers_never_raise_anything_but_card_errors(data: bytes) -> None:
    for parse in (parse_tlv, decode_bcd, decode_bcd_date, decode_an, decode_gbk, Response.from_bytes):
        with contextlib.suppress(CardError):
            parse(data)


@given(st.lists(st.tuples(st.integers(1, 0xFE), st.binary(max_size=40)), max_size=8))
def test_tlv_round_trips(items: list[tuple[int, bytes]]) -> None:
    encoded = b"".join(encode_tlv(t, v) for t, v in items)
    assert parse_tlv(encoded) == items


@given(st.text(alphabet="0123456789", max_size=12))
def test_bcd_round_trips(digits: str) -> None:
    assert decode_bcd(encode_bcd(digits, 6)) == digits


@given(st.binary(min_size=4, max_size=4 + 258))
def test_parse_command_only_raises_value_error(raw: bytes) -> None:
    try:
        command = parse_command(raw)
    except ValueError:
        return
    assert command.to_bytes() == raw


@pytest.mark.parametrize("sw", [0x6A82, 0x6A83, 0x6983, 0x6A81, 0x9303, 0x6982, 0x63C1, 0x6F00, 0x0090])
def test_status_words_are_shown_as_four_hex_digits(sw: int) -> None:
    error = error_for_sw(sw, "read EF05")
    assert error is not None
    assert error.sw == sw  # the integer stays internal
    assert error.sw_hex == f"{sw:04X}"
    assert str(sw) not in error.detail  # never 27266 in front of people
    if "SW" in error.detail:
        assert f"SW {sw:04X}" in error.detail

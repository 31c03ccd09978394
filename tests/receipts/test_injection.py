"""No data field can produce a printer command.

Every byte 0x00-0xFF (as a character) and every common ESC/POS command
prefix goes through every data field; the stream is decoded with the
tokenizer, which knows each command's length, and must hold exactly the
commands the template emits for harmless data (Chinese-mode switches and
line feeds aside, which follow the text), and nothing unknown or truncated.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from drivers.printers.decode import decode
from terminald.receipts.model import ReceiptDataError
from terminald.receipts.templates import render_receipt

from .samples import DOCUMENTS

PREFIXES = [
    "\x1b@",
    "\x1bp\x00\x19\xfa",
    "\x1bp\x01\x32\x32",
    "\x1dV\x00",
    "\x1dVB\x00",
    "\x1dVA\x03",
    "\x1c&",
    "\x1c.",
    "\x1c!\x0c",
    "\x10\x04\x01",
    "\x10\x14\x01\x00\x05",
    "\x10\x05\x02",
    "\x1d(k\x03\x001Q0",
    "\x1d(k\x04\x001P0X",
    "\x1dv0\x00\x01\x00\x01\x00\xff",
    "\x1b!\x30",
    "\x1d!\x77",
    "\x1bE\x01",
    "\x1b*\x00\x02\x00\xff\xff",
    "\x1b=\x02",
    "\x1bt\x10",
    "\x1ba\x02",
    "\x1bd\xff",
    "\x1b\x40\x1b\x70\x00",
    "\x9b2J",
    "\u009b",
    "\r\n\x0c",
    "\x00",
    "\x7f",
    "\x1b",
    "\x1d",
    "\x1c",
    "\x10",
    "\u202e反转",
    "\u200b\u200d",
]
PAYLOADS = [chr(b) for b in range(256)] + PREFIXES + ["".join(chr(b) for b in range(256)) + "".join(PREFIXES)]

Setter = Callable[[dict[str, Any], str], None]


def _at(*path: str | int) -> Setter:
    def put(tx: dict[str, Any], value: str) -> None:
        target: Any = tx
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return put


FIELDS: dict[str, Setter] = {
    "id": _at("id"),
    "card_number": _at("card", "card_number"),
    "ssn_masked": _at("card", "ssn_masked"),
    "name_masked": _at("card", "name_masked"),
    "item_name": _at("items", 0, "name"),
    "item_code": _at("items", 1, "code"),
    "operator": _at("operator", "name"),
    "central_ref": _at("settlement", "central_ref"),
    "original_id": _at("original_id"),
    "offline_reason": _at("offline_reason"),
}
# Fields only some states print: field -> (state in samples.DOCUMENTS, where it goes).
STATE_FIELDS: dict[str, tuple[str, Setter]] = {
    "revoked_by": ("revoked_original", _at("revoked_by")),
    "rejection_message": ("rejected", _at("rejection", "message")),
    "revoke_rejection": ("revoke_rejected", _at("rejection", "message")),
    "resolution_note": ("resolved_self_pay", _at("resolution", "note")),
    "refund_operator": ("notice_refunded", _at("refund", "operator", "name")),
    "timeout_reason": ("pending_timeout", _at("offline_reason")),
}
STRUCTURE_FREE = {"FS &", "FS .", "LF"}  # follow the text, not the template


def _render(
    tx: dict[str, Any], chinese: str, institution: str = "示例大药房", terminal: str = "T0001", **kwargs: Any
) -> bytes:
    return render_receipt(
        tx, institution=institution, terminal_id=terminal, columns=32, chinese=chinese, language="zh-CN", **kwargs
    )


def _structure(data: bytes) -> list[str]:
    return [c for c in decode(data).commands if c not in STRUCTURE_FREE]


def _check(data: bytes, expected: list[str], allowed: set[str]) -> None:
    doc = decode(data)
    assert set(doc.commands) <= allowed, set(doc.commands) - allowed
    assert [c for c in doc.commands if c not in STRUCTURE_FREE] == expected


@pytest.mark.parametrize("chinese", ["fs", "raw"])
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_every_byte_and_prefix_in_every_field(field: str, chinese: str) -> None:
    base, _ = DOCUMENTS["online"]
    benign = copy.deepcopy(base)
    FIELDS[field](benign, "x")
    reference = _render(benign, chinese)
    expected = _structure(reference)
    allowed = set(decode(reference).commands) | STRUCTURE_FREE
    for payload in PAYLOADS:
        tx = copy.deepcopy(base)
        FIELDS[field](tx, f"x{payload}x")
        _check(_render(tx, chinese), expected, allowed)


@pytest.mark.parametrize("chinese", ["fs", "raw"])
@pytest.mark.parametrize("field", sorted(STATE_FIELDS))
def test_every_byte_and_prefix_in_the_fields_of_each_state(field: str, chinese: str) -> None:
    state, put = STATE_FIELDS[field]
    base, kwargs = DOCUMENTS[state]
    benign = copy.deepcopy(base)
    put(benign, "x")
    reference = _render(benign, chinese, **kwargs)
    expected = _structure(reference)
    allowed = set(decode(reference).commands) | STRUCTURE_FREE
    for payload in PAYLOADS:
        tx = copy.deepcopy(base)
        put(tx, f"x{payload}x")
        _check(_render(tx, chinese, **kwargs), expected, allowed)


@pytest.mark.parametrize("chinese", ["fs", "raw"])
def test_institution_and_terminal_and_all_fields_at_once(chinese: str) -> None:
    base, _ = DOCUMENTS["online"]
    benign = copy.deepcopy(base)
    for put in FIELDS.values():
        put(benign, "x")
    reference = _render(benign, chinese, "x", "x")
    expected, allowed = _structure(reference), set(decode(reference).commands) | STRUCTURE_FREE
    for payload in PAYLOADS:
        tx = copy.deepcopy(base)
        for put in FIELDS.values():
            put(tx, f"x{payload}x")
        _check(_render(tx, chinese, f"x{payload}x", f"x{payload}x"), expected, allowed)


def test_nothing_but_commands_and_text_reaches_the_stream() -> None:
    base, _ = DOCUMENTS["online"]
    tx = copy.deepcopy(base)
    everything = PAYLOADS[-1]
    for put in FIELDS.values():
        put(tx, everything)
    data = _render(tx, "fs", everything, everything)
    names = {n for n in decode(data).commands}
    assert not {n for n in names if n.startswith(("DLE", "CTRL", "ESC p", "truncated", "ESC ?", "GS ?"))}
    assert b"\x1bp" not in data and b"\x10" not in data


@pytest.mark.parametrize("field", ["qty", "amount_fen", "business_time"])
def test_typed_fields_refuse_text_with_a_clear_error(field: str) -> None:
    base, _ = DOCUMENTS["online"]
    tx = copy.deepcopy(base)
    if field == "business_time":
        tx["business_time"] = "\x1bp\x00"
    else:
        tx["items"][0][field] = "\x1dV\x00"
    with pytest.raises(ReceiptDataError):
        _render(tx, "fs")

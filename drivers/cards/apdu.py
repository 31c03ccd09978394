"""APDUs, status words, TLV, BCD and padded text: the byte-level vocabulary.

Standard library only: the card emulator (``terminald.sim.card``) builds its
answers with the same helpers the reader parses them with. Every parser turns
malformed input into :class:`CardUnreadable`, never an ``IndexError`` or a
``UnicodeDecodeError``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from drivers.cards.errors import CardError, CardLocked, CardUnreadable

__all__ = [
    "LOCKED_SWS",
    "NOT_FOUND_SWS",
    "SW_OK",
    "SW_SECURITY",
    "Command",
    "Response",
    "decode_an",
    "decode_bcd",
    "decode_bcd_date",
    "decode_gbk",
    "encode_bcd",
    "encode_padded",
    "encode_tlv",
    "error_for_sw",
    "parse_command",
    "parse_tlv",
]

SW_OK = 0x9000
SW_SECURITY = 0x6982
LOCKED_SWS = frozenset({0x6983, 0x6A81, 0x9303})
NOT_FOUND_SWS = frozenset({0x6A82, 0x6A83})


@dataclass(frozen=True)
class Command:
    """A short (ISO 7816-4) command APDU; ``le`` None means no Le byte, 256 is sent as 00."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def to_bytes(self) -> bytes:
        if not all(0 <= b <= 0xFF for b in (self.cla, self.ins, self.p1, self.p2)):
            raise ValueError("APDU header bytes must be 0..255")
        if len(self.data) > 255:
            raise ValueError("short APDU data is at most 255 bytes")
        out = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            out += bytes((len(self.data),)) + self.data
        if self.le is not None:
            if not 0 < self.le <= 256:
                raise ValueError("Le must be 1..256")
            out += bytes((self.le & 0xFF,))
        return out

    def with_le(self, le: int) -> Command:
        return Command(self.cla, self.ins, self.p1, self.p2, self.data, le)


def parse_command(raw: bytes) -> Command:
    """Parse a short command APDU (cases 1-4); ``ValueError`` when it is not one."""
    if len(raw) < 4:
        raise ValueError("APDU shorter than its header")
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if not body:
        return Command(cla, ins, p1, p2)
    if len(body) == 1:
        return Command(cla, ins, p1, p2, le=body[0] or 256)
    lc = body[0]
    if lc == 0 or len(body) not in (1 + lc, 2 + lc):
        raise ValueError("APDU length byte does not match its body")
    data = body[1 : 1 + lc]
    le = (body[1 + lc] or 256) if len(body) == 2 + lc else None
    return Command(cla, ins, p1, p2, data, le)


@dataclass(frozen=True)
class Response:
    """A response APDU: data then the two status bytes."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK

    @classmethod
    def from_bytes(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise CardUnreadable("the card gave no answer (removed or mute)", retry_allowed=True)
        return cls(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")


def error_for_sw(sw: int, what: str) -> CardError | None:
    """The error a status word means for the API (None for 9000); ``what`` names the step."""
    if sw == SW_OK:
        return None
    if sw in LOCKED_SWS:
        return CardLocked(f"{what}: key or application locked (SW {sw:04X})", sw=sw)
    if sw == SW_SECURITY:
        return CardUnreadable(f"{what}: security condition not satisfied (SW 6982)", sw=sw)
    if sw in NOT_FOUND_SWS:
        return CardUnreadable(f"{what}: file or record not found (SW {sw:04X})", sw=sw)
    if sw & 0xFFF0 == 0x63C0:
        tries = sw & 0x0F
        return CardUnreadable(f"{what}: wrong PIN, {tries} tries left", sw=sw, tries_left=tries)
    return CardUnreadable(f"{what}: unexpected status word {sw:04X}", sw=sw)


def parse_tlv(data: bytes) -> list[tuple[int, bytes]]:
    """Split ``[tag 1B][len 1B][value]`` items; trailing 00/FF padding after the last item is ignored."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF) and not data[pos:].strip(b"\x00\xff"):
            break
        if pos + 2 > len(data):
            raise CardUnreadable("truncated TLV header")
        tag, length = data[pos], data[pos + 1]
        end = pos + 2 + length
        if end > len(data):
            raise CardUnreadable(f"TLV tag {tag:02X} claims {length} bytes, {len(data) - pos - 2} present")
        items.append((tag, bytes(data[pos + 2 : end])))
        pos = end
    return items


def encode_tlv(tag: int, value: bytes) -> bytes:
    if not 0 <= tag <= 0xFF or len(value) > 0xFF:
        raise ValueError("TLV tag and length are one byte each")
    return bytes((tag, len(value))) + value


def decode_bcd(data: bytes) -> str:
    """BCD digits with trailing F nibbles (the ``cn`` padding) removed."""
    digits = data.hex().upper().rstrip("F")
    if not digits.isdigit() and digits:
        raise CardUnreadable("BCD field holds non-decimal nibbles")
    return digits


def encode_bcd(digits: str, length: int) -> bytes:
    if not digits.isdigit() and digits:
        raise ValueError("BCD takes decimal digits only")
    if len(digits) > 2 * length:
        raise ValueError("too many digits for the field")
    return bytes.fromhex(digits.ljust(2 * length, "F"))


def decode_bcd_date(data: bytes) -> str | None:
    """BCD YYYYMMDD as ``YYYY-MM-DD``; an unset field (all F or all 0) is None."""
    if all(b == 0xFF for b in data) or all(b == 0 for b in data):
        return None
    digits = decode_bcd(data)
    if len(digits) != 8:
        raise CardUnreadable("BCD date is not 8 digits")
    try:
        day = _dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError as exc:
        raise CardUnreadable("BCD date is not a calendar date") from exc
    return day.isoformat()


def _strip_pad(data: bytes) -> bytes:
    return bytes(data).rstrip(b"\x00\xff").rstrip(b" ")


def decode_an(data: bytes) -> str:
    """An ``an`` field: printable ASCII right-padded with 00 (some issuers pad FF or spaces)."""
    raw = _strip_pad(data)
    if any(b < 0x20 or b > 0x7E for b in raw):
        raise CardUnreadable("alphanumeric field holds non-printable bytes")
    return raw.decode("ascii")


def decode_gbk(data: bytes) -> str:
    """A GBK text field right-padded with 00."""
    raw = _strip_pad(data)
    try:
        text = raw.decode("gbk")
    except UnicodeDecodeError as exc:
        raise CardUnreadable("text field is not valid GBK") from exc
    if any(not ch.isprintable() for ch in text):
        raise CardUnreadable("text field holds control characters")
    return text


def encode_padded(text: str, length: int, encoding: str = "ascii") -> bytes:
    raw = text.encode(encoding)
    if len(raw) > length:
        raise ValueError(f"{text!r} does not fit in {length} bytes")
    return raw.ljust(length, b"\x00")

"""ESC/POS encoding of receipt content: sanitising, CJK runs, widths, layout,
QR codes and the cut.

Why not python-escpos alone: 3.1 sends whole strings as GB18030 without
entering Chinese mode, makes ``¥`` a 4-byte sequence and passes control bytes
through, so a patient name could open the cash drawer. Here every string is
sanitised and every character is placed deliberately:

- printable ASCII -> itself (1 column);
- a character of the profile's single-byte code page (``¥`` is 0x9D in
  CP437) -> that byte (1 column), except with ``chinese="raw"`` where any byte
  >= 0x80 would start a GBK pair, so ``¥`` becomes ``元``;
- a character with a 2-byte GBK code -> those bytes (2 columns), inside
  ``FS &`` ... ``FS .`` with ``chinese="fs"``, drawn as a bitmap with
  ``chinese="image"``;
- anything else -> ``□`` (visible, and never a broken byte pair).

Widths therefore follow the printer, not the terminal: ``—`` or ``×`` are
2 columns once they are GBK. python-escpos is still used for its profile
database (loaded lazily: it costs ~200 ms and several MB) and image raster
conversion.
"""

from __future__ import annotations

import codecs
import re
import struct
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from drivers.errors import PrintDataError, PrinterConfigError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "CHINESE_MODES",
    "COLUMNS",
    "SUBSTITUTE",
    "EscposWriter",
    "codepage",
    "display_width",
    "sanitise",
    "wrap",
]

ESC, GS, FS, LF = b"\x1b", b"\x1d", b"\x1c", b"\n"
FS_ON, FS_OFF = FS + b"&", FS + b"."
CHINESE_MODES = ("fs", "raw", "image")
COLUMNS = (32, 42, 48)
SUBSTITUTE = "□"
DOTS_PER_COLUMN = 12
QR_MAX_BYTES = 1000
_ALIGN = {"left": 0, "center": 1, "right": 2}
_QR_ECC = {"L": 48, "M": 49, "Q": 50, "H": 51}

# C0 controls except LF, DEL and the C1 range: none may reach the printer
# from data (ESC, GS, FS and DLE start commands).
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


@lru_cache(maxsize=8192)
def _visible(ch: str) -> bool:
    # Zero-width and format characters (combining marks left after NFC,
    # ZWJ, bidi overrides) print nothing or reorder text on screen previews.
    # wcwidth loads at first use: the daemon pays its ~1 MB only when it prints.
    from wcwidth import wcwidth

    return bool(wcwidth(ch) > 0)


def sanitise(value: object, *, single_line: bool = False) -> str:
    """Untrusted text made safe to print: NFC, no control or invisible
    characters; newlines kept unless `single_line` (then spaces)."""
    if value is None:
        return ""
    text = _CONTROL.sub("", unicodedata.normalize("NFC", str(value)))
    if single_line:
        text = text.replace("\n", " ")
    return "".join(ch for ch in text if ch == "\n" or _visible(ch))


@lru_cache(maxsize=32)
def codepage(profile: str) -> tuple[str, int]:
    """(Python codec, ESC t table) used for non-ASCII Latin characters."""
    if profile == "default":
        return "cp437", 0
    try:
        from escpos.capabilities import get_profile

        pages: dict[str, str] = get_profile(profile).profile_data.get("codePages", {})
    except Exception as exc:  # the library raises its own NotSupported or KeyError
        raise PrinterConfigError(f"unknown printer profile {profile!r}") from exc
    for table, name in sorted(pages.items(), key=lambda kv: (kv[1] != "CP437", int(kv[0]))):
        try:
            codec = codecs.lookup(name.lower().replace("_", "-")).name
        except LookupError:
            continue
        if len("é".encode(codec, errors="ignore")) <= 1:
            return codec, int(table)
    return "ascii", 0


@lru_cache(maxsize=16384)
def _glyph(ch: str, chinese: str, codec: str) -> tuple[bool, bytes]:
    """(double width?, bytes) for one sanitised character."""
    o = ord(ch)
    if 0x20 <= o < 0x7F:
        return False, bytes((o,))
    if chinese != "raw":
        try:
            b = ch.encode(codec)
        except UnicodeEncodeError:
            b = b""
        if len(b) == 1 and b[0] >= 0x80:
            return False, b
    if ch == "¥":
        ch = "元"
    try:
        b = ch.encode("gbk")
    except UnicodeEncodeError:
        b = b""
    if len(b) == 2:
        return True, b
    return True, SUBSTITUTE.encode("gbk")


def display_width(text: str, chinese: str = "fs", codec: str = "cp437") -> int:
    """Printed width in columns of already sanitised single-line text."""
    return sum(2 if _glyph(ch, chinese, codec)[0] else 1 for ch in text)


def wrap(text: str, width: int, chinese: str = "fs", codec: str = "cp437") -> list[str]:
    """Lines of at most `width` columns; Latin text breaks at a space when
    one is in the second half of the line, CJK anywhere."""
    width = max(width, 2)
    out: list[str] = []
    for para in text.split("\n"):
        cur: list[str] = []
        used = 0
        for ch in para:
            cw = 2 if _glyph(ch, chinese, codec)[0] else 1
            if used + cw > width and cur:
                line = "".join(cur)
                cut = line.rfind(" ")
                if cut > len(line) // 2:
                    out.append(line[:cut])
                    cur = list(line[cut + 1 :])
                else:
                    out.append(line)
                    cur = []
                used = display_width("".join(cur), chinese, codec)
            cur.append(ch)
            used += cw
        out.append("".join(cur).rstrip())
    return out


class EscposWriter:
    """Builds one receipt's bytes. Every text argument is sanitised here, so
    callers cannot emit a command by accident or by malice."""

    def __init__(
        self, *, columns: int = 48, chinese: str = "fs", profile: str = "default", qr: str = "native"
    ) -> None:
        if columns not in COLUMNS:
            raise PrinterConfigError(f"columns must be one of {COLUMNS}, not {columns!r}")
        if chinese not in CHINESE_MODES:
            raise PrinterConfigError(f"chinese must be one of {CHINESE_MODES}, not {chinese!r}")
        if qr not in ("native", "image"):
            raise PrinterConfigError(f"qr must be 'native' or 'image', not {qr!r}")
        self.columns = columns
        self.chinese = chinese
        self.codec, self._table = codepage(profile) if chinese != "raw" else ("ascii", 0)
        self.qr_mode = qr
        self._buf = bytearray()
        self._size = (1, 1)
        self._align = "left"

    # -- state -----------------------------------------------------------
    def init(self) -> None:
        self._buf += ESC + b"@"
        if self.chinese != "raw":
            self._buf += ESC + b"t" + bytes((self._table,))
        if self.chinese == "fs":
            self._buf += FS_OFF  # some printers power up in Chinese mode
        self._size, self._align = (1, 1), "left"

    def align(self, where: str) -> None:
        if where not in _ALIGN:
            raise PrintDataError(f"align must be one of {sorted(_ALIGN)}, not {where!r}")
        if where != self._align:
            self._buf += ESC + b"a" + bytes((_ALIGN[where],))
            self._align = where

    def bold(self, on: bool) -> None:
        self._buf += ESC + b"E" + (b"\x01" if on else b"\x00")

    def size(self, width: int = 1, height: int = 1) -> None:
        if not (1 <= width <= 8 and 1 <= height <= 8):
            raise PrintDataError(f"character size {width}x{height} is outside 1..8")
        if (width, height) != self._size:
            self._buf += GS + b"!" + bytes((((width - 1) << 4) | (height - 1),))
            self._size = (width, height)

    @property
    def width(self) -> int:
        """Columns available at the current character width."""
        return self.columns // self._size[0]

    # -- text ------------------------------------------------------------
    def measure(self, text: str) -> int:
        return display_width(text, self.chinese, self.codec)

    def _encode(self, text: str) -> bytes:
        out = bytearray()
        cjk = False
        for ch in text:
            double, b = _glyph(ch, self.chinese, self.codec)
            if self.chinese == "fs" and double != cjk:
                out += FS_ON if double else FS_OFF
                cjk = double
            out += b
        if cjk:
            out += FS_OFF
        return bytes(out)

    def _emit(self, line: str) -> None:
        if self.chinese == "image" and any(_glyph(ch, "image", self.codec)[0] for ch in line):
            from .render import text_image

            cols = [2 if _glyph(ch, "image", self.codec)[0] else 1 for ch in line]
            self.image(text_image(line, cols, self.width, self._align, self._size))
            return
        self._buf += self._encode(line) + LF

    def line(self, text: object = "", *, align: str | None = None) -> None:
        """Text wrapped to the paper width; newlines in it start new lines."""
        if align is not None:
            self.align(align)
        for part in wrap(sanitise(text), self.width, self.chinese, self.codec):
            self._emit(part)

    def pair(self, left: object, right: object) -> None:
        """`left` flush left and `right` flush right on one line, wrapping
        `left` when both do not fit."""
        self.align("left")
        lt, rt = sanitise(left, single_line=True), sanitise(right, single_line=True)
        rw = self.measure(rt)
        lines = wrap(lt, self.width, self.chinese, self.codec)
        last = lines[-1]
        if self.measure(last) + 1 + rw > self.width:
            lines.append("")
            last = ""
        for part in lines[:-1]:
            self._emit(part)
        self._emit(last + " " * (self.width - self.measure(last) - rw) + rt)

    def row(self, cells: Sequence[object], widths: Sequence[int], aligns: str) -> None:
        """A table row: each cell wrapped inside its column, `aligns` one of
        l/r/c per cell; columns are separated by the spaces in `widths`."""
        if not (len(cells) == len(widths) == len(aligns)) or sum(widths) > self.width:
            raise PrintDataError("row cells, widths and aligns do not match the paper width")
        self.align("left")
        wrapped = [
            wrap(sanitise(c, single_line=True), w, self.chinese, self.codec)
            for c, w in zip(cells, widths, strict=True)
        ]
        for i in range(max(len(w) for w in wrapped)):
            parts = []
            for col, w, a in zip(wrapped, widths, aligns, strict=True):
                text = col[i] if i < len(col) else ""
                pad = w - self.measure(text)
                parts.append(
                    " " * pad + text
                    if a == "r"
                    else " " * (pad // 2) + text + " " * (pad - pad // 2)
                    if a == "c"
                    else text + " " * pad
                )
            self._emit("".join(parts).rstrip())

    def rule(self, char: str = "-") -> None:
        self.align("left")
        ch = sanitise(char, single_line=True)[:1] or "-"
        self._emit(ch * (self.width // self.measure(ch)))

    # -- graphics, paper -------------------------------------------------
    def qr(self, data: object, *, module: int = 6, ecc: str = "M") -> None:
        payload = sanitise(data, single_line=True).encode("utf-8")
        if not payload or len(payload) > QR_MAX_BYTES:
            raise PrintDataError(f"QR payload must be 1..{QR_MAX_BYTES} bytes, not {len(payload)}")
        if not 1 <= module <= 16 or ecc not in _QR_ECC:
            raise PrintDataError(f"bad QR module size {module} or error correction {ecc!r}")
        if self.qr_mode == "image":
            import qrcode

            code = qrcode.QRCode(box_size=module, border=1, error_correction=_qr_level(ecc))
            code.add_data(payload)
            self.image(code.make_image().get_image())
            return
        n = len(payload) + 3
        self._buf += GS + b"(k\x04\x00\x31\x41\x32\x00"  # model 2
        self._buf += GS + b"(k\x03\x00\x31\x43" + bytes((module,))
        self._buf += GS + b"(k\x03\x00\x31\x45" + bytes((_QR_ECC[ecc],))
        self._buf += GS + b"(k" + struct.pack("<H", n) + b"\x31\x50\x30" + payload
        self._buf += GS + b"(k\x03\x00\x31\x51\x30"

    def image(self, img: Image) -> None:
        """A bitmap, as one `GS v 0` raster block (1 = black dot)."""
        from escpos.image import EscposImage

        im = EscposImage(img)
        if im.width_bytes > 0xFFFF or im.height > 0xFFFF:
            raise PrintDataError("image too large")
        self._buf += GS + b"v0\x00" + struct.pack("<HH", im.width_bytes, im.height) + im.to_raster_format()

    def feed(self, lines: int = 1) -> None:
        self._buf += ESC + b"d" + bytes((max(0, min(lines, 255)),))

    def cut(self, *, feed: int = 3) -> None:
        """Feed `feed` lines past the cutter and cut (partial cut)."""
        self._buf += GS + b"VB" + bytes((max(0, min(feed, 255)),))

    def getvalue(self) -> bytes:
        return bytes(self._buf)


def _qr_level(ecc: str) -> Any:
    from qrcode import constants

    return getattr(constants, f"ERROR_CORRECT_{ecc}")

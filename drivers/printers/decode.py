"""Decoder of the ESC/POS subset terminald emits, for previews, the printer
emulator and tests.

`tokenize` splits a byte stream into commands and text runs (it knows the
length of every common ESC/POS command, so payloads such as QR data or raster
bits are never mistaken for commands). `decode` interprets the tokens into
printed lines. Unknown or truncated commands are kept as tokens, never raised:
a test can then prove a stream holds only the commands it expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Cut", "Document", "QrCode", "Raster", "Span", "TextLine", "Token", "decode", "tokenize"]

Token = tuple[str, bytes]  # (name, raw bytes); name "text" for printable runs

_CODEPAGES = {0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 16: "cp1252", 17: "cp866"}
_ALIGNS = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}
_CONTROLS = frozenset([*range(0x20), 0x7F])


@dataclass(frozen=True)
class Span:
    text: str
    double: bool  # every character two columns wide (GBK)
    width: int = 1
    height: int = 1
    bold: bool = False

    @property
    def cols(self) -> int:
        """Printed columns at size 1."""
        return len(self.text) * (2 if self.double else 1)


@dataclass
class TextLine:
    spans: list[Span] = field(default_factory=list)
    align: str = "left"

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.spans)

    @property
    def cols(self) -> int:
        return sum(s.cols * s.width for s in self.spans)

    @property
    def height(self) -> int:
        return max((s.height for s in self.spans), default=1)


@dataclass(frozen=True)
class QrCode:
    data: bytes
    module: int
    align: str


@dataclass(frozen=True)
class Raster:
    width_bytes: int
    height: int
    bits: bytes
    align: str


@dataclass(frozen=True)
class Cut:
    feed: int = 0


Item = TextLine | QrCode | Raster | Cut


@dataclass
class Document:
    items: list[Item] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # every non-text token, in order

    def text(self, columns: int = 48) -> str:
        """The printout as text, alignment applied, one line per printed line."""
        out: list[str] = []
        for item in self.items:
            if isinstance(item, TextLine):
                out.append(_aligned(item.text, item.cols, item.align, columns))
            elif isinstance(item, QrCode):
                label = f"[QR {item.data.decode('utf-8', 'replace')}]"
                out.append(_aligned(label, len(label), item.align, columns))
            elif isinstance(item, Raster):
                label = f"[image {item.width_bytes * 8}x{item.height}]"
                out.append(_aligned(label, len(label), item.align, columns))
            else:
                out.append("- " * (columns // 2) if columns > 1 else "-")
        return "\n".join(line.rstrip() for line in out)

    def jobs(self) -> list[Document]:
        """Split at each cut: one document per receipt."""
        docs: list[Document] = []
        cur = Document()
        for item in self.items:
            cur.items.append(item)
            if isinstance(item, Cut):
                docs.append(cur)
                cur = Document()
        if cur.items and any(not (isinstance(i, TextLine) and not i.spans) for i in cur.items):
            docs.append(cur)
        return docs


def _aligned(text: str, cols: int, align: str, columns: int) -> str:
    room = columns - cols
    if room <= 0 or align == "left":
        return text
    return " " * (room // 2 if align == "center" else room) + text


# -- tokenizer -------------------------------------------------------------
def _fixed(n: int) -> Callable[[bytes, int], int | None]:
    return lambda data, i: n


def _gs_paren(data: bytes, i: int) -> int | None:  # GS ( fn pL pH ...
    if i + 5 > len(data):
        return None
    return 5 + data[i + 3] + 256 * data[i + 4]


def _gs_v0(data: bytes, i: int) -> int | None:  # GS v 0 m xL xH yL yH data
    if i + 8 > len(data):
        return None
    x = data[i + 4] + 256 * data[i + 5]
    y = data[i + 6] + 256 * data[i + 7]
    return 8 + x * y


def _gs_v(data: bytes, i: int) -> int | None:  # GS V m [n]
    if i + 3 > len(data):
        return None
    return 4 if data[i + 2] in (65, 66, 97, 98, 103, 104) else 3


def _esc_star(data: bytes, i: int) -> int | None:  # ESC * m nL nH data
    if i + 5 > len(data):
        return None
    k = 1 if data[i + 2] in (0, 1) else 3
    return 5 + k * (data[i + 3] + 256 * data[i + 4])


def _until_nul(start: int) -> Callable[[bytes, int], int | None]:
    def length(data: bytes, i: int) -> int | None:
        end = data.find(b"\x00", i + start)
        return None if end < 0 else end - i + 1

    return length


def _gs_k(data: bytes, i: int) -> int | None:  # GS k m ... (barcode)
    if i + 3 > len(data):
        return None
    if data[i + 2] <= 6:
        return _until_nul(3)(data, i)
    return None if i + 4 > len(data) else 4 + data[i + 3]


_ESC: dict[int, Callable[[bytes, int], int | None]] = {
    **{c: _fixed(3) for c in b" !-3=EGJMRTUVadert{"},
    **{c: _fixed(2) for c in b"2<@LS"},
    ord("p"): _fixed(5),
    ord("$"): _fixed(4),
    ord("\\"): _fixed(4),
    ord("*"): _esc_star,
    ord("D"): _until_nul(2),
    ord("c"): _fixed(4),
}
_GS: dict[int, Callable[[bytes, int], int | None]] = {
    **{c: _fixed(3) for c in b"!BHIafhwrb"},
    ord("("): _gs_paren,
    ord("v"): _gs_v0,
    ord("V"): _gs_v,
    ord("L"): _fixed(4),
    ord("W"): _fixed(4),
    ord("k"): _gs_k,
}
_FS: dict[int, Callable[[bytes, int], int | None]] = {
    ord("&"): _fixed(2),
    ord("."): _fixed(2),
    ord("!"): _fixed(3),
    ord("-"): _fixed(3),
    ord("C"): _fixed(3),
    ord("W"): _fixed(3),
    ord("S"): _fixed(4),
    ord("p"): _fixed(4),
    ord("2"): _fixed(77),
    ord("("): _gs_paren,
}
_DLE: dict[int, Callable[[bytes, int], int | None]] = {
    0x04: _fixed(3),
    0x05: _fixed(3),
    0x14: _fixed(5),
}
_PREFIX = {0x1B: ("ESC", _ESC), 0x1D: ("GS", _GS), 0x1C: ("FS", _FS), 0x10: ("DLE", _DLE)}
_SINGLE = {0x0A: "LF", 0x0D: "CR", 0x09: "HT", 0x0C: "FF"}


def _name(prefix: str, data: bytes, i: int) -> str:
    second = data[i + 1]
    label = chr(second) if 0x20 < second < 0x7F else f"{second:02X}"
    if prefix == "DLE" and second == 0x04:
        label = "EOT"
    elif prefix == "DLE" and second == 0x14:
        label = "DC4"
    if second == ord("(") and i + 2 < len(data):
        label += f" {chr(data[i + 2]) if 0x20 < data[i + 2] < 0x7F else data[i + 2]}"
    elif prefix == "GS" and second == ord("v") and i + 2 < len(data):
        label += " " + chr(data[i + 2]) if 0x20 < data[i + 2] < 0x7F else ""
    return f"{prefix} {label}"


def tokenize(data: bytes, *, final: bool = True) -> tuple[list[Token], int]:
    """Tokens of `data` and how many bytes they cover. With `final=False`
    (streaming) an incomplete command or a trailing text run, which may end
    inside a GBK pair, is left unconsumed for the next call."""
    tokens: list[Token] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b not in _CONTROLS:
            j = i
            while j < n and data[j] not in _CONTROLS:
                j += 1
            if j == n and not final:
                break
            tokens.append(("text", data[i:j]))
            i = j
            continue
        if b in _PREFIX:
            prefix, table = _PREFIX[b]
            if i + 1 >= n:
                if not final:
                    break
                tokens.append(("truncated", data[i:]))
                break
            rule = table.get(data[i + 1])
            length = rule(data, i) if rule else 2
            if length is None or i + length > n:
                if not final:
                    break
                tokens.append(("truncated", data[i:]))
                break
            name = _name(prefix, data, i) if rule else f"{prefix} ?{data[i + 1]:02X}"
            tokens.append((name, data[i : i + length]))
            i += length
            continue
        tokens.append((_SINGLE.get(b, f"CTRL {b:02X}"), data[i : i + 1]))
        i += 1
    return tokens, i


# -- interpreter -----------------------------------------------------------
def _text(raw: bytes, chinese: bool, codec: str) -> list[tuple[str, bool]]:
    """(text, double width) runs of one text token."""
    if not chinese:
        return [(raw.decode(codec, "replace"), False)]
    runs: list[tuple[str, bool]] = []
    i = 0
    while i < len(raw):
        b = raw[i]
        if b >= 0x81 and i + 1 < len(raw):
            ch, double = raw[i : i + 2].decode("gbk", "replace")[:1], True
            i += 2
        else:
            ch, double = (chr(b) if b < 0x80 else "\ufffd"), False
            i += 1
        if runs and runs[-1][1] == double:
            runs[-1] = (runs[-1][0] + ch, double)
        else:
            runs.append((ch, double))
    return runs


def decode(data: bytes, *, chinese: str | None = None) -> Document:
    """Interpret `data` into printed items. `chinese="raw"` treats the printer
    as always in Chinese mode; by default that is assumed only for a stream
    that never switches modes nor selects a code page (what raw mode emits)."""
    tokens, _ = tokenize(data)
    names = {name for name, _ in tokens}
    if chinese is None:
        chinese = "raw" if not names & {"FS &", "FS .", "ESC t"} else "fs"
    always = chinese == "raw"
    doc = Document()
    line = TextLine()
    cjk, codec, align, bold, size = always, "cp437", "left", False, (1, 1)
    qr_data, qr_module = b"", 3

    def flush(force: bool) -> None:
        nonlocal line
        if force or line.spans:
            line.align = align if line.spans else line.align
            doc.items.append(line)
        line = TextLine(align=align)

    for name, raw in tokens:
        if name == "text":
            for text, double in _text(raw, cjk, codec):
                line.spans.append(Span(text, double, size[0], size[1], bold))
            line.align = align
            continue
        doc.commands.append(name)
        if name == "LF":
            flush(True)
        elif name == "ESC @":
            cjk, codec, align, bold, size = always, "cp437", "left", False, (1, 1)
        elif name == "ESC a":
            align = _ALIGNS.get(raw[2], "left")
        elif name == "ESC E":
            bold = bool(raw[2] & 1)
        elif name == "ESC t":
            codec = _CODEPAGES.get(raw[2], "cp437")
        elif name == "GS !":
            size = ((raw[2] >> 4) + 1, (raw[2] & 0x0F) + 1)
        elif name == "FS &":
            cjk = True
        elif name == "FS .":
            cjk = always
        elif name == "ESC d":
            flush(False)
            doc.items.extend(TextLine(align=align) for _ in range(max(raw[2] - 1, 0)))
        elif name == "GS V":
            flush(False)
            doc.items.append(Cut(raw[3] if len(raw) > 3 else 0))
        elif name == "GS ( k" and len(raw) >= 8 and raw[5] == 0x31:
            fn, arg = raw[6], raw[7:]
            if fn == 0x43 and arg:
                qr_module = arg[0]
            elif fn == 0x50:
                qr_data = arg[1:]
            elif fn == 0x51:
                flush(False)
                doc.items.append(QrCode(qr_data, qr_module, align))
        elif name == "GS v 0":
            flush(False)
            xb, y = raw[4] + 256 * raw[5], raw[6] + 256 * raw[7]
            doc.items.append(Raster(xb, y, raw[8:], align))
    flush(False)
    return doc

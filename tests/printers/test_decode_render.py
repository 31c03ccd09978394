"""Decoder and PNG renderer shared by the preview transport and the emulator."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from drivers.printers.decode import Cut, Raster, TextLine, decode, tokenize
from drivers.printers.escpos import EscposWriter
from drivers.printers.render import find_font, render_png


def sample() -> bytes:
    w = EscposWriter(columns=32)
    w.init()
    w.align("center")
    w.size(2, 2)
    w.line("药房")
    w.size(1, 1)
    w.bold(True)
    w.line("Total ¥12.00 合计")
    w.qr("tx-1")
    w.cut()
    return w.getvalue()


def test_decode_items_and_attributes() -> None:
    doc = decode(sample())
    lines = [i for i in doc.items if isinstance(i, TextLine)]
    assert lines[0].text == "药房" and lines[0].align == "center" and lines[0].cols == 8
    assert lines[0].spans[0].width == 2 and lines[0].spans[0].height == 2
    assert lines[1].text == "Total ¥12.00 合计" and all(s.bold for s in lines[1].spans)
    assert isinstance(doc.items[-1], Cut)
    assert doc.text(32).splitlines()[:2] == ["            药房", "       Total ¥12.00 合计"]


@settings(max_examples=60)
@given(st.lists(st.integers(1, 40), max_size=6))
def test_streaming_tokenizer_matches_one_shot(cuts: list[int]) -> None:
    data = sample() * 2
    whole, used = tokenize(data)
    assert used == len(data)
    got: list[tuple[str, bytes]] = []
    buf = b""
    pos = 0
    for c in [*cuts, len(data)]:
        buf += data[pos : pos + c]
        pos += c
        toks, n = tokenize(buf, final=pos >= len(data))
        got += toks
        buf = buf[n:]
    # Text runs may be split differently; commands and bytes must agree.
    assert b"".join(r for _, r in got) == data
    assert [n for n, _ in got if n != "text"] == [n for n, _ in whole if n != "text"]


@given(st.binary(max_size=300))
def test_decoder_accepts_any_bytes(data: bytes) -> None:
    doc = decode(data)
    doc.text(48)
    for item in doc.items:
        assert isinstance(item, TextLine | Raster | Cut) or hasattr(item, "data")


def test_truncated_and_unknown_commands_are_reported_not_raised() -> None:
    assert [n for n, _ in tokenize(b"\x1d(k\x10\x00ab")[0]] == ["truncated"]
    assert decode(b"\x1b\x01x\x07").commands == ["ESC ?01", "CTRL 07"]


def test_png_render() -> None:
    png = render_png(decode(sample()), 32)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.width == 32 * 12 + 24
    # Something was drawn: not a blank page.
    assert img.convert("L").getextrema()[0] == 0
    assert render_png(sample(), 32) == png


def test_image_mode_round_trips_to_a_raster() -> None:
    w = EscposWriter(columns=32, chinese="image")
    w.line("中文 ok")
    w.line("latin only")
    doc = decode(w.getvalue())
    assert isinstance(doc.items[0], Raster) and doc.items[0].width_bytes == 32 * 12 // 8
    assert doc.text(32).splitlines()[1] == "latin only"
    render_png(doc, 32)


def test_font_found() -> None:
    assert find_font() is None or find_font().endswith((".ttc", ".ttf", ".otf"))  # type: ignore[union-attr]

"""Receipt pictures: a decoded ESC/POS document drawn as the printer would
print it (80 mm head, 12x24-dot half-width cells), and single text lines as
bitmaps for printers without a CJK font (``chinese="image"``).

Pillow and the font are loaded on first use only. The font is a CJK one
found in known places or through ``fc-match``; without any, Pillow's built-in
font keeps previews working (CJK then shows as boxes).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .decode import Cut, Document, QrCode, Raster, TextLine

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["find_font", "render_image", "render_png", "text_image"]

CELL_W, CELL_H, GAP, MARGIN = 12, 24, 6, 12
FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


@lru_cache(maxsize=1)
def find_font() -> str | None:
    """Path of a font with Chinese glyphs, or None."""
    for path in FONT_PATHS:
        if Path(path).is_file():
            return path
    exe = shutil.which("fc-match")
    if exe:
        try:
            out = subprocess.run(
                [exe, "-f", "%{file}", ":lang=zh-cn"], capture_output=True, text=True, timeout=5, check=False
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and Path(out).is_file():
            return out
    return None


@lru_cache(maxsize=8)
def _font(px: int) -> Any:
    from PIL import ImageFont

    path = find_font()
    if path:
        try:
            return ImageFont.truetype(path, px)
        except OSError:
            pass  # unreadable font file: fall back to the built-in one
    return ImageFont.load_default(size=px)


def _draw_cells(draw: Any, x: int, y: int, text: str, cols: list[int]) -> None:
    """One glyph per cell so columns line up exactly as on paper."""
    font = _font(CELL_H - 2)
    for ch, w in zip(text, cols, strict=True):
        if ch != " ":
            draw.text((x + (w * CELL_W) // 2, y + CELL_H // 2), ch, font=font, fill=0, anchor="mm")
        x += w * CELL_W


def _line_image(line: TextLine) -> Image:
    from PIL import Image as PILImage
    from PIL import ImageDraw

    width = max(line.cols, 1) * CELL_W
    img = PILImage.new("L", (width, line.height * CELL_H), 255)
    x = 0
    for span in line.spans:
        cell = PILImage.new("L", (max(span.cols, 1) * CELL_W, CELL_H), 255)
        _draw_cells(ImageDraw.Draw(cell), 0, 0, span.text, [2 if span.double else 1] * len(span.text))
        if span.width != 1 or span.height != 1:
            cell = cell.resize((cell.width * span.width, CELL_H * span.height))
        img.paste(cell, (x, img.height - cell.height))
        x += cell.width
    return img


def _qr_image(item: QrCode) -> Image:
    import qrcode

    code = qrcode.QRCode(box_size=max(item.module, 1), border=0)
    code.add_data(item.data)
    img: Image = code.make_image().get_image().convert("L")
    return img


def _raster_image(item: Raster) -> Image:
    from PIL import Image as PILImage
    from PIL import ImageOps

    size = (item.width_bytes * 8, item.height)
    bits = item.bits.ljust(item.width_bytes * item.height, b"\x00")
    return ImageOps.invert(PILImage.frombytes("1", size, bits).convert("L"))


def render_image(doc: Document, columns: int = 48) -> Image:
    """The whole document as one greyscale image."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    paper = columns * CELL_W
    blocks: list[tuple[Image | None, str]] = []
    for item in doc.items:
        if isinstance(item, TextLine):
            blocks.append((_line_image(item) if item.spans else None, item.align))
        elif isinstance(item, QrCode):
            blocks.append((_qr_image(item), item.align))
        elif isinstance(item, Raster):
            blocks.append((_raster_image(item), item.align))
        elif isinstance(item, Cut):
            blocks.append((None, "cut"))
    height = MARGIN * 2 + sum((b.height if b is not None else CELL_H) + GAP for b, _ in blocks)
    page = PILImage.new("L", (paper + 2 * MARGIN, height), 255)
    draw = ImageDraw.Draw(page)
    y = MARGIN
    for block, align in blocks:
        if align == "cut":
            for x in range(0, page.width, 16):
                draw.line((x, y + CELL_H // 2, x + 8, y + CELL_H // 2), fill=0, width=2)
        if block is None:
            y += CELL_H + GAP
            continue
        room = max(paper - block.width, 0)
        x = MARGIN + {"center": room // 2, "right": room}.get(align, 0)
        page.paste(block.crop((0, 0, min(block.width, paper), block.height)), (x, y))
        y += block.height + GAP
    return page


def render_png(doc: Document | bytes, columns: int = 48) -> bytes:
    """PNG of a decoded document, or of raw ESC/POS bytes."""
    if isinstance(doc, bytes | bytearray):
        from .decode import decode

        doc = decode(bytes(doc))
    buf = io.BytesIO()
    render_image(doc, columns).save(buf, format="PNG")
    return buf.getvalue()


def text_image(line: str, cols: list[int], width: int, align: str, size: tuple[int, int]) -> Image:
    """One text line as a 1-bit bitmap `width` columns wide at `size`
    (already divided by the width factor), for ``chinese="image"``. `cols`
    gives each character's columns (1, or 2 for a double-width glyph): the
    encoder decides that, so this module never imports it."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    used = sum(cols)
    room = max(width - used, 0)
    offset = {"center": room // 2, "right": room}.get(align, 0)
    img = PILImage.new("L", (width * CELL_W, CELL_H), 255)
    _draw_cells(ImageDraw.Draw(img), offset * CELL_W, 0, line, cols)
    if size != (1, 1):
        img = img.resize((img.width * size[0], CELL_H * size[1]))
    return img.convert("1")

"""Each document in each state, in both languages, at 32/42/48 columns, decoded
back to text, against the goldens in tests/receipts/golden/ (`<state>-<W>.txt`,
`<state>_en-<W>.txt`). Regenerate after a deliberate change with
UPDATE_GOLDENS=1 and review the diff line by line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from drivers.printers.decode import Cut, QrCode, decode
from drivers.printers.escpos import display_width
from terminald.receipts.templates import render_receipt

from .samples import DOCUMENTS

GOLDEN = Path(__file__).parent / "golden"
WIDTHS = (32, 42, 48)


def render(name: str, columns: int, chinese: str = "fs") -> bytes:
    tx, extra = DOCUMENTS[name]
    kwargs: dict[str, Any] = {"language": "zh-CN", **extra}
    return render_receipt(
        tx, institution="示例大药房", terminal_id="T0001", columns=columns, chinese=chinese, **kwargs
    )


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_golden(name: str, columns: int) -> None:
    text = decode(render(name, columns)).text(columns) + "\n"
    path = GOLDEN / f"{name}-{columns}.txt"
    if os.environ.get("UPDATE_GOLDENS") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_no_line_overflows_and_one_cut_one_qr(name: str, columns: int) -> None:
    doc = decode(render(name, columns))
    for item in doc.items:  # at the printed size: the golden text cannot show double width
        if hasattr(item, "cols"):
            assert item.cols <= columns, item
    assert sum(isinstance(i, Cut) for i in doc.items) == 1
    assert isinstance(doc.items[-1], Cut)
    qrs = [i for i in doc.items if isinstance(i, QrCode)]
    assert [q.data.decode() for q in qrs] == [DOCUMENTS[name][0]["id"]]


@pytest.mark.parametrize("chinese", ["raw", "image"])
def test_other_chinese_modes_decode_to_the_same_layout(chinese: str) -> None:
    fs = decode(render("offline", 42)).text(42)
    other = decode(render("offline", 42, chinese), chinese=chinese).text(42)
    if chinese == "raw":
        # No single-byte code page in Chinese mode: ¥ becomes 元 (2 columns).
        assert "¥" not in other and "元37.80" in other
        same = [ln for ln in fs.splitlines() if "¥" not in ln]
        assert all(ln in other.splitlines() for ln in same)
    else:
        # Lines with Chinese are bitmaps; the Latin-only lines stay text.
        assert "[image 504x" in other
        latin = [ln for ln in fs.splitlines() if all(ord(c) < 0x80 for c in ln)]
        assert latin and all(ln in other.splitlines() for ln in latin)


def _placeholder(line: str) -> bool:
    """The decoder's stand-in for a picture (the QR code, a bitmap line): not printed text."""
    return line.lstrip().startswith(("[QR ", "[image "))


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_golden_line_fits_the_paper(name: str, columns: int) -> None:
    """Measured with the encoder's own width function (CJK, GBK punctuation 2 columns)."""
    lines = (GOLDEN / f"{name}-{columns}.txt").read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        if not _placeholder(line):
            assert display_width(line) <= columns, f"{name}-{columns}: {line!r} is {display_width(line)} columns"


def test_every_golden_belongs_to_a_sample() -> None:
    expected = {f"{name}-{columns}.txt" for name in DOCUMENTS for columns in WIDTHS}
    assert {p.name for p in GOLDEN.glob("*.txt")} == expected

"""The encoder: sanitising, CJK runs, widths, sizes, QR, config errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import PrintDataError, PrinterConfigError
from drivers.printers.decode import QrCode, decode
from drivers.printers.escpos import EscposWriter, codepage, display_width, sanitise, wrap


def test_sanitise_removes_controls_c1_and_invisibles() -> None:
    assert sanitise("a\x1bp\x00\x19b\x9bc\u200bd\u202ee\r\nf") == "apbcde\nf"
    assert sanitise("a\nb", single_line=True) == "a b"
    assert sanitise(None) == ""
    assert sanitise(12) == "12"
    assert sanitise("e\u0301") == "é"  # NFC first, so the accent is not dropped


@given(st.text())
def test_sanitised_text_never_contains_control_characters(s: str) -> None:
    out = sanitise(s)
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in out)


def _body(w: EscposWriter) -> bytes:
    return w.getvalue()


def test_cjk_runs_are_wrapped_in_fs_and_encoded_gbk() -> None:
    w = EscposWriter(columns=32)
    w.line("药ab房")
    assert _body(w) == b"\x1c&" + "药".encode("gbk") + b"\x1c.ab\x1c&" + "房".encode("gbk") + b"\x1c.\n"


def test_raw_mode_has_no_mode_switches_and_yen_is_yuan() -> None:
    w = EscposWriter(columns=32, chinese="raw")
    w.line("¥5 药")
    assert _body(w) == "元".encode("gbk") + b"5 " + "药".encode("gbk") + b"\n"


def test_yen_is_one_byte_in_cp437_never_four() -> None:
    w = EscposWriter(columns=32)
    w.line("¥")
    assert _body(w) == b"\x9d\n"
    assert "¥".encode("gb18030") not in _body(w)


@pytest.mark.parametrize("ch", ["😀", "𠀀", "€", "\U0010fffd"])
def test_characters_without_two_byte_gbk_get_a_visible_substitute(ch: str) -> None:
    w = EscposWriter(columns=32)
    w.line(f"a{ch}b")
    data = _body(w)
    assert "□".encode("gbk") in data
    assert decode(data).text(32) == "a□b"


def test_widths_follow_the_printer() -> None:
    assert display_width("abc") == 3
    assert display_width("药房") == 4
    assert display_width("—×") == 4  # GBK glyphs are full width on paper
    assert display_width("¥é") == 2
    assert display_width("¥", chinese="raw") == 2


@given(st.text(alphabet=st.sampled_from("药房ab ¥—x1"), max_size=120), st.sampled_from([32, 42, 48]))
def test_wrap_never_exceeds_width_and_keeps_text(text: str, width: int) -> None:
    lines = wrap(text, width)
    assert all(display_width(ln) <= width for ln in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_sizes_halve_the_columns_and_use_gs_bang() -> None:
    w = EscposWriter(columns=48)
    w.size(2, 2)
    assert w.width == 24
    w.line("药" * 13)
    data = _body(w)
    assert data.startswith(b"\x1d!\x11") and b"\x1b!" not in data
    assert decode(data).text(48).count("\n") == 1  # 26 columns wrapped at 24


def test_pair_and_row_layout() -> None:
    w = EscposWriter(columns=32)
    w.pair("合计", "¥12.00")
    w.row(["阿莫西林胶囊胶囊", "2", "12.50"], [12, 8, 12], "lrr")
    lines = decode(_body(w)).text(32).splitlines()
    assert lines[0] == "合计" + " " * 22 + "¥12.00"
    assert lines[1] == "阿莫西林胶囊       2       12.50"
    assert lines[2] == "胶囊"


def test_qr_native_and_image() -> None:
    w = EscposWriter(columns=42)
    w.qr("tx-1\x1b@")
    doc = decode(_body(w))
    assert [i for i in doc.items if isinstance(i, QrCode)] == [QrCode(b"tx-1@", 6, "left")]
    w = EscposWriter(columns=42, qr="image")
    w.qr("tx-1")
    assert decode(_body(w)).commands == ["GS v 0"]


@pytest.mark.parametrize("payload", ["", "x" * 1001])
def test_qr_payload_limits(payload: str) -> None:
    with pytest.raises(PrintDataError):
        EscposWriter().qr(payload)


@pytest.mark.parametrize(
    "kwargs", [{"columns": 40}, {"chinese": "gb18030"}, {"qr": "ascii"}, {"profile": "no-such-printer"}]
)
def test_bad_configuration_is_a_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(PrinterConfigError):
        EscposWriter(**kwargs)  # type: ignore[arg-type]


def test_profile_codepage_from_the_printer_database() -> None:
    assert codepage("default") == ("cp437", 0)
    codec, table = codepage("TM-T88V")
    assert codec == "cp437" and table == 0


def test_bad_size_and_align() -> None:
    w = EscposWriter()
    with pytest.raises(PrintDataError):
        w.size(9, 1)
    with pytest.raises(PrintDataError):
        w.align("middle")

"""Messages from the platform are masked before they are stored or shown."""

from __future__ import annotations

import pytest

from terminald.upstream.nhsa.redact import MAX_MESSAGE, mask_text


@pytest.mark.parametrize(("text", "kept", "gone"), [
    ("身份证号110101199003071234的人员已冻结", "110101********1234", "110101199003071234"),
    ("证件11010119900307123X无效", "110101********123X", "11010119900307123X"),
    ("旧证110101900307123不符", "110101*****7123", "110101900307123"),
    ("卡号A12345678已挂失", "A1*****78", "A12345678"),
    ("手机13812345678", "13*******78", "13812345678"),
])
def test_identity_numbers_and_long_numbers_are_masked(text: str, kept: str, gone: str) -> None:
    masked = mask_text(text)
    assert kept in masked and gone not in masked


@pytest.mark.parametrize("text", ["系统繁忙,请稍后再试", "金额123.45超过限额", "日期2026-03-15", "infno 2102",
                                  "起付线20260315", "Exception: NullPointer"])
def test_ordinary_text_is_kept(text: str) -> None:
    assert mask_text(text) == text


def test_known_strings_of_the_person() -> None:
    masked = mask_text("张三丰,卡ABC123,证110101199003071234", known=("张三丰", "ABC123", "110101199003071234", "x"))
    assert masked == "张*丰,卡AB**23,证110101********1234"


def test_none_numbers_and_length() -> None:
    assert mask_text(None) == ""
    assert mask_text(404) == "404"
    assert len(mask_text("繁" * 2000)) == MAX_MESSAGE

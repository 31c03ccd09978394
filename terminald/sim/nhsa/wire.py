"""The platform's wire formats: yuan amounts <-> integer fen, times, msgid, the answer's JSON.

Amounts are never floats here: a request body is parsed with ``parse_float=Decimal`` and an
amount is accepted only when it is a whole number of fen (``12.30`` and ``12.300`` yes,
``12.305`` no), as a string or a number; answers write yuan with exactly two
decimals, as JSON numbers (``12.30``) or strings (``"12.30"``), per the ``amounts_as`` setting.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "CST",
    "Rejected",
    "Yuan",
    "decimal_from_wire",
    "dumps",
    "fen_from_wire",
    "msgid_problem",
    "parse_body",
    "parse_date",
    "parse_time",
    "stamp17",
    "wire_time",
    "yuan_text",
]

CST = timezone(timedelta(hours=8), "CST")  # the platform's clock: Beijing time
_AMOUNT = re.compile(r"-?\d{1,14}(\.\d{1,8})?")  # exactness (whole fen) is checked after
_DECIMAL = re.compile(r"-?\d{1,16}(\.\d{1,6})?")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class Rejected(Exception):
    """A definite refusal: the call is answered ``infcode -1`` with this message and changes nothing."""

    def __init__(self, err_msg: str, fault: str | None = None) -> None:
        super().__init__(err_msg)
        self.err_msg = err_msg
        self.fault = fault


@dataclass(frozen=True)
class Yuan:
    """An amount in an answer; written as yuan with two decimals."""

    fen: int


def yuan_text(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def fen_from_wire(value: Any, field: str, *, signed: bool = False) -> int:
    """An amount as sent (string, integer, or a JSON number parsed as Decimal) -> integer fen, exactly."""
    if isinstance(value, bool) or value is None:
        raise Rejected(f"{field}金额格式错误")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str) and _AMOUNT.fullmatch(value):
        amount = Decimal(value)
    else:
        raise Rejected(f"{field}金额格式错误：{str(value)[:20]}")
    if not amount.is_finite() or (amount * 100) != (amount * 100).to_integral_value():
        raise Rejected(f"{field}金额最多两位小数：{amount}")
    if amount < 0 and not signed:
        raise Rejected(f"{field}金额不能为负数")
    return int(amount * 100)


def decimal_from_wire(value: Any, field: str) -> Decimal:
    """A quantity or unit price (up to 6 decimals), exactly."""
    if isinstance(value, bool) or value is None:
        raise Rejected(f"{field}格式错误")
    try:
        if isinstance(value, int | Decimal) or (isinstance(value, str) and _DECIMAL.fullmatch(value)):
            number = Decimal(value)
        else:
            raise Rejected(f"{field}格式错误：{str(value)[:20]}")
    except InvalidOperation as exc:
        raise Rejected(f"{field}格式错误") from exc
    if not number.is_finite():
        raise Rejected(f"{field}格式错误")
    return number


def parse_time(value: Any, field: str) -> str:
    """``yyyy-MM-dd HH:mm:ss`` (returned as sent)."""
    if not isinstance(value, str) or len(value) != 19:
        raise Rejected(f"{field}时间格式应为yyyy-MM-dd HH:mm:ss")
    try:
        datetime.strptime(value, _TIME_FORMAT)
    except ValueError as exc:
        raise Rejected(f"{field}时间格式应为yyyy-MM-dd HH:mm:ss") from exc
    return value


def parse_date(value: Any, field: str) -> str:
    """``yyyy-MM-dd``, also accepted with a time part (callers serialise dates as date-times)."""
    if not isinstance(value, str) or len(value) < 10:
        raise Rejected(f"{field}日期格式应为yyyy-MM-dd")
    day, rest = value[:10], value[10:].strip().lstrip("T")
    try:
        datetime.strptime(day, "%Y-%m-%d")
        if rest:
            datetime.strptime(rest[:8], "%H:%M:%S")
    except ValueError as exc:
        raise Rejected(f"{field}日期格式应为yyyy-MM-dd") from exc
    return day


def msgid_problem(msgid: Any, fixmedins_code: str) -> str | None:
    """Why a msgid is not fixmedins_code (12) + yyyyMMddHHmmss (14) + a 4-digit counter, or None."""
    if not isinstance(msgid, str) or len(msgid) != 30:
        return "发送方报文ID格式错误：应为30位"
    if msgid[:12] != fixmedins_code:
        return "发送方报文ID格式错误：前12位应为定点医药机构编号"
    try:
        datetime.strptime(msgid[12:26], "%Y%m%d%H%M%S")
    except ValueError:
        return "发送方报文ID格式错误：第13-26位应为yyyyMMddHHmmss"
    if not msgid[26:].isdigit() or not msgid[26:].isascii():
        return "发送方报文ID格式错误：后4位应为数字顺序号"
    return None


def wire_time(moment: datetime) -> str:
    return moment.astimezone(CST).strftime(_TIME_FORMAT)


def stamp17(moment: datetime) -> str:
    """``yyyyMMddHHmmssSSS``: refmsg_time, respond_time."""
    local = moment.astimezone(CST)
    return local.strftime("%Y%m%d%H%M%S") + f"{local.microsecond // 1000:03d}"


def parse_body(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The request's JSON object (numbers with a fraction as Decimal), or None and why not."""
    try:
        value = json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError):
        return None, "报文格式错误：不是JSON"
    if not isinstance(value, dict):
        return None, "报文格式错误：应为JSON对象"
    return value, None


def dumps(obj: Any, *, amounts_as: str = "number") -> bytes:
    """JSON with every `Yuan` written as two-decimal yuan (a number or a string)."""

    def encode(value: Any) -> str:
        if isinstance(value, Yuan):
            text = yuan_text(value.fen)
            return text if amounts_as == "number" else f'"{text}"'
        if isinstance(value, dict):
            items = (f"{json.dumps(str(k), ensure_ascii=False)}:{encode(v)}" for k, v in value.items())
            return "{" + ",".join(items) + "}"
        if isinstance(value, list | tuple):
            return "[" + ",".join(encode(v) for v in value) + "]"
        if isinstance(value, Decimal):
            return str(value)
        return json.dumps(value, ensure_ascii=False)

    return encode(obj).encode("utf-8")

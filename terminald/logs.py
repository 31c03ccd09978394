"""Logging: JSON lines for journald, readable lines on a terminal, and a last
line of defence that masks personal data.

Code never logs names or full numbers on purpose (it logs masked forms from
`terminald.privacy`); `scrub` catches what slips through, e.g. a library's
exception message or a validation error that repeats its input. It masks:

- anything shaped like a resident ID number (18 characters, or the 15-digit
  first generation), wherever it appears;
- 9-character social-security card numbers standing alone (digits and capital
  letters with at least one digit: a word in capitals is left alone);
- the value of any field whose key says it is personal (`name`, `ssn`,
  `card_number`, `姓名`, ...), in `key=value`, `key: value` and quoted
  (JSON, Python repr) forms.

Masking is idempotent: a masked value stays as it is when scrubbed again.

Under systemd (stderr is the journal stream named by `$JOURNAL_STREAM`) every
line is one JSON object, prefixed with its syslog priority (`<3>`...) so that
`journalctl -p err` works; `journalctl -o cat` gives the bare JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TextIO

from terminald.privacy import mask_card, mask_name, mask_ssn

__all__ = ["JsonFormatter", "MaskingFilter", "TextFormatter", "scrub", "setup", "under_journald"]

# 18-char resident IDs (and the 15-digit first generation), not inside longer runs.
_SSN = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
# Card numbers: exactly 9 of [0-9A-Z], at least one digit, not part of a longer token.
_CARD = re.compile(r"(?<![0-9A-Za-z_*-])(?=[A-Z]*\d)([0-9A-Z]{9})(?![0-9A-Za-z_*-])")

_NAME_KEYS = ("name", "holder_name", "patient_name", "operator_name", "holder", "patient", "姓名")
_SSN_KEYS = ("ssn", "id_number", "idcard", "id_card", "identity_number", "身份证号", "身份证")
_CARD_KEYS = ("card_number", "card_no", "cardno", "社保卡号", "卡号")
_MASKERS: dict[str, Callable[[str | None], str]] = {
    **{k: mask_name for k in _NAME_KEYS},
    **{k: mask_ssn for k in _SSN_KEYS},
    **{k: mask_card for k in _CARD_KEYS},
}
_KEYS = "|".join(sorted((re.escape(k) for k in _MASKERS), key=len, reverse=True))
# 'name': '张三丰'  "name":"张三丰"  name='张三丰'  (quoted: the value may hold spaces)
_KEYED_QUOTED = re.compile(
    rf"""(?<![\w])(?P<lead>(?P<kq>["']?)(?P<key>{_KEYS})(?P=kq)\s*[:=]\s*)(?P<q>["'])(?P<value>[^"'\n]*)(?P=q)""",
    re.IGNORECASE,
)
# name=张三丰  name: 张三丰  (unquoted: up to a separator)
_KEYED_BARE = re.compile(
    rf"""(?<![\w])(?P<lead>(?P<key>{_KEYS})\s*[:=]\s*)(?P<value>[^\s"',;)}}\]]+)""",
    re.IGNORECASE,
)


def _keyed(match: re.Match[str]) -> str:
    masker = _MASKERS[match.group("key").lower()]
    value = match.group("value")
    quote = match.groupdict().get("q") or ""
    return f"{match.group('lead')}{quote}{masker(value)}{quote}"


# Tokens shaped like a card number that are not one (the terminal id, e.g. T0035969E).
_keep: frozenset[str] = frozenset()


def _card(match: re.Match[str]) -> str:
    token = match.group(1)
    return token if token in _keep else mask_card(token)


def scrub(text: str) -> str:
    """The text with every identity number, card number and keyed personal value masked."""
    text = _KEYED_QUOTED.sub(_keyed, text)
    text = _KEYED_BARE.sub(_keyed, text)
    text = _SSN.sub(lambda m: mask_ssn(m.group(1)), text)
    return _CARD.sub(_card, text)


# uvicorn's `color_message` repeats the message with terminal colour codes: not a field worth keeping.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}


class MaskingFilter(logging.Filter):
    """Scrubs the message, the traceback, the stack and any `extra=` fields in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not lose the line (or raise in the caller)
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                setattr(record, key, scrub(value) if isinstance(value, str) else
                        json.loads(scrub(json.dumps(value, ensure_ascii=False, default=str))))
        return True


# syslog priorities by level, for journald's `<N>` line prefix.
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with `extra=` are kept as fields."""

    def __init__(self, *, priority_prefix: bool = False) -> None:
        super().__init__()
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        line = json.dumps(entry, ensure_ascii=False, default=str)
        if self.priority_prefix:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


class TextFormatter(logging.Formatter):
    """`2026-11-23 10:15:00 WARNING terminald.upload: upstream offline: ...`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")


def under_journald(stream: TextIO | None = None) -> bool:
    """True when `stream` (stderr) is the journal stream systemd connected us to.

    `$JOURNAL_STREAM` is inherited by children whose stderr may be redirected,
    so its device and inode must match the stream's, as sd_journal_stream_fd(3) says.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    stream = stream if stream is not None else sys.stderr
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def setup(level: str = "info", fmt: str = "auto", keep: Iterable[str] = ()) -> None:
    """Route every logger (uvicorn's too) through one masked handler on stderr.

    `fmt`: "json", "text", or "auto" (JSON with priority prefixes under journald, text otherwise).
    `keep`: identifiers that look like card numbers but are not personal (pass the terminal id).
    """
    global _keep
    _keep = frozenset(k for k in keep if k)
    journal = under_journald()
    use_json = fmt == "json" or (fmt == "auto" and journal)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter(priority_prefix=journal) if use_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own loggers would bypass the filter with their own handlers.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # Library chatter (each request's URL, connection pool details) is not worth a journal line.
    for name in ("httpx", "httpcore", "asyncio", "multipart"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))

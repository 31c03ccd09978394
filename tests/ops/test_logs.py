"""Logging: masking of identity numbers, names and card numbers; JSON for journald."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from terminald import logs
from terminald.logs import JsonFormatter, MaskingFilter, TextFormatter, scrub, under_journald

SSN = "110105198003150039"
SSN_X = "11010519800315003X"
NAME = "张伟强"
CARD = "A10000123"


@pytest.mark.parametrize(("text", "leaked", "shown"), [
    (f"read {SSN} ok", SSN, "110105********0039"),
    ("old id 110105800315003 here", "110105800315003", "110105*****5003"),
    (f"x={SSN_X}.", SSN_X, "110105********003X"),
    (f"card {CARD} frozen", CARD, "A1*****23"),
    (f"{{'name': '{NAME}', 'ssn': '{SSN}'}}", NAME, "'name': '张*强'"),
    (f'{{"name":"{NAME}","card_number":"{CARD}"}}', NAME, '"name":"张*强"'),
    (f"name={NAME} next", NAME, "name=张*强 next"),
    (f"姓名: {NAME}", NAME, "姓名: 张*强"),
    ("input_value={'holder_name': 'Li Lei Mei'}", "Li Lei Mei", "'holder_name': 'L********i'"),
])
def test_scrub_masks(text: str, leaked: str, shown: str) -> None:
    cleaned = scrub(text)
    assert leaked not in cleaned
    assert shown in cleaned


@pytest.mark.parametrize("text", [
    "seq 123456 committed in 0.004 s",
    "record 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b settled",
    "TERMINALD RECEIPTS ready",
    "reader_name: Virtual PCD 00 00",
    "hash 3f1c0a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f",
    "12345678901234567890 is not an id",
])
def test_scrub_leaves_other_things_alone(text: str) -> None:
    assert scrub(text) == text


def test_scrub_is_idempotent() -> None:
    text = f"{{'name': '{NAME}', 'ssn': '{SSN}', 'card_number': '{CARD}'}} {SSN} {CARD}"
    once = scrub(text)
    assert scrub(once) == once


def test_kept_tokens_such_as_the_terminal_id_are_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_keep", frozenset({"T0035969E"}))
    assert scrub("terminal T0035969E card A10000123") == "terminal T0035969E card A1*****23"


def _record(msg: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("terminald.test", logging.WARNING, __file__, 1, msg, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_filter_masks_args_tracebacks_and_extra_fields() -> None:
    try:
        raise ValueError(f"bad card for {SSN} ({NAME=})")
    except ValueError as caught:
        record = _record("lookup %s failed", SSN, exc=caught, card={"name": NAME, "card_number": CARD})
    assert MaskingFilter().filter(record)
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert SSN not in line and NAME not in line and CARD not in line
    assert entry["msg"] == "lookup 110105********0039 failed"
    assert "ValueError" in entry["exc"] and "110105********0039" in entry["exc"]
    assert entry["card"] == {"name": "张*强", "card_number": "A1*****23"}
    assert entry["level"] == "warning" and entry["logger"] == "terminald.test"


def test_filter_survives_a_broken_format_string() -> None:
    record = _record("%d items for %s", "not a number")
    assert MaskingFilter().filter(record)
    assert "not a number" in record.getMessage()


def test_json_lines_carry_the_syslog_priority_for_journald() -> None:
    record = _record("upstream offline")
    record.levelno, record.levelname = logging.ERROR, "ERROR"
    line = JsonFormatter(priority_prefix=True).format(record)
    assert line.startswith("<3>{")
    assert json.loads(line[3:])["msg"] == "upstream offline"


def test_text_format_is_one_readable_line() -> None:
    line = TextFormatter().format(_record("upstream offline: %s", "timeout"))
    assert line.endswith("WARNING terminald.test: upstream offline: timeout")


def test_under_journald_requires_the_stream_to_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stream"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert under_journald(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not under_journald(stream)  # inherited by a child whose stderr was redirected
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not under_journald(stream)
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not under_journald(io.StringIO())


CHILD = """
import logging, sys
from terminald import logs
logs.setup("info", sys.argv[1], keep=["T0035969E"])
logging.getLogger("uvicorn.error").info("card %s for %s", "A10000123", "110105198003150039")
logging.getLogger("terminald").error("terminal T0035969E name=张伟强")
"""


@pytest.mark.parametrize("fmt", ["json", "text", "auto"])
def test_setup_in_a_fresh_process_masks_uvicorn_and_our_loggers(fmt: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    out = subprocess.run([sys.executable, "-c", CHILD, fmt], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stderr
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    for secret in (SSN, NAME, CARD):
        assert secret not in out
    assert "T0035969E" in out
    if fmt == "json":
        assert [json.loads(line)["level"] for line in lines] == ["info", "error"]
    else:  # auto on a pipe that is not the journal: text
        assert "ERROR   terminald: terminal T0035969E name=张*强" in lines[1]


def test_setup_auto_under_journald_writes_prefixed_json(tmp_path: Path) -> None:
    stream = tmp_path / "journal"
    with open(stream, "w") as handle:
        st = os.fstat(handle.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        subprocess.run([sys.executable, "-c", CHILD, "auto"], stderr=handle, env=env, timeout=60, check=True)
    lines = stream.read_text().splitlines()
    assert lines[0].startswith("<6>{") and lines[1].startswith("<3>{")
    assert json.loads(lines[1][3:])["msg"] == "terminal T0035969E name=张*强"

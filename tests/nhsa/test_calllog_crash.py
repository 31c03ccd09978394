"""A call is never sent without its row: kill -9 right after `begin` returned, and the row is
there, `sent`, on reopen, among the calls a restart must reverse before any retry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from terminald.upstream.nhsa.calllog import CallLog
from terminald.upstream.nhsa.msgid import parse_msgid
from tests.nhsa.calllog_child import CODE

REPO = Path(__file__).resolve().parents[2]


def _run_and_kill(path: Path, mode: str, count: int) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.nhsa.calllog_child", str(path), mode, str(count)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    begun: list[str] = []
    try:
        for _ in range(count):
            line = child.stdout.readline()
            assert line.startswith("begun "), (line, child.stderr.read() if child.stderr else "")
            begun.append(line.split()[1])
        # SIGKILL as soon as the last begin returned: no close, no checkpoint, no atexit.
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    return begun


@pytest.mark.parametrize("mode", ["path", "spool"])
def test_kill9_right_after_begin_leaves_the_row_sent(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "spool.db"
    begun = _run_and_kill(path, mode, 1)
    with CallLog(path, fixmedins_code=CODE) as log:
        call = log.get(begun[0])
        assert call is not None, "the row of a call that may have been sent is lost"
        assert call.state == "sent" and call.record_id == "rec-0"
        assert (call.psn_no, call.insuplc_admdvs) == ("44000012345678901234", "440300")
        assert [c.msgid for c in log.unfinished({"2102", "2103"})] == begun


def test_rows_survive_repeated_kills_and_msgids_stay_unique(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    every: list[str] = []
    for round_no in range(6):
        every += _run_and_kill(path, "path" if round_no % 2 else "spool", 5)
    assert len(set(every)) == len(every) == 30
    with CallLog(path, fixmedins_code=CODE) as log:
        left = log.unfinished()
        assert [c.msgid for c in left] == every
        assert all(c.state == "sent" for c in left)
        # Within each second the counters are gapless from 1: none skipped, none reused.
        by_second: dict[str, list[int]] = {}
        for msgid in every:
            parsed = parse_msgid(msgid)
            by_second.setdefault(parsed.prefix, []).append(parsed.counter)
        for counters in by_second.values():
            assert counters == list(range(1, len(counters) + 1))

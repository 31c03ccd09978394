"""Run ``tests.spool.child_writer`` and check what survived it.

The child runs with ``-S``: it needs only the standard library and the repo,
and skipping site-packages makes each of the hundred starts cheaper.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from spool import Spool
from tests.spool.factory import TERMINAL_ID

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ChildLog:
    acked: dict[str, int] = field(default_factory=dict)  # key -> seq
    failed: dict[str, str] = field(default_factory=dict)  # key -> error class
    done: bool = False


def start_child(
    path: Path, threads: int, count: int, prefix: list[str] | None = None
) -> subprocess.Popen[str]:
    cmd = [
        *(prefix or []),
        sys.executable,
        "-m",
        "tests.spool.child_writer",
        str(path),
        str(threads),
        str(count),
    ]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def parse(stdout: str) -> ChildLog:
    log = ChildLog()
    for line in stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "ok" and len(parts) == 3:
            log.acked[parts[2]] = int(parts[1])
        elif parts[0] == "err" and len(parts) == 3:
            log.failed[parts[1]] = parts[2]
        elif parts[0] == "done":
            log.done = True
    return log


def assert_survived(path: Path, acked: dict[str, int]) -> int:
    """Every acknowledged append is there at its seq; seq is gapless; the chain verifies."""
    with Spool.open(path, TERMINAL_ID, background_check=False) as spool:
        report = spool.check()
        assert report.ok, report.problems
        last = spool.stats().last_seq
        assert report.records == last  # gapless from 1, nothing pruned here
        for key, seq in acked.items():
            record = spool.find_by_key(key)
            assert record is not None, f"acknowledged append {key} (seq {seq}) was lost"
            assert record.seq == seq
        return last

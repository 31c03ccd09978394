"""Crash safety: a writer process is killed with SIGKILL at random moments.

After every kill, each append the child had acknowledged (printed after
``append`` returned) must be in the file at the same seq, seq must be gapless
and the whole hash chain must verify. The same file is reused across kills, so
recovery from a crash is itself crashed again.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from tests.spool.crash_helpers import assert_survived, parse, start_child

KILLS = 100


def test_kill9_at_random_moments_loses_no_acknowledged_append(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    all_acked: dict[str, int] = {}
    killed_mid_run = 0
    for round_no in range(KILLS):
        threads = 1 if round_no % 2 == 0 else 8
        child = start_child(path, threads, 10_000)
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.strip() == "ready", child.stderr.read() if child.stderr else first
        time.sleep(rng.uniform(0.005, 0.080))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        log = parse(out)
        assert not log.failed, log.failed
        killed_mid_run += not log.done
        all_acked.update(log.acked)
        assert_survived(path, all_acked)
    assert killed_mid_run == KILLS
    assert len(all_acked) > KILLS  # the kills really landed while appending

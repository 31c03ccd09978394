"""fdatasync fails at random (libfiu): acknowledged appends survive, failed ones raised.

The child runs under ``fiu-run -x`` with ``posix/io/sync/fdatasync`` failing
with probability 0.3, so about a third of the commits cannot be made durable.
Each of those must raise SpoolIOError in the appender (never report success);
after the child exits, a clean open must find every acknowledged append, a
gapless seq and a valid chain. A failed append's fate is unknown by contract:
it may or may not be in the file, but never under a seq reused by another key.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spool import Spool
from tests.fixtures.spool import TERMINAL_ID
from tests.spool.crash_helpers import assert_survived, parse, start_child

FIU = ["fiu-run", "-x", "-c", "enable_random name=posix/io/sync/fdatasync,probability=0.3"]


@pytest.mark.skipif(shutil.which("fiu-run") is None, reason="fiu-run (fiu-utils) is not installed")
@pytest.mark.parametrize("threads", [1, 8])
def test_failing_fdatasync_never_acknowledges_a_lost_append(tmp_path: Path, threads: int) -> None:
    path = tmp_path / "spool.db"
    child = start_child(path, threads, 400 // threads, prefix=FIU)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    log = parse(out)
    assert log.done
    assert log.failed, "no fdatasync failure was injected: is libfiu's preload library working?"
    assert log.acked, "no append succeeded"
    assert set(log.failed.values()) == {"SpoolIOError"}, log.failed
    last = assert_survived(path, log.acked)
    with Spool.open(path, TERMINAL_ID, background_check=False) as spool:
        seqs_of_acked = set(log.acked.values())
        for key in log.failed:
            record = spool.find_by_key(key)
            if record is not None:  # fate unknown: allowed, but it owns its seq alone
                assert record.seq not in seqs_of_acked
        assert last >= len(log.acked)
        # The writer recovered after every failure: appends work normally now.
        from tests.fixtures.spool import make_request

        assert spool.append(make_request("after-faults")).record.seq == last + 1

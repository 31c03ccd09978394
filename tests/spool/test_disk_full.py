"""A full disk: SpoolFull, nothing committed before is harmed, appends resume after freeing space.

Runs on a tiny tmpfs mounted for the test (needs root and permission to mount;
skipped with the reason otherwise) and unmounted in teardown.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spool import Spool, SpoolFull
from tests.fixtures.spool import TERMINAL_ID, make_request

pytestmark = pytest.mark.root


def test_full_disk_raises_spool_full_and_recovers(tiny_fs: Path) -> None:
    filler = tiny_fs / "filler"
    with Spool.open(tiny_fs / "s.db", TERMINAL_ID, background_check=False) as sp:
        acked = [sp.append(make_request(f"early{i}", i)).record for i in range(20)]
        # Leave a little room, then append big records until the disk is full.
        free = os.statvfs(tiny_fs).f_bavail * os.statvfs(tiny_fs).f_frsize
        with filler.open("wb") as fh:
            fh.write(b"\0" * max(0, free - 200 * 1024))
        errors: list[SpoolFull] = []
        for i in range(1000):
            try:
                acked.append(sp.append(make_request(f"big{i}", i, extra={"blob": "字" * 3000})).record)
            except SpoolFull as exc:
                errors.append(exc)
                if len(errors) >= 3:
                    break
        assert errors, "the disk never filled up"
        assert all(e.code == "spool_full" for e in errors)
        assert sp.integrity == "ok"
        report = sp.check()
        assert report.ok and report.records == len(acked)
        for rec in acked:
            assert sp.get_seq(rec.seq) == rec
        filler.unlink()
        after = sp.append(make_request("after", 1, extra={"blob": "字" * 3000})).record
        assert after.seq == len(acked) + 1 and after.prev_hash == acked[-1].hash
    with Spool.open(tiny_fs / "s.db", TERMINAL_ID, background_check=False) as sp:
        assert sp.check().ok and sp.stats().last_seq == len(acked) + 1

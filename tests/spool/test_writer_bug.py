"""A bug in the writer thread must not leave callers waiting forever on a thread that is gone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spool import Spool, SpoolClosed
from spool.writer import Writer
from tests.spool.factory import TERMINAL_ID, make_request


def test_a_writer_that_dies_refuses_callers_instead_of_hanging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    def broken(self: Writer, *args: Any) -> None:
        raise RuntimeError("a bug outside the commit paths")

    with Spool.open(tmp_path / "s.db", TERMINAL_ID, background_check=False) as sp:
        assert sp.append(make_request("before")).created
        monkeypatch.setattr(Writer, "_run_call", broken)
        with pytest.raises(SpoolClosed):  # the job in flight is answered, not left waiting
            sp.resolve(sp.get_seq(1).record_id, "voided")  # type: ignore[union-attr]
        with pytest.raises(SpoolClosed):  # and every later caller is refused at once
            sp.append(make_request("after"))
    assert "the spool writer stopped on an unexpected error" in caplog.text

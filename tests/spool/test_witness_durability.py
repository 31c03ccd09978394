"""The ``-seq`` witness reaches the disk (docs/spool.md, "The -seq witness").

A power cut cannot be simulated here. What these tests prove is the protocol at
the system-call boundary, in the real spool: ``os.fdatasync``/``os.fsync`` are
spied on (and passed through) and each call is matched to its file through
``/proc/self/fd``, with the witness's content at the moment of the sync. So:
the value acknowledged to the caller is handed to ``fdatasync`` without the
spool being closed, the append does not wait for that sync, a new witness and
its directory entry are synced before ``Spool.open`` returns, and a missing or
empty witness is recreated, loudly. That an ``fdatasync`` that returned means
the bytes survive a power cut is the kernel's and the disk's promise, not
something a test in a process can check.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spool import GENESIS_HASH, Spool
from spool.witness import read_witness, witness_path
from tests.fixtures.spool import TERMINAL_ID, make_request
from tests.waiting import wait_for


@dataclass(frozen=True)
class Sync:
    call: str  # "fdatasync" or "fsync"
    path: str
    content: bytes  # a regular file's first 96 bytes when the sync was asked for


class SyncSpy:
    """Records every os.fsync/os.fdatasync made in this process, then does it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[Sync] = []
        self.before: Callable[[Sync], None] = lambda sync: None
        for name in ("fdatasync", "fsync"):
            monkeypatch.setattr(os, name, self._spy(name, getattr(os, name)))

    def _spy(self, name: str, real: Callable[[int], None]) -> Callable[[int], None]:
        def spy(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            content = b"" if os.path.isdir(path) else os.pread(fd, 96, 0)
            sync = Sync(name, path, content)
            self.before(sync)
            real(fd)
            self.calls.append(sync)

        return spy

    def of(self, path: Path) -> list[Sync]:
        return [sync for sync in self.calls if sync.path == str(path.resolve())]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> SyncSpy:
    return SyncSpy(monkeypatch)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


@pytest.fixture
def sp(path: Path) -> Iterator[Spool]:
    opened = Spool.open(path, TERMINAL_ID, background_check=False)
    try:
        yield opened
    finally:
        opened.close()


def _line(seq: int, hash_: str) -> bytes:
    return f"{seq} {hash_}".ljust(95).encode() + b"\n"


def test_the_acknowledged_tail_is_fdatasynced_without_closing_the_spool(sp: Spool, path: Path, spy: SyncSpy) -> None:
    for i in range(5):
        last = sp.append(make_request(f"k{i}")).record
    assert last.seq == 5
    wait_for(lambda: any(s.content == _line(5, last.hash) for s in spy.of(witness_path(path))),
             what="an fdatasync of the witness holding the last acknowledged seq")
    assert read_witness(path) == (5, last.hash)


def test_an_append_never_waits_for_the_witness_sync(sp: Spool, path: Path, spy: SyncSpy) -> None:
    witness = str(witness_path(path))
    release = threading.Event()
    stuck = threading.Event()

    def hold_the_witness_sync(sync: Sync) -> None:
        if sync.path == witness:
            stuck.set()
            release.wait(10)

    spy.before = hold_the_witness_sync
    try:
        first = sp.append(make_request("k0")).record
        wait_for(stuck.is_set, what="the witness sync to start")
        for i in range(1, 20):  # acknowledged while that sync hangs
            started = time.monotonic()
            last = sp.append(make_request(f"k{i}")).record
            assert time.monotonic() - started < 2, "an append waited for the witness sync"
        assert read_witness(path) == (20, last.hash)  # written before each acknowledgement
    finally:
        release.set()
    # The sync that hung covered seq 1; the next one, batched, covers the whole run.
    wait_for(lambda: any(s.content == _line(20, last.hash) for s in spy.of(witness_path(path))),
             what="the latest value synced once the disk answers")
    assert first.seq == 1


def test_a_new_witness_and_its_directory_entry_are_synced_before_open_returns(path: Path, spy: SyncSpy) -> None:
    with Spool.open(path, TERMINAL_ID, background_check=False):
        synced = spy.of(witness_path(path))
        assert [s.content for s in synced] == [_line(0, GENESIS_HASH)]
        assert [s.call for s in spy.of(path.parent)] == ["fsync"]
        dir_sync = spy.calls.index(spy.of(path.parent)[0])
        assert spy.calls.index(synced[0]) < dir_sync  # the content before the name
    with Spool.open(path, TERMINAL_ID, background_check=False):
        assert len(spy.of(path.parent)) == 1  # once, on creation


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_witness_lost_since_the_last_run_is_recreated_with_a_warning(
    path: Path, spy: SyncSpy, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        for i in range(30):
            last = sp.append(make_request(f"k{i}")).record
    witness = witness_path(path)
    if damage == "deleted":
        witness.unlink()
    else:  # what an unsynced witness was after a power cut
        witness.write_bytes(b"")
    caplog.set_level(logging.WARNING, logger="spool.witness")
    spy.calls.clear()
    with Spool.open(path, TERMINAL_ID, background_check=False):
        assert "could not be detected this time; recreated at seq 30" in caplog.text
        assert read_witness(path) == (30, last.hash)
        assert any(s.content == _line(30, last.hash) for s in spy.of(witness))  # before open returned


def test_a_witness_in_place_is_not_rewritten_or_warned_about(
    path: Path, spy: SyncSpy, caplog: pytest.LogCaptureFixture
) -> None:
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        sp.append(make_request("k0"))
    caplog.set_level(logging.WARNING, logger="spool.witness")
    spy.calls.clear()
    with Spool.open(path, TERMINAL_ID, background_check=False):
        assert not spy.of(witness_path(path)) and not spy.of(path.parent)
    assert "witness" not in caplog.text

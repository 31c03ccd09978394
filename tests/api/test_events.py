"""GET /v1/events: live delivery, Last-Event-ID replay (also across restarts), >= 1,000 replayable;
bounded queues (a client that stops reading is dropped and resumes), `reset` for an id never
issued or no longer kept, a writer that survives database errors."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from terminald.events import QUEUE_HARD_MAX, QUEUE_MAX, EventBus, prune_before
from terminald.sim.central import CentralSim
from tests.api.helpers import central_config, post_tx, sale
from tests.api.sse import Event, EventStream, assert_contiguous, parse
from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for

CONFIG_EXTRA = "[offline]\nrequire_card_present = false\n"

PERSONAL = ("110101199001011234", "张三")


@pytest.fixture
def online(central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess]) -> DaemonProcess:
    d = daemon_proc(config=central_config(central_sim.url) + CONFIG_EXTRA)
    api = d.client()
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "online", what="online")
    return d


def settle(d: DaemonProcess, keys: range, tag: str) -> list[str]:
    api = d.client()
    ids = []
    for n in keys:
        r = post_tx(api, sale(meta={"n": n}), f"{tag}-{n}", wait=10)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def test_live_then_replay_with_last_event_id(online: DaemonProcess) -> None:
    d = online
    with EventStream(d) as live:
        ids = settle(d, range(3), "live")
        wait_for(lambda: len([e for e in live.events if e.name == "transaction.settled"]) == 3,
                 what="three settled events")
        settled = [e for e in live.events if e.name == "transaction.settled"]
        assert [e.data.get("id") for e in settled] == ids
        for e in live.events:
            assert "at" in e.data
            assert not any(p in str(e.data) for p in PERSONAL), e
        seen = list(live.events)
    ids_seen = [e.id for e in seen]
    assert ids_seen == sorted(set(ids_seen))

    missed_ids = settle(d, range(3, 8), "missed")
    last = seen[-1].id
    with EventStream(d, last_event_id=last) as resumed:
        wait_for(lambda: len([e for e in resumed.events if e.name == "transaction.settled"]) == 5,
                 what="the five missed settlements")
        replayed = list(resumed.events)
    assert_contiguous(replayed, last)
    assert [e.data["id"] for e in replayed if e.name == "transaction.settled"] == missed_ids

    # `?since=` is the same thing for clients that cannot set headers.
    with EventStream(d, since=last) as same:
        same.wait(len(replayed))
    assert [e.id for e in same.events[: len(replayed)]] == [e.id for e in replayed]


def test_replay_across_restarts(online: DaemonProcess) -> None:
    d = online
    settle(d, range(4), "before")
    with EventStream(d, last_event_id=0) as everything:
        wait_for(lambda: sum(e.name == "transaction.settled" for e in everything.events) == 4, what="4 settled")
        before = list(everything.events)
    assert_contiguous(before, 0)
    last = before[-1].id

    d.restart()
    after_ids = settle(d, range(4, 7), "after")
    with EventStream(d, last_event_id=last) as resumed:
        wait_for(lambda: sum(e.name == "transaction.settled" for e in resumed.events) == 3, what="3 settled")
        replayed = list(resumed.events)
    assert_contiguous(replayed, last)
    assert [e.data["id"] for e in replayed if e.name == "transaction.settled"] == after_ids

    # After a kill -9 the ids still only go up for a client that saw what was on disk.
    d.kill(signal.SIGKILL)
    d.start()
    settle(d, range(7, 8), "crash")
    with EventStream(d, last_event_id=replayed[-1].id) as resumed:
        wait_for(lambda: any(e.name == "transaction.settled" for e in resumed.events), what="a settlement")
        assert all(e.id > replayed[-1].id for e in resumed.events)


def test_a_thousand_events_replayable_after_restart(online: DaemonProcess) -> None:
    d = online
    api = d.client()
    for n in range(1000):
        r = post_tx(api, sale(meta={"n": n}), f"bulk-{n}", wait=0)
        assert r.status_code in (201, 202), r.text
    wait_for(lambda: api.get("/v1/status").json()["spool"]["pending"] == 0, timeout_s=60, what="all settled")
    d.restart()
    with EventStream(d, last_event_id=0) as replay:
        wait_for(lambda: sum(e.name == "transaction.settled" for e in replay.events) == 1000,
                 timeout_s=30, what="1,000 settlements replayed")
        events = list(replay.events)
    assert len(events) >= 1000
    assert_contiguous(events, 0)
    settled = [e.data["id"] for e in events if e.name == "transaction.settled"]
    assert len(settled) == len(set(settled)) == 1000
    # A client that saw the first 500 gets exactly the rest.
    with EventStream(d, last_event_id=events[499].id) as rest:
        rest.wait(len(events) - 500, timeout_s=30)
    assert [e.id for e in rest.events[: len(events) - 500]] == [e.id for e in events[500:]]


def test_bad_last_event_id_is_ignored_or_refused(online: DaemonProcess) -> None:
    d = online
    api = d.client()
    for since in (-1, 2**63, "x"):
        r = api.get("/v1/events", params={"since": since})
        assert r.status_code == 422 and r.json()["code"] == "validation_failed"
    # Ids past anything stored: nothing to replay, the stream stays open and healthy.
    for odd in (str(2**70), "²", "-5", "7x"):
        with EventStream(d, headers={"Last-Event-ID": odd.encode("latin-1")}) as s:
            assert s.status == 200
    settle(d, range(1), "old")
    # A header that is not a number is treated as "no id": the stream starts live, with nothing old.
    with EventStream(d, headers={"Last-Event-ID": "garbage"}) as live:
        new_id = settle(d, range(1, 2), "new")
        event = live.wait_for("transaction.settled")
        assert event.data["id"] == new_id[0]


def test_an_open_stream_ends_cleanly_on_shutdown(online: DaemonProcess) -> None:
    d = online
    settle(d, range(1), "s")
    with EventStream(d, last_event_id=0) as live:
        live.wait_for("transaction.settled")
        seen = list(live.events)
        assert d.stop() is not None
        live.join()
        assert live.error is None and live.ended
    # The stream was ended by the daemon, not cancelled at uvicorn's graceful-shutdown timeout.
    assert "timeout graceful shutdown exceeded" not in d.stderr_text()
    d.start()
    settle(d, range(1, 2), "t")
    with EventStream(d, last_event_id=seen[-1].id) as resumed:
        event = resumed.wait_for("transaction.settled")
        assert_contiguous(resumed.events[:1], seen[-1].id)
        assert event.data["id"]


CRASHING_PUBLISHER = """
import os, sys
from pathlib import Path
from terminald.events import EventBus
bus = EventBus(Path(sys.argv[1]))
bus.open()
last = [bus.publish("test.crash", {"n": n}) for n in range(300)][-1]
print(last.id, flush=True)
os._exit(9)  # dies at once: events handed to live clients, not all of them written
"""


def test_event_ids_are_never_reused_after_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "spool.db"
    for _ in range(2):
        child = subprocess.run([sys.executable, "-c", CRASHING_PUBLISHER, str(db)], capture_output=True,
                               text=True, timeout=60, check=False)
        assert child.returncode == 9, child.stderr
        seen_live = int(child.stdout)
        bus = EventBus(db)
        bus.open()
        try:
            assert bus.publish("test.after").id > seen_live
            bus.flush()
            stored = [e.id for e in bus.since(0)]
            assert stored == sorted(set(stored))
        finally:
            bus.close()
    # A clean stop needs no gap.
    bus = EventBus(db)
    bus.open()
    try:
        first = bus.publish("test.clean")
    finally:
        bus.close()
    bus = EventBus(db)
    bus.open()
    try:
        assert bus.publish("test.next").id == first.id + 1
    finally:
        bus.close()


def test_events_from_threads_and_the_loop_reach_a_stream_in_order(tmp_path: Path) -> None:
    # A stream skips ids it has passed: an event arriving after a higher id would be lost.
    bus = EventBus(tmp_path / "events.db")
    bus.open()

    async def main() -> list[int]:
        got: list[int] = []
        subscribed = asyncio.Event()

        async def consume() -> None:
            async with contextlib.aclosing(bus.stream(None)) as stream:
                subscribed.set()
                async for event in stream:
                    got.append(event.id)
                    if len(got) == 600:
                        return

        task = asyncio.create_task(consume())
        await subscribed.wait()
        await asyncio.sleep(0.05)  # the stream is waiting on its queue
        threads = [threading.Thread(target=lambda: [bus.publish("thread") for _ in range(200)]) for _ in range(2)]
        for thread in threads:
            thread.start()
        for _ in range(200):
            bus.publish("loop")
            await asyncio.sleep(0)
        for thread in threads:
            thread.join()
        await asyncio.wait_for(task, 20)
        return got

    try:
        got = asyncio.run(main())
    finally:
        bus.close()
    assert got == list(range(got[0], got[0] + 600))


# -- a client that stops reading, Last-Event-ID the log never issued, a failing events writer ----------
MANY_OFFLINE_SALES = "[offline]\nrequire_card_present = false\nmax_total_fen = 1000000000000\n"


def _raw_stream(path: str, token: str) -> socket.socket:
    """GET /v1/events on the Unix socket, with a tiny receive buffer; the caller never reads it (yet)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(path)
    sock.sendall(f"GET /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return sock


def _read_to_end(sock: socket.socket, timeout_s: float = 30.0) -> tuple[bytes, bool]:
    """Everything the server sent, and whether it closed the connection (EOF) within the time."""
    sock.settimeout(timeout_s)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return bytes(data), False
    return bytes(data), True


def _sse_events(raw: bytes) -> list[Event]:
    """The complete events of a raw HTTP/1.1 chunked response (its end may be cut off)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    assert b"transfer-encoding: chunked" in head.lower()
    text = bytearray()
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep or not (size := int(size_line.split(b";")[0], 16)):
            break
        text += rest[:size]
        body = rest[size + 2:]
    return list(parse(text.decode("utf-8", "replace").split("\n")))


def test_a_client_that_stops_reading_is_dropped_and_resumes_with_last_event_id(
        daemon_proc: Callable[..., DaemonProcess], tmp_path: Path) -> None:
    """A client stops reading (its socket buffer fills, the daemon's sends wait): once it is
    QUEUE_MAX events behind and has taken nothing for STALL_S, its stream ends instead of its
    queue growing; it reconnects with Last-Event-ID and gets every event after the last one it
    read. A client that reads, connected at the same time, is not dropped."""
    unix = str(tmp_path / "api.sock")
    d = daemon_proc(config=MANY_OFFLINE_SALES + f'[api]\nunix_socket = "{unix}"\n')
    with EventStream(d) as reader:
        stuck = _raw_stream(unix, d.token)
        try:
            # Sales publish one event each; the stuck client's socket buffers (about 270 kB on a
            # Unix socket) fill after some 1,500 events, then its queue does.
            stop = threading.Event()
            refused: list[str] = []

            def sell(worker: int) -> None:
                api = d.client()
                n = 0
                while not stop.is_set():
                    r = post_tx(api, sale(), f"w{worker}-{n}", wait=0)
                    if r.status_code != 202:
                        refused.append(r.text)
                        stop.set()
                    n += 1

            sellers = [threading.Thread(target=sell, args=(w,), daemon=True) for w in range(2)]
            for thread in sellers:
                thread.start()
            try:
                dropped = wait_for(lambda: DROPPED.search(d.stderr_text()) or refused, timeout_s=120,
                                   what="the stuck client dropped")
            finally:
                stop.set()
                for thread in sellers:
                    thread.join(30)
            assert not refused, refused[0]
            assert isinstance(dropped, re.Match)
            behind = int(dropped.group(1))
            assert QUEUE_MAX <= behind <= QUEUE_HARD_MAX, dropped.group(0)
            # Its connection ends: what was already in its socket buffer, then EOF.
            raw, ended = _read_to_end(stuck)
        finally:
            stuck.close()
        assert ended, "the dropped client's connection is still open"
        got = _sse_events(raw)
        assert len(got) > 100
        assert_contiguous(got, got[0].id - 1)

        api = d.client()
        marker = post_tx(api, sale(), "after-the-drop", wait=0).json()["id"]
        with EventStream(d, last_event_id=got[-1].id) as resumed:
            wait_for(lambda: any(e.data.get("id") == marker for e in resumed.events), timeout_s=60,
                     what="the resumed stream to reach the last sale")
            caught_up = list(resumed.events)
        assert_contiguous(caught_up, got[-1].id)
        assert len(caught_up) >= behind  # every event it missed, the queued ones it lost included
        # The client that read all along was never dropped and missed nothing.
        wait_for(lambda: any(e.data.get("id") == marker for e in reader.events), what="the reader to follow")
        assert reader.error is None and not reader.ended
        assert_contiguous(reader.events, reader.events[0].id - 1)
    assert len(DROPPED.findall(d.stderr_text())) == 1
    # The response it never finished is no error in the journal.
    assert "without completing response" not in d.stderr_text()
    assert "Exception in ASGI application" not in d.stderr_text()


DROPPED = re.compile(r"event stream of .+ dropped: (\d+) events behind")


def test_a_burst_is_not_a_stall_but_a_reader_that_stops_taking_is_dropped(tmp_path: Path) -> None:
    bus = EventBus(tmp_path / "events.db")
    bus.open()

    async def main() -> tuple[int, bool, int, bool]:
        fast = bus.subscription("fast")
        slow = bus.subscription("slow")
        got: list[int] = []
        taken = asyncio.Event()
        started = asyncio.Event()

        async def read_all() -> None:
            async with contextlib.aclosing(bus.stream(None, fast)) as stream:
                started.set()
                async for event in stream:
                    got.append(event.id)

        async def take_one() -> None:
            async with contextlib.aclosing(bus.stream(None, slow)) as stream:
                async for _ in stream:
                    taken.set()
                    await asyncio.Event().wait()  # a client stuck in a send: it never takes again

        readers = [asyncio.create_task(read_all()), asyncio.create_task(take_one())]
        await started.wait()
        deadline = time.monotonic() + 20
        while not (got and taken.is_set()) and time.monotonic() < deadline:  # both subscribed
            bus.publish("hello")
            await asyncio.sleep(0.01)
        before = len(got)
        # 3,000 events in one go on the loop: nobody could take any meanwhile, nobody is dropped.
        first = bus.publish("burst").id
        for _ in range(2999):
            bus.publish("burst")
        while len(got) < before + 3000 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        burst_ok = got[before:] == list(range(first, first + 3000)) and not fast.dropped.is_set() \
            and not slow.dropped.is_set()
        # The stuck reader, still more than QUEUE_MAX behind, is dropped once it has taken nothing
        # for STALL_S (checked as events come); the other one reads on.
        while not slow.dropped.is_set() and time.monotonic() < deadline:
            bus.publish("tick")
            await asyncio.sleep(0.05)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        return len(got), burst_ok, slow.waiting, fast.dropped.is_set()

    try:
        count, burst_ok, left, fast_dropped = asyncio.run(main())
    finally:
        bus.close()
    assert burst_ok
    assert count > 3000 and not fast_dropped
    assert left == 0  # the dropped queue was emptied: its memory is free


def test_a_last_event_id_never_issued_gets_a_reset(online: DaemonProcess) -> None:
    d = online
    settle(d, range(2), "before")
    status = d.client().get("/v1/status").json()
    with EventStream(d, last_event_id=0) as everything:
        wait_for(lambda: sum(e.name == "transaction.settled" for e in everything.events) == 2, what="2 settled")
        last = everything.events[-1].id
    # Ahead of anything this spool's event log issued (another terminal's id, a replaced spool).
    with EventStream(d, last_event_id=last + 500) as ahead:
        reset = ahead.wait(1)[0]
        assert reset.name == "reset"
        assert reset.id == last  # where the client stands now: a reconnect from here is valid
        assert reset.data["reason"] == "not_issued" and reset.data["last_event_id"] == last + 500
        assert reset.data["instance_id"] == status["instance_id"]
        assert reset.data["last_id"] == last and reset.data["oldest_id"] == 1
        assert reset.data["at"].endswith("+08:00")
        new = settle(d, range(2, 3), "after")
        event = ahead.wait_for("transaction.settled")
        assert event.data["id"] == new[0]
        assert_contiguous(ahead.events[1:], last)
    # A valid id (the last one) gets no reset, across a restart too (the ids go on).
    d.restart()
    with EventStream(d, last_event_id=last) as valid:
        valid.wait_for("transaction.settled")
        assert all(e.name != "reset" for e in valid.events)
        assert_contiguous(valid.events, last)


def test_a_last_event_id_older_than_the_kept_events_gets_a_reset_then_what_is_kept(online: DaemonProcess) -> None:
    d = online
    settle(d, range(4), "old")
    with EventStream(d, last_event_id=0) as everything:
        wait_for(lambda: sum(e.name == "transaction.settled" for e in everything.events) == 4, what="4 settled")
        seen = list(everything.events)
    # Retention prunes the oldest events (what the daily run does after retention_days).
    db = d.state_dir / "spool.db"
    assert prune_before(db, datetime.now(UTC) + timedelta(days=1), keep_last=3) > 0
    kept = _stored(db)
    assert len(kept) >= 3 and kept[0] > seen[0].id + 1
    with EventStream(d, last_event_id=seen[0].id) as late:
        late.wait(1 + len(kept))
        reset, *replayed = late.events[:1 + len(kept)]
    assert reset.name == "reset" and reset.data["reason"] == "expired"
    assert reset.data["last_event_id"] == seen[0].id
    assert reset.data["oldest_id"] == kept[0] and reset.id == kept[0] - 1
    assert reset.data["last_id"] >= kept[-1]
    assert [e.id for e in replayed] == kept
    # Just before the oldest kept one is still complete: no reset.
    with EventStream(d, last_event_id=kept[0] - 1) as exact:
        exact.wait(len(kept))
    assert [e.id for e in exact.events[:len(kept)]] == kept


FAULTY_PUBLISHER = """
import logging, os, sys
from pathlib import Path
from terminald.events import EventBus
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
bus = EventBus(Path(sys.argv[1]))
bus.open()
print(os.getpid(), flush=True)
for line in sys.stdin:
    command, _, arg = line.strip().partition(" ")
    if command == "publish":
        print([bus.publish("test.fault", {"n": n}) for n in range(int(arg))][-1].id, flush=True)
    elif command == "close":
        bus.close()
        print("closed", flush=True)
        break
"""


def _stored(db: Path) -> list[int]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT id FROM events ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("fiu-run") is None, reason="fiu-run (fiu-utils) is not installed")
def test_the_events_writer_survives_a_failing_disk_and_writes_what_it_kept(tmp_path: Path) -> None:
    """Every write(2) to the file fails for a while (libfiu, switched on and off in the running
    process): the writer logs, drops its connection, keeps the events and writes them once the
    disk works again; nothing is lost and the run still ends clean."""
    db = tmp_path / "spool.db"
    err = (tmp_path / "stderr.log").open("w+")
    child = subprocess.Popen(["fiu-run", "-x", sys.executable, "-c", FAULTY_PUBLISHER, str(db)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    assert child.stdin is not None and child.stdout is not None

    def say(line: str) -> str:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(line + "\n")
        child.stdin.flush()
        return child.stdout.readline().strip()

    def fiu(action: str) -> None:  # SQLite writes with pwrite(2); print and logging use write(2)
        subprocess.run(["fiu-ctrl", "-c", f"{action} name=posix/io/rw/pwrite", str(child.pid)], check=True,
                       timeout=30)

    def log() -> str:
        err.seek(0)
        return err.read()

    try:
        assert child.stdout.readline().strip() == str(child.pid)
        assert say("publish 5") == "5"
        wait_for(lambda: _stored(db) == [1, 2, 3, 4, 5], what="the first events written")
        fiu("enable")
        assert say("publish 20") == "25"
        wait_for(lambda: log().count("event log: could not store 20 events") == 1, what="the failure logged")
        assert "reconnecting" in log()
        assert _stored(db) == [1, 2, 3, 4, 5]
        # More events while it fails: kept with the others.
        assert say("publish 5") == "30"
        fiu("disable")
        wait_for(lambda: _stored(db) == list(range(1, 31)), what="the kept events written after the fault")
        assert "event log: writing again after" in log()
        assert say("close") == "closed"
        assert child.wait(30) == 0, log()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        err.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT clean FROM events_run").fetchone() == (1,)
    finally:
        conn.close()


def test_events_written_through_the_spool_survive_a_write_lock_held_too_long(online: DaemonProcess,
                                                                              central_sim: CentralSim) -> None:
    """In the daemon the event log is written by the spool's writer thread. Another process holds
    the file's write lock past busy_timeout (10 s, and as long for each write queued before
    them): the writes fail, the events stay in memory
    (live clients get them meanwhile), and once the lock is free they are stored, so that a
    client resuming from before them gets them."""
    d = online
    # The first retention run (a few seconds after start) would queue behind the lock too.
    wait_for(lambda: "terminald.retention" in d.stderr_text(), what="the first retention run")
    with EventStream(d, last_event_id=0) as live:
        live.wait_for("upstream.online")
        before = live.events[-1].id
        holder = sqlite3.connect(d.state_dir / "spool.db", isolation_level=None, timeout=30)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            central_sim.control(down=True)  # the link goes offline: an event, no sale needed
            offline = live.wait_for("upstream.offline", timeout_s=30)
            wait_for(lambda: "event log: could not store" in d.stderr_text(), timeout_s=30,
                     what="the events writer to fail on the held lock")
            assert offline.id > before
            assert offline.id not in _stored(d.state_dir / "spool.db")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    wait_for(lambda: "event log: writing again after" in d.stderr_text(), timeout_s=30,
             what="the events writer to write again")
    assert offline.id in _stored(d.state_dir / "spool.db")
    with EventStream(d, last_event_id=before) as resumed:
        replayed = resumed.wait_for("upstream.offline")
    assert replayed.id == offline.id and replayed.data == offline.data
    assert_contiguous(resumed.events[: offline.id - before], before)

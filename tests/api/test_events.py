"""GET /v1/events: live delivery, Last-Event-ID replay (also across restarts), >= 1,000 replayable."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from terminald.events import EventBus
from terminald.sim.central import CentralSim
from tests.api.helpers import central_config, post_tx, sale
from tests.api.sse import EventStream, assert_contiguous
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

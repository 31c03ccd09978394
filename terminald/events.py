"""The event bus: what happened, for the POS (SSE) and the status page.

Events are numbered monotonically and kept in the spool's database file, so a
client reconnecting with `Last-Event-ID` gets what it missed, across daemon
restarts too. Writes go through one background thread: publishing never
blocks the event loop or a driver thread, and an event is at most a
notification (losing the last few in a crash loses no record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from spool.store import connect, migrate

log = logging.getLogger("terminald.events")

KEEP = 10_000  # replayable history; the contract asks for at least 1,000
# Ids skipped after a run that did not stop cleanly: more than the events that can be published
# but not yet written when the process dies (the writer lags by tens of milliseconds).
CRASH_GAP = 1000
# The writer lets a burst gather before it writes: one wake-up and one transaction per burst
# rather than per event keeps it from competing with the API for the interpreter under load.
GATHER_S = 0.02

MIGRATIONS = [
    """CREATE TABLE events (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL,
         data TEXT NOT NULL,
         at TEXT NOT NULL)""",
    # One row: did the last run stop cleanly (every published event written)?
    """CREATE TABLE events_run (
         one INTEGER PRIMARY KEY CHECK (one = 1),
         clean INTEGER NOT NULL)""",
]


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    data: dict[str, Any]

    def sse(self) -> bytes:
        payload = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.name}\ndata: {payload}\n\n".encode()


class EventBus:
    def __init__(self, db_path: Path, tz: tzinfo | None = None) -> None:
        self._db_path = db_path
        # The terminal's time zone, like every other time the daemon reports; None: the system's.
        self._tz = tz
        self._lock = threading.Lock()
        self._next_id = 1
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = set()
        self._pending: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        conn = connect(self._db_path)
        migrate(conn, "events", MIGRATIONS)
        row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        run = conn.execute("SELECT clean FROM events_run").fetchone()
        # A run that died may have sent live clients events it never wrote: skip past every id
        # they can have seen, so that an id never names two events (Last-Event-ID stays true).
        gap = CRASH_GAP if run is not None and not run[0] else 0
        self._next_id = int(row[0]) + 1 + gap
        with conn:
            conn.execute("INSERT OR REPLACE INTO events_run (one, clean) VALUES (1, 0)")
        conn.close()
        self._writer = threading.Thread(target=self._write_loop, name="events-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._pending.put(None)
            self._writer.join(timeout=5)
            self._writer = None

    def publish(self, name: str, data: dict[str, Any] | None = None) -> Event:
        """Thread-safe; callable from any thread or the loop."""
        now = datetime.now(self._tz) if self._tz is not None else datetime.now().astimezone()
        body = {"at": now.isoformat(timespec="milliseconds"), **(data or {})}
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # a driver or writer thread
            here = None
        # Numbered and handed to each loop under one lock: every subscriber's queue then gets
        # the events in id order (a stream skips ids it has passed, so a late one would be lost).
        with self._lock:
            event = Event(self._next_id, name, body)
            self._next_id += 1
            self._pending.put(event)
            for loop, q in self._subscribers:
                if loop is here:
                    loop.call_soon(q.put_nowait, event)  # this thread's loop: no self-pipe wake-up
                    continue
                with contextlib.suppress(RuntimeError):  # that loop is closed: the subscriber is gone
                    loop.call_soon_threadsafe(q.put_nowait, event)
        return event

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def since(self, last_id: int, limit: int = KEEP) -> list[Event]:
        """Stored events after `last_id`, oldest first (for replay)."""
        conn = connect(self._db_path, readonly=True)
        try:
            rows = conn.execute(
                "SELECT id, name, data FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
            ).fetchall()
        finally:
            conn.close()
        return [Event(int(r[0]), str(r[1]), json.loads(r[2])) for r in rows]

    async def stream(self, last_id: int | None) -> AsyncIterator[Event]:
        """Replay what a client missed, then follow live, without gaps or repeats."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=0)
        entry = (loop, q)
        with self._lock:
            self._subscribers.add(entry)
        try:
            sent = last_id if last_id is not None else self.last_id
            if last_id is not None:
                # The writer may lag behind publish(): wait until what we replay is on disk.
                await asyncio.to_thread(self.flush)
                for event in await asyncio.to_thread(self.since, last_id):
                    yield event
                    sent = event.id
            while True:
                event = await q.get()
                if event.id > sent:
                    sent = event.id
                    yield event
        finally:
            with self._lock:
                self._subscribers.discard(entry)

    def flush(self) -> None:
        done = threading.Event()
        self._pending.put(_Marker(done))  # type: ignore[arg-type]
        done.wait(timeout=5)

    def _write_loop(self) -> None:
        conn = connect(self._db_path)
        # Events are notifications, not records: skip the per-commit sync.
        conn.execute("PRAGMA synchronous=NORMAL")
        written = 0
        lost = False
        while True:
            item = self._pending.get()
            if isinstance(item, Event):
                time.sleep(GATHER_S)
            batch: list[Event] = []
            markers: list[_Marker] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Marker):
                    markers.append(item)
                else:
                    batch.append(item)
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    with conn:
                        conn.executemany(
                            "INSERT OR IGNORE INTO events (id, name, data, at) VALUES (?, ?, ?, ?)",
                            [(e.id, e.name, json.dumps(e.data, ensure_ascii=False), e.data["at"]) for e in batch],
                        )
                    written += len(batch)
                    if written >= 1000:
                        written = 0
                        with conn:
                            conn.execute("DELETE FROM events WHERE id <= ?", (batch[-1].id - KEEP,))
                except sqlite3.Error:
                    lost = True
                    log.exception("could not store %d events", len(batch))
            for marker in markers:
                marker.done.set()
            if stop:
                if not lost:
                    try:
                        with conn:
                            conn.execute("UPDATE events_run SET clean = 1")
                    except sqlite3.Error:
                        log.exception("could not record a clean stop of the event log")
                conn.close()
                return


@dataclass
class _Marker:
    done: threading.Event


REPLAY_MIN = 1000  # the contract: a reconnect with Last-Event-ID replays at least the last 1,000


def prune_before(db_path: Path, before: datetime, keep_last: int = REPLAY_MIN) -> int:
    """Delete stored events older than ``before``, oldest first, always keeping the newest ``keep_last``.

    For the retention task (terminald/retention.py), on its own connection. Only a prefix of
    ids goes, up to the first event at or after ``before`` (an event whose time cannot be read
    does not stop it), so a replay never has a hole in the middle. The newest id always stays,
    so ids are never used twice after a restart. Returns the number deleted.
    """
    if before.tzinfo is None:
        raise ValueError("before must be timezone-aware")
    if keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    conn = connect(db_path)
    try:
        migrate(conn, "events", MIGRATIONS)
        # Counted, not computed from ids: ids have gaps (CRASH_GAP after an unclean stop).
        row = conn.execute("SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", (keep_last - 1,)).fetchone()
        if row is None:
            return 0
        keep_from = int(row[0])
        stop = conn.execute(
            "SELECT id FROM events WHERE id < ? AND julianday(at) >= julianday(?) ORDER BY id LIMIT 1",
            (keep_from, before.isoformat()),
        ).fetchone()
        if stop is not None:
            keep_from = int(stop[0])
        return int(conn.execute("DELETE FROM events WHERE id < ?", (keep_from,)).rowcount)
    finally:
        conn.close()

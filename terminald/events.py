"""The event bus: what happened, for the POS (SSE) and the status page.

Events are numbered monotonically and kept in the spool's database file, so a
client reconnecting with `Last-Event-ID` gets what it missed, across daemon
restarts too. Writes go through one background thread: publishing never
blocks the event loop or a driver thread, and an event is at most a
notification (losing the last few in a crash loses no record). A database
error does not stop that thread: it logs, reconnects and writes the events it
kept again, with a growing pause (see `_write_loop`).

Each live stream has a bounded queue (`QUEUE_MAX`): a client that stops
reading is dropped once it is that far behind, rather than holding memory
without end; it resumes with `Last-Event-ID` from the stored events. A
`Last-Event-ID` this event log never issued (ahead of the last id), or older
than the oldest event kept, gets a `reset` event first (docs/api.md, "Events").
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
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from spool import Spool
from spool.errors import SpoolError
from spool.store import connect, migrate, schema_version
from terminald.timefmt import local_times

log = logging.getLogger("terminald.events")

KEEP = 10_000  # replayable history; the contract asks for at least 1,000
# Ids skipped after a run that did not stop cleanly: more than the events that can be published
# but not yet written when the process dies (the writer lags by tens of milliseconds).
CRASH_GAP = 1000
# The writer lets a burst gather before it writes: one wake-up and one transaction per burst
# rather than per event keeps it from competing with the API for the interpreter under load.
GATHER_S = 0.02
# Live events a stream may be behind (published, not yet sent because the client does not read)
# before it is dropped, once it has taken nothing for STALL_S; and behind which it is dropped
# even while it reads (too slowly), well short of KEEP so that it can still resume. The client
# resumes with Last-Event-ID from the stored events.
QUEUE_MAX = 1000
QUEUE_HARD_MAX = 5000
STALL_S = 1.0
# Replay reads the stored events this many at a time.
REPLAY_PAGE = 1000
# After a database error the writer keeps the events it could not write and tries again, the
# pause doubling from RETRY_FIRST_S up to RETRY_MAX_S. It keeps at most UNWRITTEN_MAX of them
# (a failing disk must not eat memory either): beyond that the oldest are given up, logged.
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
UNWRITTEN_MAX = KEEP
# While it goes on failing, one log line per this many seconds (the first failure and the
# recovery are always logged).
FAILURE_LOG_EVERY_S = 60.0
# The name of the event that tells a client its Last-Event-ID cannot be honoured.
RESET = "reset"

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


class Subscription:
    """One live stream's queue, on the stream's event loop: bounded.

    `offer` runs on that loop (publish schedules it there). A reader that has taken nothing
    for `STALL_S` while `limit` events wait for it has stopped reading (a client whose TCP
    window is full: the API is stuck sending to it); one that falls `hard_limit` behind while
    still reading reads too slowly. Either is dropped: the queue is emptied, `dropped` is set
    and `get` answers None from then on, so the stream ends (the API also ends the response:
    see api/events.py). A burst of events faster than the loop hands them over (a batch of
    outcomes) is neither: the clock starts when there is something to take.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = QUEUE_MAX, label: str = "", *,
                 hard_limit: int = QUEUE_HARD_MAX, stall_s: float = STALL_S) -> None:
        self.loop = loop
        self.limit = limit
        self.hard_limit = max(hard_limit, limit)
        self.stall_s = stall_s
        self.label = label
        self._queue: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._progress_at = time.monotonic()  # the last take, or the first event after the queue was empty
        self.dropped = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Events queued for this reader now."""
        return len(self._queue)

    def offer(self, event: Event) -> None:
        if self.dropped.is_set():
            return
        now = time.monotonic()
        waiting = len(self._queue)
        if waiting == 0:
            self._progress_at = now
        elif waiting >= self.hard_limit or (waiting >= self.limit and now - self._progress_at >= self.stall_s):
            first = self._queue[0].id
            self._queue.clear()
            self.dropped.set()
            self._ready.set()
            log.warning("event stream%s dropped: %d events behind (from id %d on), %s; it can resume "
                        "with Last-Event-ID", f" of {self.label}" if self.label else "", waiting, first,
                        f"nothing taken for {now - self._progress_at:.1f} s" if waiting < self.hard_limit
                        else "it reads slower than events come")
            return
        self._queue.append(event)
        self._ready.set()

    async def get(self) -> Event | None:
        """The next live event, oldest first; None once dropped."""
        while not self._queue:
            if self.dropped.is_set():
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.dropped.is_set():
            return None
        self._progress_at = time.monotonic()
        return self._queue.popleft()


class EventBus:
    def __init__(self, db_path: Path, tz: tzinfo | None = None) -> None:
        self._db_path = db_path
        # The terminal's time zone, like every other time the daemon reports; None: the system's.
        self._tz = tz
        self._lock = threading.Lock()
        self._next_id = 1
        self._subscribers: set[Subscription] = set()
        self._pending: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._written = 0  # events written since the last trim of the table (writer thread only)
        self._spool: Spool | None = None  # the spool this process has open on the file: its writer writes

    def open(self) -> None:
        self._spool = Spool.opened(self._db_path)
        conn = connect(self._db_path)
        migrate(conn, "events", MIGRATIONS)
        row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        run = conn.execute("SELECT clean FROM events_run").fetchone()
        # A run that died may have sent live clients events it never wrote: skip past every id
        # they can have seen, so that an id never names two events (Last-Event-ID stays true).
        gap = CRASH_GAP if run is not None and not run[0] else 0
        self._next_id = int(row[0]) + 1 + gap
        try:
            self._write(conn, lambda c: c.execute("INSERT OR REPLACE INTO events_run (one, clean) VALUES (1, 0)"))
        finally:
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
        body = local_times({"at": self._now(), **(data or {})}, self._tz)  # a stored `at` too: in the zone
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
            for sub in self._subscribers:
                if sub.loop is here:
                    sub.loop.call_soon(sub.offer, event)  # this thread's loop: no self-pipe wake-up
                    continue
                with contextlib.suppress(RuntimeError):  # that loop is closed: the subscriber is gone
                    sub.loop.call_soon_threadsafe(sub.offer, event)
        return event

    def _now(self) -> str:
        now = datetime.now(self._tz) if self._tz is not None else datetime.now().astimezone()
        return now.isoformat(timespec="milliseconds")

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

    def oldest_id(self) -> int | None:
        """The id of the oldest stored event (None: none stored)."""
        conn = connect(self._db_path, readonly=True)
        try:
            row = conn.execute("SELECT MIN(id) FROM events").fetchone()
        finally:
            conn.close()
        return None if row is None or row[0] is None else int(row[0])

    def subscription(self, label: str = "", limit: int = QUEUE_MAX) -> Subscription:
        """A bounded live queue for `stream`, on the running loop (registered by `stream`)."""
        return Subscription(asyncio.get_running_loop(), limit, label)

    async def stream(self, last_id: int | None, sub: Subscription | None = None, *,
                     instance_id: str = "") -> AsyncIterator[Event]:
        """Replay what a client missed, then follow live, without gaps or repeats.

        A `last_id` this log never issued (past the last id) or one whose successors are no
        longer stored (older than the oldest kept event, less one) first gets a `reset` event
        (not stored, not numbered: its `id:` is where the client stands now). The stream ends
        when `sub` is dropped (the client fell `sub.limit` events behind).
        """
        sub = sub if sub is not None else self.subscription("an in-process reader")
        with self._lock:
            self._subscribers.add(sub)
            issued = self.last_id  # every id above this one reaches `sub`
        try:
            sent = last_id if last_id is not None else issued
            if last_id is not None:
                # The writer may lag behind publish(): wait until what we replay is on disk.
                await asyncio.to_thread(self.flush)
                oldest = await asyncio.to_thread(self.oldest_id)
                if last_id > issued:
                    yield self._reset("not_issued", last_id, issued, oldest, issued, instance_id)
                    sent = issued
                elif oldest is not None and last_id < oldest - 1:
                    yield self._reset("expired", last_id, issued, oldest, oldest - 1, instance_id)
                    sent = oldest - 1
                while True:  # a page at a time: a long replay holds one page in memory
                    page = await asyncio.to_thread(self.since, sent, REPLAY_PAGE)
                    for event in page:
                        yield event
                        sent = event.id
                    if len(page) < REPLAY_PAGE:
                        break
            while True:
                live = await sub.get()
                if live is None:
                    return  # dropped: the client resumes with Last-Event-ID
                if live.id > sent:
                    sent = live.id
                    yield live
        finally:
            with self._lock:
                self._subscribers.discard(sub)

    def _reset(self, reason: str, last_event_id: int, issued: int, oldest: int | None, position: int,
               instance_id: str) -> Event:
        data = {"at": self._now(), "reason": reason, "last_event_id": last_event_id,
                "instance_id": instance_id, "last_id": issued, "oldest_id": oldest}
        return Event(position, RESET, data)

    def flush(self) -> None:
        done = threading.Event()
        self._pending.put(_Marker(done))  # type: ignore[arg-type]
        done.wait(timeout=5)

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self._db_path)
        try:
            # Events are notifications, not records: skip the per-commit sync.
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _write(self, conn: sqlite3.Connection | None, fn: Callable[[sqlite3.Connection], object]) -> None:
        """Every write of the event log. With the spool open in this process: on its writer thread
        (`Spool.write`, the file's one writer), sharing its next group commit; else on `conn`."""
        if self._spool is not None:
            self._spool.write(fn)
            return
        assert conn is not None, "the events writer writes on its own connection when no spool is open"
        with conn:
            fn(conn)

    def _store(self, conn: sqlite3.Connection | None, batch: list[Event]) -> None:
        """Write `batch` (ids not stored yet; a retry may repeat some: ignored), and trim the table
        every 1000 events, in one write."""
        rows = [(e.id, e.name, json.dumps(e.data, ensure_ascii=False), e.data["at"]) for e in batch]
        trim = self._written + len(batch) >= 1000
        cutoff = batch[-1].id - KEEP

        def write(c: sqlite3.Connection) -> None:
            c.executemany("INSERT OR IGNORE INTO events (id, name, data, at) VALUES (?, ?, ?, ?)", rows)
            if trim:
                c.execute("DELETE FROM events WHERE id <= ?", (cutoff,))

        self._write(conn, write)
        self._written = 0 if trim else self._written + len(batch)

    def _write_loop(self) -> None:
        """Write what is published, in bursts; never ends but on close().

        A database error (the disk, a lock held too long, a connection gone bad) is logged, the
        connection dropped, and the events kept for the next try, after a pause that doubles up
        to RETRY_MAX_S; new events join them. Any other error loses that burst (logged): it
        would fail again. Either way the thread goes on.
        """
        conn: sqlite3.Connection | None = None
        self._written = 0
        lost = False  # some published event was never written: the next start skips CRASH_GAP ids
        unwritten: list[Event] = []
        failures = 0
        failing_since = 0.0
        logged_at = 0.0
        while True:
            pause = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (failures - 1)) if unwritten else None
            try:
                item: Event | _Marker | str | None = self._pending.get(timeout=pause)
            except queue.Empty:
                item = "retry"
            if isinstance(item, Event):
                time.sleep(GATHER_S)
            markers: list[_Marker] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Marker):
                    markers.append(item)
                elif isinstance(item, Event):
                    unwritten.append(item)
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
            if len(unwritten) > UNWRITTEN_MAX:
                given_up = len(unwritten) - UNWRITTEN_MAX
                lost = True
                log.error("event log: gave up %d events that could not be written (ids %d-%d): "
                          "a client resuming from before them misses them",
                          given_up, unwritten[0].id, unwritten[given_up - 1].id)
                del unwritten[:given_up]
            if unwritten:
                try:
                    if conn is None and self._spool is None:
                        conn = self._connect()
                    self._store(conn, unwritten)
                except (sqlite3.Error, SpoolError) as exc:
                    now = time.monotonic()
                    failures += 1
                    if failures == 1:
                        failing_since = logged_at = now
                        log.error("event log: could not store %d events (%s: %s); reconnecting, they are "
                                  "kept and written again", len(unwritten), type(exc).__name__, exc,
                                  exc_info=True)
                    elif now - logged_at >= FAILURE_LOG_EVERY_S:
                        logged_at = now
                        log.error("event log: still cannot store %d events after %d tries (%s: %s)",
                                  len(unwritten), failures, type(exc).__name__, exc)
                    if conn is not None:  # it may be the trouble: the next try opens a fresh one
                        with contextlib.suppress(sqlite3.Error):
                            conn.close()
                        conn = None
                except Exception:
                    lost = True
                    log.exception("event log: could not store %d events; given up", len(unwritten))
                    unwritten = []
                else:
                    if failures:
                        log.warning("event log: writing again after %d failed tries over %.1f s", failures,
                                    time.monotonic() - failing_since)
                    unwritten, failures = [], 0
            for marker in markers:
                marker.done.set()
            if stop:
                if unwritten:
                    lost = True
                    log.error("event log: %d events could not be written before the stop (ids %d-%d)",
                              len(unwritten), unwritten[0].id, unwritten[-1].id)
                if not lost:
                    try:
                        if conn is None and self._spool is None:
                            conn = self._connect()
                        self._write(conn, lambda c: c.execute("UPDATE events_run SET clean = 1"))
                    except (sqlite3.Error, SpoolError):
                        log.exception("could not record a clean stop of the event log")
                if conn is not None:
                    conn.close()
                return


@dataclass
class _Marker:
    done: threading.Event


REPLAY_MIN = 1000  # the contract: a reconnect with Last-Event-ID replays at least the last 1,000


def prune_before(db_path: Path, before: datetime, keep_last: int = REPLAY_MIN) -> int:
    """Delete stored events older than ``before``, oldest first, always keeping the newest ``keep_last``.

    For the retention task (terminald/retention.py): through the writer of the spool this
    process has open on ``db_path`` (`Spool.write`), else on a connection of its own. Only a
    prefix of ids goes, up to the first event at or after ``before`` (an event whose time
    cannot be read does not stop it), so a replay never has a hole in the middle. The newest id
    always stays, so ids are never used twice after a restart. Returns the number deleted.
    """
    if before.tzinfo is None:
        raise ValueError("before must be timezone-aware")
    if keep_last < 1:
        raise ValueError("keep_last must be at least 1")

    def prune(conn: sqlite3.Connection) -> int:
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

    spool = Spool.opened(db_path)
    conn = connect(db_path)
    try:
        # A migration takes the write lock even with nothing to do: only when there is something.
        if spool is None or schema_version(conn, "events") < len(MIGRATIONS):
            migrate(conn, "events", MIGRATIONS)
        if spool is not None:
            return spool.write(prune)
        return prune(conn)
    finally:
        conn.close()

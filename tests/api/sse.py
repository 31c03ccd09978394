"""A small Server-Sent Events client for the tests: a stream read by a thread, events parsed."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.fixtures.daemon import DaemonProcess


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    data: dict[str, Any]


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Events from SSE lines (comments and `retry:` skipped); every event must carry an id."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield Event(int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"]))
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


class EventStream:
    """GET /v1/events in a background thread; `events` grows as they arrive."""

    def __init__(self, d: DaemonProcess, last_event_id: int | None = None, since: int | None = None,
                 headers: dict[str, str | bytes] | None = None) -> None:
        merged: dict[str, str | bytes] = {"Authorization": f"Bearer {d.token}", **(headers or {})}
        if last_event_id is not None:
            merged["Last-Event-ID"] = str(last_event_id)
        raw = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in merged.items()]
        params = {} if since is None else {"since": since}
        self.events: list[Event] = []
        self.status: int | None = None
        self.error: BaseException | None = None
        self._connected = threading.Event()
        self._closing = False
        self.ended = False  # the server finished the response
        self._socket: socket.socket | None = None
        self._client = httpx.Client(base_url=d.url, headers=raw,
                                    timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._run, args=(params,), daemon=True)
        self._thread.start()
        if not self._connected.wait(10):
            raise AssertionError("the event stream did not connect")
        assert self.status == 200, (self.status, self.error)

    def _run(self, params: dict[str, int]) -> None:
        try:
            with self._client.stream("GET", "/v1/events", params=params) as response:
                self.status = response.status_code
                # Kept to shut it down from close(): closing the client does not wake a blocked read.
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                self._connected.set()
                for event in parse(response.iter_lines()):
                    self.events.append(event)
                self.ended = True
        except BaseException as exc:  # the stream ends when close() shuts the client
            if not self._closing:
                self.error = exc
        finally:
            self._connected.set()

    def wait(self, count: int, timeout_s: float = 20.0) -> list[Event]:
        """Until at least `count` events arrived; returns them."""
        deadline = time.monotonic() + timeout_s
        while len(self.events) < count:
            if self.error is not None:
                raise AssertionError(f"the event stream failed: {self.error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.events)} events after {timeout_s}s, wanted {count}")
            time.sleep(0.02)
        return list(self.events)

    def wait_for(self, name: str, timeout_s: float = 20.0) -> Event:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [e for e in self.events if e.name == name]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {name} event after {timeout_s}s: {[e.name for e in self.events]}")
            time.sleep(0.02)

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait for the server to end the stream."""
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the event stream is still open"

    def close(self) -> None:
        self._closing = True
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        with contextlib.suppress(Exception):
            self._client.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def assert_contiguous(events: list[Event], after: int) -> None:
    """Ids start right after `after` and go up by one: no gap, no repeat."""
    ids = [e.id for e in events]
    assert ids == list(range(after + 1, after + 1 + len(ids))), ids[:20]

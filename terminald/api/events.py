"""Server-Sent Events, resumable with Last-Event-ID.

Each stream reads from a bounded queue (terminald/events.py): a client that
stops reading is dropped once it is `QUEUE_MAX` events behind, and its
response ends then, even though uvicorn is waiting for that client's socket
to drain before it sends more (see `EventStreamResponse`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from terminald.api.deps import SQLITE_MAX_INT, daemon
from terminald.api.problems import problems
from terminald.events import Subscription

router = APIRouter(tags=["events"])

KEEPALIVE_S = 15.0

# Set in the task serving a stream that was dropped: uvicorn then reports the response it could
# not finish ("returned without completing response") as an error, which it is not here.
_DROPPED: ContextVar[bool] = ContextVar("terminald_event_stream_dropped", default=False)
_UNFINISHED = "ASGI callable returned without completing response"


class _DroppedStreamIsNoError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_DROPPED.get() and str(record.msg).startswith(_UNFINISHED))


logging.getLogger("uvicorn.error").addFilter(_DroppedStreamIsNoError())


class EventStreamResponse(StreamingResponse):
    """A StreamingResponse that also ends when its subscription is dropped.

    uvicorn waits, before each send, until the client's socket has room: a client that stops
    reading holds the send forever. Once the client is too far behind, the send is cancelled
    and the connection closed (after what is already buffered for it): the client sees its
    stream end and resumes with Last-Event-ID.
    """

    def __init__(self, content: AsyncIterator[bytes], sub: Subscription, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.sub = sub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.ensure_future(self.stream_response(send))
        dropped = asyncio.ensure_future(self.sub.dropped.wait())
        gone = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait({streaming, dropped, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, dropped, gone):
                task.cancel()
            await asyncio.gather(streaming, dropped, gone, return_exceptions=True)
            # Cancelled inside a send, the body generator is still suspended: end it now (its
            # `finally` unsubscribes) rather than whenever the collector finds it.
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
        if self.sub.dropped.is_set() and not (streaming.done() and not streaming.cancelled()
                                              and streaming.exception() is None):
            _DROPPED.set(True)
            return
        if streaming.done() and not streaming.cancelled() and streaming.exception() is not None:
            raise streaming.exception()  # type: ignore[misc]


@router.get("/v1/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, **problems({422: "validation_failed"})})
async def events(
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    since: Annotated[int | None, Query(ge=0, le=SQLITE_MAX_INT,
                                       description="same as Last-Event-ID, for EventSource-less clients")] = None,
) -> StreamingResponse:
    d = daemon(request)
    start = since
    if last_event_id is not None and last_event_id.strip().isascii() and last_event_id.strip().isdigit():
        # Past the largest SQLite integer: a client from the future, it has seen everything we have.
        start = min(int(last_event_id.strip()), SQLITE_MAX_INT)

    client = request.client
    sub = d.events.subscription(f"{client.host}:{client.port}" if client else "a client of the Unix socket")

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        stream = d.events.stream(start, sub, instance_id=d.instance_id).__aiter__()
        next_event = asyncio.ensure_future(stream.__anext__())
        stopping = asyncio.ensure_future(d.stopping.wait())
        try:
            while True:
                await asyncio.wait({next_event, stopping}, timeout=KEEPALIVE_S,
                                   return_when=asyncio.FIRST_COMPLETED)
                if stopping.done() or await request.is_disconnected():
                    return  # on shutdown too: the client reconnects with Last-Event-ID, misses nothing
                if not next_event.done():
                    yield b": keep-alive\n\n"
                    continue
                if isinstance(next_event.exception(), StopAsyncIteration):
                    return  # dropped (too far behind): the client resumes with Last-Event-ID
                yield next_event.result().sse()
                next_event = asyncio.ensure_future(stream.__anext__())
        finally:
            stopping.cancel()
            # The generator is suspended inside the pending __anext__: end that first,
            # or aclose() finds it "already running".
            next_event.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await next_event
            await stream.aclose()  # type: ignore[attr-defined]

    return EventStreamResponse(body(), sub, media_type="text/event-stream",
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

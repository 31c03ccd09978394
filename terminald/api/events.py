"""Server-Sent Events, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from terminald.api.deps import SQLITE_MAX_INT, daemon
from terminald.api.problems import problems

router = APIRouter(tags=["events"])

KEEPALIVE_S = 15.0


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

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        stream = d.events.stream(start).__aiter__()
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

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

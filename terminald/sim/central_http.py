"""HTTP plumbing of the central simulator: read a request (h11), answer JSON, reset a connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from typing import Any

import h11

__all__ = ["abort", "json_answer", "read_request"]


async def read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[str, str, dict[str, str], bytes] | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
            return request.method.decode(), request.target.decode(), headers, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None


def json_answer(
    status: int, obj: Any, extra: list[tuple[str, str]] | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps(obj, ensure_ascii=False).encode()
    return status, [("Content-Type", "application/json"), *(extra or [])], body


def abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()

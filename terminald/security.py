"""Access control for the local API, as one ASGI middleware.

A website open in the counter's browser, or a DNS-rebinding page that
resolves its own name to 127.0.0.1, must get nothing. So, in this order:
`Host` must be an allowed name (else 421), a cross-origin request must come
from a configured origin (else 403), the body must stay under the limit
(else 413, also for chunked bodies), and every endpoint but `/v1/health` and
the status-page shell needs the bearer token (else 401).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from terminald.api.problems import problem_response
from terminald.errors import BodyTooLarge

PUBLIC_PATHS = frozenset({"/v1/health", "/", "/favicon.ico"})
# The only request headers access control looks at (ASGI gives names in lower case).
_CHECKED = frozenset({b"host", b"origin", b"content-length", b"authorization", b"transfer-encoding"})
PUBLIC_PREFIXES = ("/static/",)


def load_or_create_token(path: Path) -> str:
    """The API token, created (0640, owner and group only) on first start."""
    try:
        token = path.read_text(encoding="ascii").strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)
    return token


def _host_name(host: str) -> str:
    """`localhost:8631` -> `localhost`; `[::1]:8631` -> `[::1]`."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if ":" in host else host


class AccessControl:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        allowed_hosts: Iterable[str],
        allowed_origins: Iterable[str],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = {h.lower() for h in allowed_hosts}
        self.origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _CHECKED}
        path: str = scope["path"]
        # A Unix-socket client has no meaningful Host; the socket's permissions guard it.
        # uvicorn reports a Unix socket's server as (path, None), TCP as (host, port).
        server = scope.get("server")
        via_socket = not server or server[1] is None
        host = headers.get("host", "")
        if not via_socket and _host_name(host) not in self.hosts:
            await problem_response(421, "host_not_allowed", "Misdirected request",
                                   "this Host is not served here")(scope, receive, send)
            return
        origin = headers.get("origin")
        cors_headers: list[tuple[bytes, bytes]] = []
        if origin is not None and not self._same_origin(origin, host):
            if origin.rstrip("/").lower() not in self.origins:
                await problem_response(403, "origin_not_allowed", "Forbidden",
                                       "cross-origin requests from this origin are not allowed")(
                    scope, receive, send)
                return
            cors_headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
                (b"access-control-allow-headers", b"authorization, content-type, idempotency-key, last-event-id"),
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-max-age", b"600"),
            ]
            if scope["method"] == "OPTIONS":
                await send({"type": "http.response.start", "status": 204, "headers": cors_headers})
                await send({"type": "http.response.body", "body": b""})
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await problem_response(413, "body_too_large", "Payload too large",
                                   f"bodies are limited to {self.max_body} bytes")(scope, receive, send)
            return
        if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES) and not self._authorized(headers):
            await problem_response(401, "unauthorized", "Unauthorized",
                                   "a valid 'Authorization: Bearer <token>' header is required",
                                   headers=[(b"www-authenticate", b"Bearer")])(scope, receive, send)
            return
        if length is None and "chunked" in headers.get("transfer-encoding", "").lower():
            # Read a chunked body here, before any route does: a route's body parser would turn
            # the overflow into its own 400, and nothing of an oversize body must reach the app.
            buffered = await self._read_chunked(receive)
            if buffered is None:
                await problem_response(413, "body_too_large", "Payload too large",
                                       f"bodies are limited to {self.max_body} bytes")(scope, receive, send)
                return
            receive = _replay(buffered, receive)
        await self.app(scope, self._limited(receive, scope, send), self._with_headers(send, cors_headers))

    async def _read_chunked(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (or the client goes away)."""
        parts: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.max_body:
                return None
            parts.append(body)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _same_origin(self, origin: str, host: str) -> bool:
        bare = origin.split("://", 1)[-1].rstrip("/").lower()
        return bare == host.lower() and _host_name(host) in self.hosts

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token)

    def _limited(self, receive: Receive, scope: Scope, send: Send) -> Receive:
        seen = 0
        limit = self.max_body

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(f"bodies are limited to {limit} bytes")
            return message

        return wrapped

    @staticmethod
    def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
        if not extra:
            return send

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return wrapped


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands out an already-read body once, then defers to the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

"""Access control for the local API, as one ASGI middleware, and the token files it checks.

A website open in the counter's browser, or a DNS-rebinding page that
resolves its own name to 127.0.0.1, must get nothing. So, in this order:
`Host` must be an allowed name (else 421; also when the server address is
unknown), a cross-origin request must come from a configured origin (else
403), the body must stay under the limit (else 413, also for chunked bodies),
and every endpoint but `/v1/health` and the status-page shell needs a bearer
token (else 401).

Two tokens: the POS's (`api.token_file`), which may call everything, and the
status page's (`api.status_token_file`), which may call only what
`STATUS_PAGE_ROUTES` lists (else 403 `token_not_allowed`) and gets card
numbers masked in every JSON answer. Both files are re-read when they change
(`terminald token rotate`): each request stats the file (one cached-inode
syscall), so the old token is refused from the first request after the rename.
"""

from __future__ import annotations

import contextlib
import grp
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spool.store import fsync_dir
from terminald.api.problems import problem_response
from terminald.errors import BodyTooLarge, ConfigError
from terminald.privacy import mask_card, mask_name, mask_ssn

log = logging.getLogger("terminald")

PUBLIC_PATHS = frozenset({"/v1/health", "/", "/favicon.ico"})
# The only request headers access control looks at (ASGI gives names in lower case).
_CHECKED = frozenset({b"host", b"origin", b"content-length", b"authorization", b"transfer-encoding"})
PUBLIC_PREFIXES = ("/static/",)
TOKEN_MODE = 0o640  # owner and the API group read it; nobody else

Scope_ = Literal["full", "status"]

# What the status page's read-only token may call: everything the page reads, resolving a
# rejection, printing a receipt again and retrying a print job. One table, here: a new route
# is closed to that token until someone adds it. `{id}` is one path segment.
_READ = frozenset({"GET"})
STATUS_PAGE_ROUTES: tuple[tuple[frozenset[str], str], ...] = (
    (_READ, "/v1/status"),
    (_READ, "/v1/devices"),
    (_READ, "/v1/transactions"),
    (_READ, "/v1/transactions/{id}"),
    (_READ, "/v1/outages"),
    (_READ, "/v1/events"),
    (_READ, "/v1/followups"),
    (_READ, "/v1/print-jobs"),
    (_READ, "/v1/print-jobs/{id}"),
    (frozenset({"POST"}), "/v1/transactions/{id}/resolve"),
    (frozenset({"POST"}), "/v1/transactions/{id}/receipt"),
    (frozenset({"POST"}), "/v1/print-jobs/{id}/retry"),
)
_STATUS_PAGE_PATTERNS = tuple(
    (methods, re.compile(re.escape(path).replace(re.escape("{id}"), "[^/]+")))
    for methods, path in STATUS_PAGE_ROUTES)


def status_token_may(method: str, path: str) -> bool:
    """Whether the status page's token may make this call."""
    return any(method in methods and pattern.fullmatch(path) for methods, pattern in _STATUS_PAGE_PATTERNS)


# -- token files ---------------------------------------------------------------------------------------
def api_group_id(name: str) -> int | None:
    """The gid of the API group, or None when it is not configured or does not exist here."""
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def write_token_file(path: Path, token: str, *, mode: int = TOKEN_MODE, uid: int = -1, gid: int = -1) -> None:
    """Write `token` to `path` atomically: a new file with this mode and owner, fsynced, renamed
    over the old one. Readers see the old token or the new one, never a partial file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # explicit: the umask never widens nor narrows it
            os.write(fd, token.encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _read_token(path: Path) -> str:
    return path.read_text(encoding="ascii").strip()


def _usable_gid(gid: int | None, path: Path) -> int:
    """`gid` if this process may give a file to it (root, or a member), else -1 (keep our own)."""
    if gid is None or gid == os.getegid():
        return -1
    if os.geteuid() == 0 or gid in os.getgroups():
        return gid
    log.warning("%s keeps this user's group: it is not a member of group id %d (the API group), "
                "so members of that group cannot read it", path, gid)
    return -1


def load_or_create_token(path: Path, gid: int | None = None) -> str:
    """The token in `path`, created on first start: 0640, group `gid` (the API group) when given."""
    try:
        token = _read_token(path)
        if token:
            return token
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the API token file {path}: {exc}") from exc
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_token_file(path, token, gid=_usable_gid(gid, path))
    except OSError as exc:
        raise ConfigError(f"cannot create the API token file {path}: {exc.strerror or exc} (its directory "
                          f"must exist and be writable by this user; see docs/install.md)") from exc
    return token


@dataclass(frozen=True)
class Rotated:
    path: Path
    mode: int
    uid: int
    gid: int
    token: str
    created: bool  # there was no token file before


def rotate_token(path: Path, gid_if_new: int | None = None) -> Rotated:
    """Replace the token in `path` with a new random one, atomically, keeping the old file's mode
    and owner (a missing file is created like the daemon would). The running daemon sees the new
    file on its next request and refuses the old token from then on."""
    token = secrets.token_urlsafe(32)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        # Never create the directory: one made here (by root, with root's umask) would lock the
        # daemon out of its own token or hand it to the wrong people. The daemon or tmpfiles make it.
        write_token_file(path, token, gid=_usable_gid(gid_if_new, path))
        st = os.stat(path)
        return Rotated(path, TOKEN_MODE, st.st_uid, st.st_gid, token, created=True)
    mode = st.st_mode & 0o7777
    write_token_file(path, token, mode=mode, uid=st.st_uid, gid=st.st_gid)
    return Rotated(path, mode, st.st_uid, st.st_gid, token, created=False)


class TokenFile:
    """One token file, re-read when it changes (a rename gives a new inode; an edit a new mtime)."""

    def __init__(self, path: Path, gid: int | None = None) -> None:
        self.path = path
        self._value = load_or_create_token(path, gid).encode("ascii")
        self._stamp = self._stat()
        self._failed: tuple[int, int, int] | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @property
    def value(self) -> bytes:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            self._reload(stamp)
        # A file gone or unreadable keeps the token in force: revoking one is `token rotate`.
        return self._value

    def _reload(self, stamp: tuple[int, int, int]) -> None:
        try:
            text = _read_token(self.path)
        except (OSError, UnicodeDecodeError) as exc:
            text, why = "", str(exc)
        else:
            why = "it is empty"
        if not text:
            if self._failed != stamp:
                log.warning("the API token file %s changed but cannot be used (%s): the previous token "
                            "stays in force", self.path, why)
                self._failed = stamp
            return
        self._value, self._stamp, self._failed = text.encode("ascii"), stamp, None
        log.info("API token file %s changed: the new token is in force, the old one is refused", self.path)


class ApiTokens:
    """The POS's full token and the status page's read-only one."""

    def __init__(self, full: TokenFile | bytes, status: TokenFile | bytes | None = None) -> None:
        self._full = full
        self._status = status

    @classmethod
    def load(cls, token_path: Path, status_path: Path, group: str = "") -> ApiTokens:
        if token_path.resolve() == status_path.resolve():
            raise ConfigError(f"api.status_token_file must differ from api.token_file ({token_path})")
        gid = api_group_id(group)
        if group and gid is None:
            log.info("group %s does not exist: the API token files keep the daemon's own group", group)
        tokens = cls(TokenFile(token_path, gid), TokenFile(status_path, gid))
        if gid is not None:
            _warn_unreachable(token_path, gid, group)
        return tokens

    @staticmethod
    def _current(source: TokenFile | bytes | None) -> bytes | None:
        return source.value if isinstance(source, TokenFile) else source

    @property
    def full(self) -> str:
        value = self._current(self._full)
        assert value is not None
        return value.decode("ascii")

    @property
    def status(self) -> str | None:
        value = self._current(self._status)
        return None if value is None else value.decode("ascii")

    def scope_of(self, presented: str) -> Scope_ | None:
        """Which token this is ("full" or "status"), or None for neither."""
        given = presented.encode("utf-8", "replace")
        full = self._current(self._full)
        if full and hmac.compare_digest(given, full):
            return "full"
        status = self._current(self._status)
        if status and hmac.compare_digest(given, status):
            return "status"
        return None


def _warn_unreachable(path: Path, gid: int, group: str) -> None:
    """Say so when members of the API group cannot even reach the token file (it sits in the
    private state directory, say): the POS would fail with a bare 'permission denied'."""
    for directory in path.resolve().parents:
        try:
            st = os.stat(directory)
        except OSError:
            return
        if not (st.st_mode & 0o001 or (st.st_gid == gid and st.st_mode & 0o010)):
            log.warning("members of group %s cannot reach the API token %s: %s is mode %04o; put "
                        "api.token_file in a directory of that group (docs/install.md)", group, path,
                        directory, st.st_mode & 0o7777)
            return
    try:
        st = os.stat(path)
    except OSError:
        return
    if not (st.st_mode & 0o004 or (st.st_gid == gid and st.st_mode & 0o040)):
        log.warning("members of group %s cannot read the API token %s (mode %04o, group id %d): "
                    "chgrp %s %s", group, path, st.st_mode & 0o7777, st.st_gid, group, path)


# -- the daemon's own files ----------------------------------------------------------------------------
SPOOL_SIDE_SUFFIXES = ("", "-wal", "-shm", "-seq", "-journal")


def make_private(spool_path: Path) -> list[Path]:
    """Tighten the spool and its side files to 0600 (an older version made them 0640, group
    terminald). SQLite gives -wal and -shm the main file's mode, so new ones follow."""
    changed = []
    for suffix in SPOOL_SIDE_SUFFIXES:
        path = spool_path.with_name(spool_path.name + suffix)
        try:
            st = os.stat(path)
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.chmod(path, st.st_mode & 0o7700)
                changed.append(path)
        except FileNotFoundError:
            continue
    if changed:
        log.info("made private (0600): %s", ", ".join(str(p) for p in changed))
    return changed


# -- masking for the status page ----------------------------------------------------------------------
def _mask_cards(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _mask_cards(v) for k, v in value.items()}
        if isinstance(out.get("card_number"), str):
            out["card_number"] = mask_card(out["card_number"])
            if isinstance(out.get("ssn"), str):
                out["ssn"] = mask_ssn(out["ssn"])
            if isinstance(out.get("name"), str):
                out["name"] = mask_name(out["name"])
        return out
    if isinstance(value, list):
        return [_mask_cards(v) for v in value]
    return value


def mask_for_status_page(body: bytes) -> bytes:
    """A JSON answer with every card's number (and identity fields) masked."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    masked = _mask_cards(data)
    if masked == data:
        return body
    return json.dumps(masked, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


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
        token: str | ApiTokens,
        allowed_hosts: Iterable[str],
        allowed_origins: Iterable[str],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        # The daemon hands over its live token files (re-read when rotated); a plain string is
        # one fixed full token.
        self.tokens = token if isinstance(token, ApiTokens) else ApiTokens(token.encode())
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
        # uvicorn reports a Unix socket's server as (path, None), TCP as (host, port). A server
        # it cannot name (no `server`, an unnamed socket) is refused, never waved through.
        server = scope.get("server") or ("", 0)
        known = bool(server[0])
        via_socket = known and server[1] is None
        host = headers.get("host", "")
        if not known or (not via_socket and _host_name(host) not in self.hosts):
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
        token_scope: Scope_ | None = None
        if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
            token_scope = self._token_scope(headers)
            if token_scope is None:
                await problem_response(401, "unauthorized", "Unauthorized",
                                       "a valid 'Authorization: Bearer <token>' header is required",
                                       headers=[(b"www-authenticate", b"Bearer")])(scope, receive, send)
                return
            if token_scope == "status" and not status_token_may(scope["method"], path):
                await problem_response(403, "token_not_allowed", "Forbidden",
                                       "the status page's token may only read, resolve rejections and "
                                       "print; use the POS's token for this")(scope, receive, send)
                return
            scope.setdefault("state", {})["token"] = token_scope
        if length is None and "chunked" in headers.get("transfer-encoding", "").lower():
            # Read a chunked body here, before any route does: a route's body parser would turn
            # the overflow into its own 400, and nothing of an oversize body must reach the app.
            buffered = await self._read_chunked(receive)
            if buffered is None:
                await problem_response(413, "body_too_large", "Payload too large",
                                       f"bodies are limited to {self.max_body} bytes")(scope, receive, send)
                return
            receive = _replay(buffered, receive)
        send = self._with_headers(send, cors_headers)
        if token_scope == "status":
            send = _masking(send)
        await self.app(scope, self._limited(receive, scope, send), send)

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

    def _token_scope(self, headers: dict[str, str]) -> Scope_ | None:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.tokens.scope_of(value.strip())

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


def _masking(send: Send) -> Send:
    """A send that masks card numbers in JSON answers (the status page's); streams (the event
    stream, whose events are masked where they are made) and other types pass as they are."""
    start: Message | None = None
    parts: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            kind = next((v for k, v in message.get("headers", []) if k.lower() == b"content-type"), b"")
            if kind.split(b";")[0].strip().endswith(b"json"):
                start = message
                return
        elif message["type"] == "http.response.body" and start is not None:
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = mask_for_status_page(b"".join(parts))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
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

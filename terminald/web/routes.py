"""`GET /` (the status page shell) and `GET /static/<file>`: public, served from the package.

The shell holds no data: the page fetches everything with the bearer token it
keeps in sessionStorage (taken from the URL fragment `#token=...`, which
browsers never send to the server, or typed in). Assets come from a fixed
table, so no request path ever reaches the file system. A strict
Content-Security-Policy allows only this origin: the page works on a counter
PC with no Internet, and injected markup could not load or send anything.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from terminald.errors import NotFoundError

__all__ = ["ASSETS", "CSP", "router"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "sse.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Inline, so the package data needs no extra file type.
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
           b'<rect width="32" height="32" rx="6" fill="#1f6f43"/>'
           b'<path d="M9 8h14v16l-3-2-2 2-2-2-2 2-2-2-3 2z" fill="#fff"/>'
           b'<path d="M12 13h8M12 17h6" stroke="#1f6f43" stroke-width="2"/></svg>')


@dataclass(frozen=True)
class _Asset:
    body: bytes
    etag: str


@cache
def _asset(name: str) -> _Asset:
    body = resources.files("terminald.web").joinpath("static", name).read_bytes()
    return _Asset(body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')


def _serve(request: Request, name: str) -> Response:
    asset = _asset(name)
    headers = {**_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=ASSETS[name], headers=headers)


router = APIRouter(include_in_schema=False)


@router.get("/")
async def page(request: Request) -> Response:
    daemon = getattr(request.app.state, "daemon", None)
    days = daemon.cfg.offline.deadline_working_days if daemon is not None else 10
    shell = _asset("index.html").body.decode("utf-8")
    # What the shell carries: a config number the page needs before its first fetch.
    body = shell.replace("{{deadline_days}}", html.escape(str(int(days))))
    return Response(body, media_type="text/html; charset=utf-8",
                    headers={**_HEADERS, "Cache-Control": "no-store"})


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(FAVICON, media_type="image/svg+xml",
                    headers={**_HEADERS, "Cache-Control": "max-age=86400"})


@router.get("/static/{name}")
async def static(request: Request, name: str) -> Response:
    if name not in ASSETS:
        raise NotFoundError(f"no static asset {name!r}")
    return _serve(request, name)

"""One registry that turns every error into `application/problem+json`.

Known error types carry a stable `code` and the status it maps to; anything
else becomes a 500 `internal_error` whose detail never repeats the
exception's text (it may hold personal data or internals). The full
traceback goes to the log instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from drivers.errors import DriverError
from spool.errors import SpoolError
from terminald.api import deps
from terminald.errors import TerminaldError

log = logging.getLogger("terminald.api")

PROBLEM = "application/problem+json"

# Driver and spool errors keep their own code; this says which HTTP status each maps to.
STATUS_BY_CODE: dict[str, int] = {
    "validation_failed": 422,
    "no_reader": 503,
    "no_card": 408,
    "card_unreadable": 422,
    "card_locked": 422,
    "reader_busy": 409,
    "printer_unavailable": 503,
    "spool_full": 507,
    "spool_unavailable": 503,
    "idempotency_conflict": 409,
    "not_found": 404,
    "invalid_transition": 409,
    "not_revocable": 409,
    "refund_amount_mismatch": 409,
}

TITLES: dict[int, str] = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 408: "Request timeout", 409: "Conflict", 413: "Payload too large",
    421: "Misdirected request", 422: "Unprocessable content", 500: "Internal error",
    503: "Service unavailable", 507: "Insufficient storage",
}


# What `application/problem+json` looks like, for the OpenAPI document (extra members allowed:
# `errors`, `sw`, `limit_fen`...).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "code": {"type": "string"},
        "sw": {"type": "string", "pattern": "^[0-9A-F]{4}$",
               "description": "card errors: the card's status word, 4 upper-case hex digits (\"6A82\")"},
    },
}


def problems(codes_by_status: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error answers: `problems({404: "not_found"})`."""
    return {
        status: {"description": f"problem+json, code: {codes}", "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}}
        for status, codes in codes_by_status.items()
    }


# Every endpoint can answer these (access control, body size, a bug); only the public ones
# need no token.
PUBLIC_PROBLEMS = problems({403: "origin_not_allowed", 413: "body_too_large", 421: "host_not_allowed",
                            422: "validation_failed (a query parameter the endpoint does not declare)",
                            500: "internal_error"})
GUARDED_PROBLEMS = {**PUBLIC_PROBLEMS, **problems({401: "unauthorized"})}


def problem_body(status: int, code: str, title: str, detail: str, **extra: Any) -> bytes:
    body = {"type": f"https://terminald.invalid/problems/{code}", "title": title,
            "status": status, "detail": detail, "code": code, **extra}
    return json.dumps(body, ensure_ascii=False).encode()


def problem_response(status: int, code: str, title: str, detail: str,
                     headers: Sequence[tuple[bytes, bytes]] = (), **extra: Any) -> Response:
    response = Response(problem_body(status, code, title, detail, **extra), status_code=status,
                        media_type=PROBLEM)
    for key, value in headers:
        response.headers.append(key.decode(), value.decode())
    return response


def _public_extra(exc: Exception) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    sw = getattr(exc, "sw", None)
    if isinstance(sw, int):  # a card's status word, shown as people write it: "6A82", never 27266
        extra["sw"] = f"{sw:04X}"
    for name in ("tries_left", "retry_allowed", "limit_fen", "errors"):
        value = getattr(exc, name, None)
        if value is not None:
            extra[name] = value
    if isinstance(exc, TerminaldError):
        extra.update(exc.extra)
    return extra


def from_exception(exc: Exception) -> Response:
    if isinstance(exc, TerminaldError):
        return problem_response(exc.status, exc.code, exc.title, exc.detail, **_public_extra(exc))
    if isinstance(exc, (SpoolError, DriverError)):
        code = getattr(exc, "code", "internal_error")
        status = STATUS_BY_CODE.get(code, 500)
        detail = getattr(exc, "detail", None) or str(exc) or TITLES.get(status, "")
        return problem_response(status, code, TITLES.get(status, "Error"), str(detail), **_public_extra(exc))
    log.exception("unhandled error", exc_info=exc)
    return problem_response(500, "internal_error", "Internal error", "an internal error occurred; see the log")


def install(app: FastAPI) -> None:
    async def on_known(request: Request, exc: Exception) -> Response:
        return from_exception(exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return problem_response(422, "validation_failed", "The request is not valid",
                                "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5]),
                                errors=errors)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (not UTF-8, say): a validation failure here.
            return problem_response(422, "validation_failed", "The request is not valid",
                                    "the body could not be parsed as JSON", errors=[])
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only (POST for
            # DELETE /v1/transactions, where GET is allowed too): every method the path has.
            given = {m.strip() for m in headers.pop("Allow", "").split(",") if m.strip()}
            headers["Allow"] = ", ".join(sorted(given | deps.operations(request.app).methods(request.scope["path"])))
        return problem_response(exc.status_code, code, TITLES.get(exc.status_code, "Error"),
                                str(exc.detail) if isinstance(exc.detail, str) else "",
                                headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()])

    app.add_exception_handler(TerminaldError, on_known)
    app.add_exception_handler(SpoolError, on_known)
    app.add_exception_handler(DriverError, on_known)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_known)
    deps.install(app, from_exception)  # request models in the document; unknown query parameters: 422

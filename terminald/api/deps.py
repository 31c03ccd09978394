"""Small helpers the route modules share, and two things every route gets (`install`):

- the OpenAPI document's hand-declared request bodies have their models in `components`;
- a query parameter the operation does not declare is 422 `validation_failed`, never ignored
  (a POS asking `?idempotency_key=K` of an endpoint without that filter would otherwise get
  the whole list, and take someone else's sale).

What an operation declares is read from the OpenAPI document itself, so the check and the
document cannot disagree: FastAPI's declared `Query` parameters, and the parameters a route
declares by hand (`openapi_extra`, as the hot path `POST /v1/transactions` does for `wait`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from spool import Record
from terminald.errors import NotFoundError, ValidationFailed

log = logging.getLogger("terminald.api")

# The largest integer SQLite stores: ids and seqs past it cannot even be compared in SQL.
SQLITE_MAX_INT = 2**63 - 1

if TYPE_CHECKING:
    from terminald.daemon import Daemon


def daemon(request: Request) -> Daemon:
    return request.app.state.daemon  # type: ignore[no-any-return]


async def load_record(d: Daemon, record_id: str) -> Record:
    assert d.spool is not None
    record = await asyncio.to_thread(d.spool.get, record_id)
    if record is None:
        raise NotFoundError(f"no transaction {record_id} on this terminal")
    return record


# -- what every route gets -------------------------------------------------------------------------
def install(app: FastAPI, render: Callable[[Exception], Response]) -> None:
    """Request models in `components`, and the unknown-query check (`render` makes its 422)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return with_request_models(generate())  # on FastAPI's cached document: moved once

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(KnownQueryOnly, api=app, render=render)


def with_request_models(document: dict[str, Any]) -> dict[str, Any]:
    """Move the `$defs` of hand-declared request bodies into `components/schemas`.

    A route that reads its body itself declares it in `openapi_extra` with the models' JSON
    schema (`models_json_schema(..., ref_template="#/components/schemas/{model}")`): its
    `$ref`s point into `components`, where FastAPI does not put them. The same model used by a
    FastAPI-declared body (OperatorIn) is there already, generated from the same class.
    """
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    moved = False
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or not isinstance(operation.get("requestBody"), dict):
                continue
            for media in operation["requestBody"].get("content", {}).values():
                schema = media.get("schema") if isinstance(media, dict) else None
                if isinstance(schema, dict) and isinstance(schema.get("$defs"), dict):
                    for name, definition in schema.pop("$defs").items():
                        schemas.setdefault(name, definition)
                    moved = True
    if moved:
        document["components"]["schemas"] = dict(sorted(schemas.items()))
    return document


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


class Operations:
    """The OpenAPI document's operations by path: their methods and declared query parameters.

    Paths are matched like Starlette's routes (a `{name}` is one path segment), in the
    document's order, which is the order the routes were added, so the first match is the route
    Starlette would pick.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self._paths: list[tuple[str, re.Pattern[str] | None, dict[str, frozenset[str]]]] = []
        for template, item in document.get("paths", {}).items():
            shared = item.get("parameters", [])
            query = {
                method.upper(): frozenset(p["name"] for p in [*shared, *operation.get("parameters", [])]
                                          if isinstance(p, dict) and p.get("in") == "query")
                for method, operation in item.items() if method in _HTTP_METHODS
            }
            pattern = re.compile(_path_regex(template)) if "{" in template else None
            self._paths.append((template, pattern, query))

    def _matching(self, path: str) -> Iterator[tuple[str, dict[str, frozenset[str]]]]:
        for template, pattern, query in self._paths:
            if pattern.fullmatch(path) if pattern is not None else template == path:
                yield template, query

    def query(self, method: str, path: str) -> tuple[str, frozenset[str]] | None:
        """(path template, declared query names) of the operation; None when there is none."""
        for template, query in self._matching(path):
            if method in query:
                return template, query[method]
        return None

    def methods(self, path: str) -> set[str]:
        """Every method the document has for this path."""
        return {method for _, query in self._matching(path) for method in query}


def _path_regex(template: str) -> str:
    parts = re.split(r"(\{[^}/]*\})", template)
    return "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)


def operations(app: FastAPI) -> Operations:
    """The app's `Operations`, built once from its OpenAPI document.

    Should the document fail to build (a bug: logged, and `/openapi.json` answers 500), this is
    empty: query parameters go unchecked rather than the counter stop selling.
    """
    found: Operations | None = getattr(app.state, "operations", None)
    if found is None:
        try:
            found = Operations(app.openapi())
        except Exception:
            log.exception("the OpenAPI document cannot be built: query parameters are not checked")
            found = Operations({})
        app.state.operations = found
    return found


class KnownQueryOnly:
    """ASGI middleware: 422 for a query parameter the operation does not declare.

    Requests without a query string (the POS's default sale) pass at the cost of one lookup;
    the document is read once, at startup. Paths and methods the document does not have pass
    unchanged, to their 404 or 405.
    """

    def __init__(self, app: ASGIApp, api: FastAPI, render: Callable[[Exception], Response]) -> None:
        self.app = app
        self.api = api
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            refused = self._unknown(scope)
            if refused is not None:
                await self.render(refused)(scope, receive, send)
                return
        elif scope["type"] == "lifespan":
            operations(self.api)  # before the first request, not during it
        await self.app(scope, receive, send)

    def _unknown(self, scope: Scope) -> ValidationFailed | None:
        found = operations(self.api).query(scope["method"], scope["path"])
        if found is None:
            return None
        template, known = found
        unknown = sorted({name for name in QueryParams(scope["query_string"]) if name not in known})
        if not unknown:
            return None
        takes = ", ".join(sorted(known)) if known else "no query parameters"
        return ValidationFailed(
            "; ".join(f"query.{name}: not a parameter of {scope['method']} {template}" for name in unknown)
            + f" (it takes {takes})",
            errors=[{"loc": ["query", name], "msg": "unknown query parameter", "type": "unknown_parameter"}
                    for name in unknown])

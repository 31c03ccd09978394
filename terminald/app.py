"""The ASGI application: routes, problem registry, access control, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from terminald import __version__
from terminald.api import card, events, followups, health, metrics, problems, receipts, reports, transactions
from terminald.api import upstream as upstream_api
from terminald.config import Config
from terminald.daemon import Daemon
from terminald.security import AccessControl
from terminald.web import routes as web_routes


def create_app(daemon: Daemon) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await daemon.start()
        try:
            yield
        finally:
            await daemon.stop()

    # FastAPI's own OpenTelemetry hooks are off: their logs would carry request bodies
    # (identity numbers) to whatever exporter the environment configures.
    app = FastAPI(title="terminald local API", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False})
    app.state.daemon = daemon
    problems.install(app)
    app.include_router(health.public_router, responses=problems.PUBLIC_PROBLEMS)
    for module in (health, card, transactions, followups, receipts, events, reports, metrics, web_routes):
        app.include_router(module.router, responses=problems.GUARDED_PROBLEMS)
    app.include_router(upstream_api.router, responses=problems.GUARDED_PROBLEMS)
    return app


def build(cfg: Config) -> tuple[Daemon, ASGIApp]:
    """The daemon and its app wrapped in access control."""
    daemon = Daemon(cfg)
    app = create_app(daemon)
    guarded = AccessControl(app, token=daemon.token, allowed_hosts=cfg.api.allowed_hosts,
                            allowed_origins=cfg.api.allowed_origins, max_body_bytes=cfg.api.max_body_bytes)
    return daemon, guarded

"""`GET /metrics`: the daemon's Prometheus registry (terminald/metrics.py), rendered at scrape time."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from terminald.api.deps import daemon

router = APIRouter()


@router.get("/metrics", tags=["status"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics_endpoint(request: Request) -> Response:
    body = await asyncio.to_thread(daemon(request).metrics.render)  # reads the spool: off the loop
    return Response(body, media_type=CONTENT_TYPE_LATEST)

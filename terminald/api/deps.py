"""Small helpers the route modules share."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import Request

from spool import Record
from terminald.errors import NotFoundError

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

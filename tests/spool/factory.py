"""Append requests shaped like the daemon's, without importing pytest.

The crash-test child process imports this module; keeping pytest out of it
saves about 0.1 s per child start.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from spool import AppendRequest, digest

TERMINAL_ID = "T0001"


def make_request(
    key: str,
    total_fen: int = 2500,
    business_time: str = "2026-11-23T10:15:00+08:00",
    *,
    kind: str = "settlement",
    offline: bool = False,
    offline_reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> AppendRequest:
    """An AppendRequest shaped like the daemon's: the key is inside the payload too."""
    payload: dict[str, Any] = {
        "card": {"card_number": "A12345678", "name": "张三", "issuer_code": "110000"},
        "items": [{"code": "XA01", "name": "阿莫西林胶囊", "qty": 1, "amount_fen": total_fen}],
        "total_fen": total_fen,
        "idempotency_key": key,
    }
    payload.update(extra or {})
    return AppendRequest(
        kind=kind,
        business_time=business_time,
        payload=payload,
        idempotency_key=key,
        request_digest=digest(payload),
        offline=offline,
        offline_reason=offline_reason,
        # Spooled offline, the daemon answers "pending" at once: an outage sale from the commit.
        outage_reason=(offline_reason or "upstream_unreachable") if offline else None,
    )


def tamper(path: Path | str, *statements: str) -> None:
    """Edit the file behind the spool's back, as a person with sqlite3 would."""
    conn = sqlite3.connect(path)
    with conn:
        for sql in statements:
            conn.execute(sql)
    conn.close()

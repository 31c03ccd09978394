"""Shared steps of the mirror command tests: running `terminald` as a user does, sales through the
API with a typed card, and the mirror caught up (by the daemon's copier, or by one pass here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from spool import Spool
from terminald.mirror import MirrorCopier
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import run
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TYPED = {"card_number": "A12345678", "ssn": "110101199003077777", "name": "李雷", "issuer_code": "110000"}
SPOOL_FILES = ("spool.db", "spool.db-wal", "spool.db-shm", "spool.db-seq", "spool.db-journal")


def terminald(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "terminald.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=timeout, check=False, cwd=ROOT)


def sale(n: int) -> dict[str, Any]:
    return {"kind": "settlement", "card": TYPED,
            "items": [{"code": f"X{n}", "name": "阿莫西林胶囊", "qty": 1, "unit_price_fen": 1000 + n,
                       "amount_fen": 1000 + n}],
            "total_fen": 1000 + n, "operator": {"id": "op1", "name": "王芳"}}


def sell(client: httpx.Client, first: int, count: int, expect: str) -> list[str]:
    """`count` sales; each answered with status `expect` (settled online, pending offline). Their ids."""
    ids = []
    for n in range(first, first + count):
        answer = client.post("/v1/transactions", json=sale(n), headers={"Idempotency-Key": f"mirror-cli-{n}"})
        assert answer.status_code in (201, 202), answer.text
        assert answer.json()["status"] == expect, answer.text
        ids.append(answer.json()["id"])
    return ids


def daemon_config(central_url: str, dsn: str, terminal_id: str) -> str:
    return (f'[terminal]\nid = "{terminal_id}"\n[upstream]\nurl = "{central_url}"\nwait_s = 2\n'
            f"[offline]\nrequire_card_present = false\n[mirror]\ndsn = \"{dsn}\"\n")


def daemon_mirrors(d: DaemonProcess) -> bool:
    """Whether this daemon runs the copier (its /v1/status has a `mirror` section)."""
    with d.client() as api:
        section = api.get("/v1/status").json().get("mirror") or {}
    return bool(section.get("enabled"))


def mirror_once(spool_path: Path, terminal_id: str, dsn: str) -> None:
    """One copier pass over a spool no daemon holds: what the daemon's copier does continuously."""
    spool = Spool.open(spool_path, terminal_id, background_check=False)

    async def once() -> None:
        copier = MirrorCopier(spool, dsn)
        try:
            await copier.sync_once()
        finally:
            await copier.close()

    try:
        run(once())
    finally:
        spool.close()


def mirrored_statuses(pair: PgPair, dbname: str, terminal_id: str) -> dict[str, str]:
    with pair.admin(dbname) as conn:
        rows = conn.execute("SELECT record_id::text, status FROM terminald_records WHERE terminal_id = %s",
                            (terminal_id,)).fetchall()
    return {str(record_id): str(status) for record_id, status in rows}


def wait_mirrored(pair: PgPair, dbname: str, terminal_id: str, expected: dict[str, str], timeout_s: float = 30) -> None:
    """Until the mirror holds exactly these records with these statuses."""
    wait_for(lambda: mirrored_statuses(pair, dbname, terminal_id) == expected, timeout_s,
             f"the mirror to hold {len(expected)} records with their statuses", 0.1)


def delete_spool(state_dir: Path) -> list[str]:
    """The disk died: every spool file gone (the lock file too). The names deleted."""
    gone = []
    for name in (*SPOOL_FILES, "spool.db.lock"):
        path = state_dir / name
        if path.exists():
            path.unlink()
            gone.append(name)
    return gone

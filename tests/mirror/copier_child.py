"""A copier in a process of its own, for the kill -9 test: ``python -m tests.mirror.copier_child
SPOOL TERMINAL_ID DSN``. It reads the spool read-only (the test process appends to it) and mirrors
until killed; "ready" on stdout once it runs."""

from __future__ import annotations

import asyncio
import sys

from spool import Spool
from terminald.mirror import MirrorCopier


async def main(path: str, terminal_id: str, dsn: str) -> None:
    spool = Spool.open_readonly(path, terminal_id)
    copier = MirrorCopier(spool, dsn, batch_size=7, poll_s=0.02, backoff_base_s=0.02, backoff_cap_s=0.1)
    print("ready", flush=True)
    await copier.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

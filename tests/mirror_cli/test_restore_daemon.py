"""`terminald spool restore --from-mirror` after a dead disk, with a real daemon, a real central
simulator and a real PostgreSQL primary + synchronous standby: the restored spool passes `spool
check`, the daemon carries on, the pending sales get settled, and central holds every record
exactly once.

The mirror is filled by the daemon's own copier when the daemon runs one ([mirror] in its
/v1/status); otherwise by one copier pass over the stopped daemon's spool (`mirror_once`), which
is what the copier does continuously.
"""

from __future__ import annotations

import stat
from collections import Counter
from collections.abc import Callable
from typing import Any

from spool import Spool
from terminald.sim.central import CentralSim
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import TID, prepare
from tests.mirror_cli.helpers import (
    daemon_config,
    daemon_mirrors,
    delete_spool,
    mirror_once,
    sell,
    terminald,
    wait_mirrored,
)
from tests.waiting import wait_for


def _statuses(d: DaemonProcess, ids: list[str]) -> dict[str, str]:
    with d.client() as api:
        return {i: api.get(f"/v1/transactions/{i}").json()["status"] for i in ids}


def _central_holds_each_once(central: CentralSim, ids: list[str]) -> None:
    stored = central.records(TID)
    counts = Counter(r["record_id"] for r in stored)
    assert counts == Counter(ids), counts
    assert [r["seq"] for r in stored] == list(range(1, len(ids) + 1))


def _mirror(d: DaemonProcess, pair: PgPair, dbname: str, dsn: str, expected: dict[str, str]) -> bool:
    """The mirror catches up with `expected`, then the daemon is stopped. Whether its copier did it."""
    wired = daemon_mirrors(d)
    if wired:
        wait_mirrored(pair, dbname, TID, expected)
    d.stop()
    if not wired:
        mirror_once(d.state_dir / "spool.db", TID, dsn)
    wait_mirrored(pair, dbname, TID, expected, timeout_s=5)
    print(f"mirrored by {'the daemon' if wired else 'one copier pass (the daemon runs no mirror)'}")
    return wired


def test_restore_then_the_daemon_uploads_the_pending_sales(
    pg_pair: PgPair, pg_database: str, central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess],
) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    d = daemon_proc(config=daemon_config(central_sim.url, dsn, TID))
    client = d.client()
    settled = sell(client, 1, 5, "settled")
    central_sim.control(down=True)
    pending = sell(client, 6, 5, "pending")
    ids = settled + pending

    refused = terminald("spool", "restore", "--from-mirror", env=d.env)
    assert refused.returncode == 1
    assert "terminald is running" in refused.stdout and "stop it first" in refused.stdout, refused.stdout

    _mirror(d, pg_pair, pg_database, dsn, {**dict.fromkeys(settled, "settled"), **dict.fromkeys(pending, "pending")})
    refused = terminald("spool", "restore", "--from-mirror", env=d.env)
    assert refused.returncode == 1 and "a spool is already here" in refused.stdout, refused.stdout
    assert "move these files aside" in refused.stdout

    assert "spool.db" in delete_spool(d.state_dir)
    restored = terminald("spool", "restore", "--from-mirror", env=d.env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    out = restored.stdout
    assert "records: 10, seq 1-10, hash chain verified from seq 1" in out, out
    assert "pending: 5 " in out and "last seq: 10" in out, out
    assert "pending 5" in out and "settled 5" in out, out
    mode = stat.S_IMODE((d.state_dir / "spool.db").stat().st_mode)
    assert mode == 0o600, oct(mode)
    # v1: central's cursor and record ids make re-sending safe. No "rebuilt from a copy" mark
    # (spool/restored.py): nothing under v1 would ever clear it, and a later switch to nhsa would
    # hold these records for nothing.
    with Spool.open_readonly(d.state_dir / "spool.db", TID) as rebuilt:
        assert rebuilt.restored_from() is None
    assert "wait for staff" not in out and "--restored-checked" not in out, out

    check = terminald("spool", "check", env=d.env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "10 records, chain and integrity verified" in check.stdout

    central_sim.control(down=False)
    d.start()
    wait_for(lambda: set(_statuses(d, ids).values()) == {"settled"}, 60, "the restored pending sales to settle", 0.2)
    _central_holds_each_once(central_sim, ids)

    more = sell(d.client(), 11, 1, "settled")  # the chain goes on after the restored tail
    _central_holds_each_once(central_sim, ids + more)
    if daemon_mirrors(d):
        wait_mirrored(pg_pair, pg_database, TID, dict.fromkeys(ids + more, "settled"))


def test_restore_from_a_mirror_that_missed_the_settlements(
    pg_pair_factory: Callable[[], PgPair], central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess],
) -> None:
    """The disk died while PostgreSQL was down: central settled sales the mirror still holds as
    pending. After the restore the daemon sends them again; central knows them (its record ids)
    and answers with what it decided: settled, nothing twice."""
    pair = pg_pair_factory()
    dbname = pair.create_database()
    dsn = prepare(pair, dbname, TID)[TID]
    d = daemon_proc(config=daemon_config(central_sim.url, dsn, TID))
    client = d.client()
    settled = sell(client, 1, 3, "settled")
    central_sim.control(down=True)
    pending = sell(client, 4, 4, "pending")
    ids = settled + pending
    _mirror(d, pair, dbname, dsn, {**dict.fromkeys(settled, "settled"), **dict.fromkeys(pending, "pending")})

    pair.stop(pair.primary)
    pair.stop(pair.standby)
    central_sim.control(down=False)
    d.start()
    wait_for(lambda: set(_statuses(d, ids).values()) == {"settled"}, 60, "the pending sales to settle", 0.2)
    _central_holds_each_once(central_sim, ids)
    d.stop()

    delete_spool(d.state_dir)
    pair.start(pair.primary)
    pair.start(pair.standby)
    pair.wait_sync()
    restored = terminald("spool", "restore", "--from-mirror", env=d.env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "pending: 4 " in restored.stdout, restored.stdout

    d.start()
    wait_for(lambda: set(_statuses(d, ids).values()) == {"settled"}, 60, "central's answers to come back", 0.2)
    _central_holds_each_once(central_sim, ids)
    with d.client() as api:
        status: dict[str, Any] = api.get("/v1/status").json()
    assert status["upstream"]["halted"] is False and status["spool"]["pending"] == 0

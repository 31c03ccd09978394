"""`terminald spool restore --from-mirror` on a counter that speaks to the national platform
(`upstream.protocol = "nhsa"`), with a real daemon, the platform simulator and a real
PostgreSQL primary + synchronous standby.

The mirror gives back the records, not the call log that says whether a pending sale's 2102
reached the platform before the old disk died; the platform has no idempotency key, so sending
them again could settle a sale twice. The restore says they wait for staff; the restarted
daemon holds them (alarm `nhsa_restored_unverified`, no 2102 for them) while a new patient's
sale settles at once; a plain `terminald upstream resume` leaves them held (and says so); after
`terminald upstream resume --restored-checked` each is settled once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx

from spool import Spool
from terminald.sim.nhsa import NhsaSim
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import TID, prepare
from tests.mirror_cli.helpers import delete_spool, terminald, wait_mirrored
from tests.nhsa_e2e.helpers import Pos, check_books, nhsa_config
from tests.waiting import wait_for

ALARM = "nhsa_restored_unverified"


def _alarms(api: httpx.Client) -> dict[str, str]:
    return {a["code"]: a["message"] for a in api.get("/v1/status").json()["upstream"]["alarms"]}


def _psn_nos_of_2102(sim: NhsaSim) -> list[str]:
    return [c["request"]["input"]["data"]["psn_no"] for c in sim.calls("2102")]


def _resume(d: DaemonProcess, reason: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "terminald.cli", "upstream", "resume", "--config",
                           str(d.config_path), "--reason", reason, "--operator", "ops-li", *extra],
                          capture_output=True, text=True, env=d.env, timeout=60, check=False)


def test_restored_pending_sales_wait_for_staff_then_settle_once(
    pg_pair: PgPair, pg_database: str, nhsa_sim: NhsaSim, daemon_proc: Callable[..., DaemonProcess],
) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    d = daemon_proc(config=nhsa_config(nhsa_sim.url) + f'[mirror]\ndsn = "{dsn}"\n')
    zhang, zhao, qian = nhsa_sim.person("A10000123"), nhsa_sim.person("D40000321"), nhsa_sim.person("B20000456")
    txs: list[dict[str, Any]] = []
    with d.client() as api:
        pos = Pos(api, "before")
        txs.append(pos.sell(zhang, 1200))
        wait_for(lambda: api.get(f"/v1/transactions/{txs[0]['id']}").json()["status"] == "settled", 30,
                 "the first sale settled")
        nhsa_sim.control(down=True)
        txs += [pos.sell(zhang, 2300), pos.sell(zhao, 3400)]
        assert [t["status"] for t in txs[1:]] == ["pending", "pending"]
        persons = dict(pos.persons)
    wait_mirrored(pg_pair, pg_database, TID, {txs[0]["id"]: "settled", txs[1]["id"]: "pending",
                                              txs[2]["id"]: "pending"})
    d.stop()
    assert "spool.db" in delete_spool(d.state_dir)  # the disk died

    restored = terminald("spool", "restore", "--from-mirror", env=d.env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "wait for staff" in restored.stdout and ALARM in restored.stdout, restored.stdout
    assert "terminald upstream resume --restored-checked" in restored.stdout, restored.stdout
    with Spool.open_readonly(d.state_dir / "spool.db", TID) as rebuilt:
        marker = rebuilt.restored_from()
    assert marker is not None and (marker.source, marker.last_seq, marker.pending) == ("mirror", 3, 2)
    nhsa_sim.control(down=False)
    before = len(nhsa_sim.calls("2102"))
    d.start()
    with d.client() as api:
        wait_for(lambda: ALARM in _alarms(api), 30, "the nhsa_restored_unverified alarm")
        assert "2 pending record(s) up to seq 3" in _alarms(api)[ALARM]
        assert "terminald upstream resume --restored-checked" in _alarms(api)[ALARM]
        # Another patient at the counter is not held: their sale settles at the platform now.
        pos = Pos(api, "after")
        new = pos.sell(qian, 4500)
        persons.update(pos.persons)
        wait_for(lambda: api.get(f"/v1/transactions/{new['id']}").json()["status"] == "settled", 30,
                 "the new patient's sale settled")
        txs.append(new)
        assert _psn_nos_of_2102(nhsa_sim)[before:] == [qian.psn_no]  # nothing for the restored ones
        assert [api.get(f"/v1/transactions/{t['id']}").json()["status"] for t in txs[1:3]] == ["pending"] * 2

        # A resume that does not say the restored sales were checked (nothing else to resume):
        # refused, naming the hold and the flag; nothing is sent.
        plain = _resume(d, "unblock the counter")
        assert plain.returncode == 1, plain.stdout + plain.stderr
        assert "not_halted" in plain.stdout and ALARM in plain.stdout, plain.stdout
        assert "--restored-checked" in plain.stdout, plain.stdout
        body = api.post("/v1/upstream/resume", json={"operator": "ops-li", "reason": "unblock"})
        assert body.status_code == 409 and body.json()["code"] == "not_halted", body.text
        assert body.json()["still_held"] == [ALARM], body.text
        assert ALARM in _alarms(api)
        assert _psn_nos_of_2102(nhsa_sim)[before:] == [qian.psn_no]
        assert [api.get(f"/v1/transactions/{t['id']}").json()["status"] for t in txs[1:3]] == ["pending"] * 2

        # Staff checked with the platform (none of them stands there), then resume saying so.
        done = _resume(d, "checked with the platform", "--restored-checked")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "resumed by ops-li" in done.stdout and "still held" not in done.stdout, done.stdout
        wait_for(lambda: api.get("/v1/status").json()["spool"]["pending"] == 0, 60, "the restored sales settled")
        assert ALARM not in _alarms(api)
        final = [api.get(f"/v1/transactions/{t['id']}").json() for t in txs]
    assert [t["status"] for t in final] == ["settled"] * 4
    check_books(nhsa_sim, final, persons)  # each sale stands once at the platform, in each person's order
    log = d.stderr_text()
    assert f"uploading resumed by ops-li after {ALARM}: checked with the platform" in log

"""`terminald transactions resolve ID --as self_pay|voided [--note]`: a rejection settled by staff from
the command line, through the running daemon (`POST /v1/transactions/{id}/resolve`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from terminald.sim.central import CentralSim
from tests.api.helpers import TYPED_CARD, central_config, post_tx, sale
from tests.fixtures.daemon import DaemonProcess


def test_resolve_a_rejection(daemon_proc: Callable[..., DaemonProcess], central_sim: CentralSim) -> None:
    central_sim.control(not_insured=[TYPED_CARD["card_number"]])
    d = daemon_proc(central_config(central_sim.url) + "[offline]\nrequire_card_present = false\n")

    def resolve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "terminald.cli", "transactions", "resolve", *args],
                              capture_output=True, text=True, env={**d.env, "COLUMNS": "200"}, timeout=60,
                              check=False)

    with d.client() as api:
        ids = []
        for n in range(2):
            sold = post_tx(api, sale(), f"rejected-{n}", wait=10)
            assert sold.status_code == 201 and sold.json()["status"] == "rejected", sold.text
            ids.append(sold.json()["id"])
        seq = api.get(f"/v1/transactions/{ids[0]}").json()["seq"]

        done = resolve(ids[0], "--as", "self_pay", "--note", "患者已自费 [cash]")
        assert done.returncode == 0, done.stdout + done.stderr
        assert (f"transaction {ids[0]} (seq {seq}) (rejected: not_insured) resolved as self_pay; status resolved"
                in done.stdout), done.stdout
        assert "note: 患者已自费 [cash]" in done.stdout
        stored = api.get(f"/v1/transactions/{ids[0]}").json()
        assert stored["status"] == "resolved"
        assert stored["resolution"]["resolution"] == "self_pay" and stored["resolution"]["note"] == "患者已自费 [cash]"

        voided = resolve(ids[1], "--as", "voided", "--config", str(d.config_path))
        assert voided.returncode == 0 and "resolved as voided" in voided.stdout, voided.stdout + voided.stderr
        assert api.get(f"/v1/transactions/{ids[1]}").json()["resolution"]["resolution"] == "voided"

        # Problems: exit 1 with the daemon's code and detail; nothing changes.
        again = resolve(ids[0], "--as", "voided")
        assert again.returncode == 1 and "invalid_transition: " in again.stdout, again.stdout + again.stderr
        assert api.get(f"/v1/transactions/{ids[0]}").json()["resolution"]["resolution"] == "self_pay"
        unknown = resolve("no-such-id", "--as", "voided")
        assert unknown.returncode == 1 and "not_found: " in unknown.stdout, unknown.stdout + unknown.stderr
        too_long = resolve(ids[0], "--as", "voided", "--note", "x" * 501)
        assert too_long.returncode == 1 and "validation_failed: " in too_long.stdout, too_long.stdout

    # Usage errors: exit 2, before anything is sent.
    assert resolve(ids[0], "--as", "refunded").returncode == 2
    assert resolve(ids[0]).returncode == 2
    assert resolve("--as", "voided").returncode == 2

    d.stop()
    down = resolve(ids[0], "--as", "voided")
    assert down.returncode == 1 and "terminald does not answer" in down.stdout, down.stdout + down.stderr

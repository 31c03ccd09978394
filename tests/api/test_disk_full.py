"""A full disk under the daemon: 507 spool_full, nothing committed is harmed, recovery when space is back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import assert_problem, post_tx, sale
from tests.fixtures.tmpfs import fill

pytestmark = pytest.mark.root

TYPED = {"card_number": "A12345678", "ssn": "110101199003077777", "name": "韩梅梅", "issuer_code": "110000"}
CONFIG = "[offline]\nrequire_card_present = false\nmax_total_fen = 100000000000\n"


def test_full_disk_gives_507_and_recovers(tiny_fs: Path, daemon_proc: Any) -> None:
    d = daemon_proc(config=CONFIG, state_dir=tiny_fs / "state")
    with d.client() as api:
        accepted = []
        for n in range(3):
            r = post_tx(api, sale(card=TYPED), f"before-{n}")
            assert r.status_code == 202, r.text
            accepted.append(r.json()["id"])

        filler = fill(tiny_fs)
        refused = None
        # The WAL may still hold a free page or two: the disk is full within a few appends.
        for n in range(50):
            r = post_tx(api, sale(card=TYPED), f"full-{n}")
            if r.status_code != 202:
                refused = r
                break
            accepted.append(r.json()["id"])
        assert refused is not None, "the spool kept accepting on a full disk"
        assert_problem(refused, 507, "spool_full")
        assert api.get("/v1/health").status_code == 200

        filler.unlink()
        again = post_tx(api, sale(card=TYPED), "after-space-is-back")
        assert again.status_code == 202, again.text
        accepted.append(again.json()["id"])

        listed = api.get("/v1/transactions", params={"limit": 500}).json()["items"]
        assert [t["id"] for t in listed] == accepted
        assert [t["seq"] for t in listed] == list(range(1, len(accepted) + 1))
    d.stop()

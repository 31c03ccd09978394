"""A restarted platform simulator keeps its books; `terminald sim nhsa` runs it alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.settings import MSG_ALREADY_REVERSED, MSG_ALREADY_REVOKED, MSG_MSGID_REUSED
from terminald.sim.ports import free_port
from tests.sim_nhsa.helpers import Caller, sale_data
from tests.waiting import wait_for

LINES = [("2", "12.50"), ("1", "33.33")]
LOST = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError)


def test_a_restart_keeps_everything(tmp_path: Path) -> None:
    db = tmp_path / "nhsa.db"
    sim = NhsaSim(db)
    sim.start()
    caller = Caller(sim)
    try:
        caller.sign_in()
        person = sim.person("A10000123")
        kept = caller.settle(person, LINES, sale_id="S1")[1]["output"]["setlinfo"]
        revoked_env, revoked = caller.settle(person, LINES, sale_id="S2")
        assert caller.revoke(person, revoked["output"]["setlinfo"])[1]["infcode"] == 0
        sim.control(next={"drop_after_commit": 1}, fault_infnos=["2102"])
        lost = caller.envelope("2102", sale_data(person, LINES, sale_id="S3", business_time="2026-11-23 10:15:00"),
                               insuplc=person.insuplc_admdvs)
        with pytest.raises(LOST):
            caller.send(lost)
        sim.control(freeze=["C30000789"], balance_fen={"E50000654": 1234})
        books = (sim.settlements(), sim.revokes(), len(sim.calls()), sim.balance_fen("A10000123"))
    finally:
        caller.close()
        sim.stop()

    again = NhsaSim(db)
    again.start()
    caller = Caller(again)
    try:
        assert (again.settlements(), again.revokes(), len(again.calls()), again.balance_fen("A10000123")) == books
        assert again.person_status("C30000789") == "frozen" and again.balance_fen("E50000654") == 1234
        # The old sign-in still holds; the old msgids are still used up.
        caller.sign_no = again.calls("9001")[0]["answer"]["output"]["signinoutb"]["sign_no"]
        assert caller.send(lost).json()["err_msg"] == MSG_MSGID_REUSED
        # The call dropped before the restart is reversed after it, once.
        person = again.person("A10000123")
        assert caller.reverse(person, str(lost["msgid"]))["infcode"] == 0
        assert caller.reverse(person, str(lost["msgid"]))["err_msg"] == MSG_ALREADY_REVERSED
        assert caller.reverse(person, str(revoked_env["msgid"]))["infcode"] == -1  # revoked: reverse the revoke first
        assert caller.revoke(person, revoked["output"]["setlinfo"])[1]["err_msg"] == MSG_ALREADY_REVOKED
        assert caller.revoke(person, kept)[1]["infcode"] == 0
        again.assert_money_consistent({"S1": {"revoked": True}, "S2": {"revoked": True}})
    finally:
        caller.close()
        again.stop()


@pytest.mark.parametrize("command", [
    [str(Path(sys.executable).with_name("terminald")), "sim", "nhsa"],
    [sys.executable, "-m", "terminald.sim.nhsa"],
])
def test_it_runs_alone(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    db = tmp_path / "var" / "nhsa.db"
    proc = subprocess.Popen([*command, "--port", str(port), "--db", str(db), "--busy-rate", "1", "--seed", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        state = wait_for(lambda: _state(url), 20, "the simulator to listen")
        assert state["faults"]["busy_rate"] == 1.0
        response = httpx.post(url + "/", content=b"{}", timeout=5)
        assert response.json()["infcode"] == -1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"nhsa platform simulator on" in out and db.exists()


def _state(url: str) -> dict[str, object] | None:
    try:
        body: dict[str, object] = httpx.get(url + "/_control", timeout=1).json()
        return body
    except httpx.HTTPError:
        return None

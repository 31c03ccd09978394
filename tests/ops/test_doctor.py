"""`terminald doctor`: each check on its own (injected probes, real files and sockets), then the
command against a real printer emulator and central simulator."""

from __future__ import annotations

import os
import pwd
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from drivers.cards.errors import PcscdUnavailable
from drivers.errors import PrinterConfigError
from spool import Spool
from terminald import doctor
from terminald.config import Config, load_config
from terminald.doctor import (
    FAIL,
    OK,
    WARN,
    Check,
    check_disk,
    check_pcscd,
    check_permissions,
    check_printers,
    check_readers,
    check_spool,
    check_upstream,
    format_check,
    run_doctor,
)
from terminald.doctor.base import within
from terminald.sim.central import CentralSim
from terminald.sim.printer import PrinterSim
from tests.fixtures.spool import make_request


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Config]:
    """`config(toml_text)`: a Config whose state dir is tmp_path/state."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    for var in [v for v in os.environ if v.startswith("TERMINALD_")]:
        monkeypatch.delenv(var)

    def make(text: str = "") -> Config:
        path = tmp_path / "terminald.toml"
        path.write_text(text, encoding="utf-8")
        return load_config(path)

    return make


def statuses(checks: list[Check]) -> list[tuple[str, str]]:
    return [(c.status, c.topic) for c in checks]


# -- pcscd ------------------------------------------------------------------------------------------------
def _fake_proc(tmp_path: Path, *names: str) -> Path:
    proc = tmp_path / "proc"
    for pid, name in enumerate(names, start=100):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(name + "\n")
    proc.mkdir(exist_ok=True)
    (proc / "self").mkdir(exist_ok=True)
    return proc


def test_pcscd_ok_with_its_socket(tmp_path: Path) -> None:
    path = tmp_path / "pcscd.comm"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        result = check_pcscd(str(path), _fake_proc(tmp_path, "bash"))
    assert statuses(result) == [(OK, "pcscd")]
    assert "socket-activated" in result[0].detail


def test_pcscd_missing_is_a_failure_with_the_fix(tmp_path: Path) -> None:
    result = check_pcscd(str(tmp_path / "none"), _fake_proc(tmp_path, "bash"))
    assert statuses(result) == [(FAIL, "pcscd")]
    assert "apt-get install pcscd" in result[0].fix


def test_pcscd_running_without_socket_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")
    result = check_pcscd(str(tmp_path / "plain-file"), _fake_proc(tmp_path, "pcscd"))
    assert statuses(result) == [(WARN, "pcscd")]


# -- readers ----------------------------------------------------------------------------------------------
def test_readers_and_cards(config: Callable[..., Config]) -> None:
    result = check_readers(config(), probe=lambda t: [("ACS ACR39U 00 00", True), ("Other 01", False)])
    assert statuses(result) == [(OK, "reader"), (OK, "reader")]
    assert "card present" in result[0].detail and "no card" in result[1].detail


def test_no_reader_is_a_warning_unless_one_is_configured(config: Callable[..., Config]) -> None:
    assert statuses(check_readers(config(), probe=lambda t: [])) == [(WARN, "readers")]
    cfg = config('[card]\nreaders = ["ACS*"]\n')
    result = check_readers(cfg, probe=lambda t: [("Other 01", False)])
    assert statuses(result) == [(FAIL, "readers")]
    assert "Other 01" in result[0].detail


def test_psam_slot(config: Callable[..., Config]) -> None:
    cfg = config('[card]\npsam_reader = "R 01"\n')
    assert (FAIL, "psam") in statuses(check_readers(cfg, probe=lambda t: [("R 00", False)]))
    assert (FAIL, "psam") in statuses(check_readers(cfg, probe=lambda t: [("R 00", False), ("R 01", False)]))
    assert (OK, "psam") in statuses(check_readers(cfg, probe=lambda t: [("R 00", False), ("R 01", True)]))


def test_reader_probe_errors_and_hangs_are_failures(config: Callable[..., Config]) -> None:
    def gone(timeout_s: float) -> list[tuple[str, bool]]:
        raise PcscdUnavailable("list readers: pcscd is not running")

    assert statuses(check_readers(config(), probe=gone)) == [(FAIL, "readers")]

    def hangs() -> list[tuple[str, bool]]:
        import time
        time.sleep(5)
        return []

    result = check_readers(config(), probe=lambda t: within(0.2, hangs))
    assert statuses(result) == [(FAIL, "readers")] and "no answer" in result[0].detail


# -- printers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("state", "expected"), [("ok", OK), ("paper_near_end", WARN), ("paper_out", FAIL),
                                                 ("cover_open", FAIL), ("offline", FAIL), ("unknown", WARN)])
def test_printer_states(config: Callable[..., Config], state: str, expected: str) -> None:
    cfg = config('[[printers]]\nname = "p1"\nuri = "tcp://127.0.0.1:9"\n')
    result = check_printers(cfg, probe=lambda uri, t: state)
    assert statuses(result) == [(expected, "printer")]
    assert result[0].detail.startswith("p1 (tcp://127.0.0.1:9)")
    assert bool(result[0].fix) == (expected != OK)


def test_a_bad_printer_uri_is_a_failure(config: Callable[..., Config]) -> None:
    cfg = config('[[printers]]\nname = "p1"\nuri = "lpt://x"\n')

    def probe(uri: str, timeout_s: float) -> str:
        raise PrinterConfigError(f"unknown printer URI scheme 'lpt'; known: tcp, {uri}")

    assert statuses(check_printers(cfg, probe=probe)) == [(FAIL, "printer")]


def test_real_printer_emulator_states(config: Callable[..., Config], printer_sim: PrinterSim) -> None:
    cfg = config(f'[[printers]]\nname = "counter"\nuri = "{printer_sim.uri}"\n')
    assert statuses(check_printers(cfg)) == [(OK, "printer")]
    printer_sim.state = "paper_out"
    result = check_printers(cfg)
    assert statuses(result) == [(FAIL, "printer")] and "paper out" in result[0].detail
    printer_sim.state = "near_end"
    assert statuses(check_printers(cfg)) == [(WARN, "printer")]


# -- upstream and clock -----------------------------------------------------------------------------------
def _upstream(status: int = 200, skew: timedelta | None = timedelta(0)) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/health"
        headers = {}
        if skew is not None:
            headers["Date"] = format_datetime(datetime.now(UTC) + skew, usegmt=True)
        return httpx.Response(status, headers=headers, json={"status": "ok"})

    return httpx.MockTransport(handler)


UPSTREAM = '[upstream]\nurl = "http://central.invalid"\n'


def test_no_upstream_is_a_warning(config: Callable[..., Config]) -> None:
    assert statuses(check_upstream(config())) == [(WARN, "upstream")]


@pytest.mark.parametrize(("skew", "expected"), [(timedelta(0), OK), (timedelta(seconds=-45), WARN),
                                                (timedelta(minutes=10), FAIL), (None, WARN)])
def test_upstream_and_clock_skew(config: Callable[..., Config], skew: timedelta | None,
                                 expected: str) -> None:
    result = check_upstream(config(UPSTREAM), transport=_upstream(skew=skew))
    assert statuses(result) == [(OK, "upstream"), (expected, "clock")]
    if skew is not None and skew:
        assert ("ahead" if skew < timedelta(0) else "behind") in result[1].detail


def test_upstream_errors_are_failures(config: Callable[..., Config]) -> None:
    assert statuses(check_upstream(config(UPSTREAM), transport=_upstream(503)))[0] == (FAIL, "upstream")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = check_upstream(config(UPSTREAM), transport=httpx.MockTransport(refuse))
    assert statuses(result) == [(FAIL, "upstream")] and "unreachable" in result[0].detail


def test_upstream_token_file_is_sent(config: Callable[..., Config], tmp_path: Path) -> None:
    (tmp_path / "up-token").write_text("s3cret\n")
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, headers={"Date": format_datetime(datetime.now(UTC), usegmt=True)})

    cfg = config(UPSTREAM + f'token_file = "{tmp_path / "up-token"}"\n')
    assert statuses(check_upstream(cfg, transport=httpx.MockTransport(handler)))[0] == (OK, "upstream")
    assert seen == ["Bearer s3cret"]
    missing = config(UPSTREAM + f'token_file = "{tmp_path / "nope"}"\n')
    assert statuses(check_upstream(missing)) == [(FAIL, "upstream")]


def test_real_central_simulator(config: Callable[..., Config], central_sim: CentralSim) -> None:
    cfg = config(f'[upstream]\nurl = "{central_sim.url}"\n')
    result = check_upstream(cfg)
    assert statuses(result)[0] == (OK, "upstream"), result
    central_sim.control(down=True)
    assert statuses(check_upstream(cfg)) == [(FAIL, "upstream")]


# -- disk, spool, permissions -----------------------------------------------------------------------------
@pytest.mark.parametrize(("free", "total", "expected"), [(50 * 2**30, 100 * 2**30, OK),
                                                         (600 * 2**20, 100 * 2**30, WARN),
                                                         (2 * 2**30, 1000 * 2**30, OK),
                                                         (50 * 2**20, 100 * 2**30, FAIL)])
def test_disk_thresholds(config: Callable[..., Config], free: int, total: int, expected: str) -> None:
    result = check_disk(config(), usage=lambda p: SimpleNamespace(free=free, total=total))
    assert statuses(result) == [(expected, "disk")]


def test_spool_absent_healthy_and_tampered(config: Callable[..., Config]) -> None:
    cfg = config('[terminal]\nid = "T0001"\n')
    assert statuses(check_spool(cfg)) == [(OK, "spool")]
    spool = Spool.open(cfg.spool_path, "T0001", background_check=False)
    for n in range(3):
        spool.append(make_request(f"k{n}", total_fen=100))
    spool.close()
    result = check_spool(cfg)
    assert statuses(result) == [(OK, "spool")]
    assert "3 records" in result[0].detail and "3 pending" in result[0].detail
    with sqlite3.connect(cfg.spool_path) as conn:
        conn.execute("UPDATE records SET payload = replace(payload, '100', '999') WHERE seq = 2")
    result = check_spool(cfg)
    assert statuses(result) == [(FAIL, "spool")], result
    assert result[0].fix


def test_spool_that_is_not_a_database(config: Callable[..., Config]) -> None:
    cfg = config('[terminal]\nid = "T0001"\n')
    cfg.spool_path.parent.mkdir(parents=True)
    cfg.spool_path.write_bytes(b"this is not sqlite" * 100)
    assert statuses(check_spool(cfg)) == [(FAIL, "spool")]


def _user(uid: int, gid: int, name: str = "counter") -> Any:
    return pwd.struct_passwd((name, "x", uid, gid, "", "/nonexistent", "/usr/sbin/nologin"))


@pytest.mark.parametrize(("mode", "expected"), [(0o640, OK), (0o600, OK), (0o660, WARN), (0o644, FAIL)])
def test_token_file_mode(config: Callable[..., Config], mode: int, expected: str) -> None:
    cfg = config()
    cfg.state_dir.mkdir(parents=True)
    cfg.token_path.write_text("t\n")
    cfg.token_path.chmod(mode)
    result = check_permissions(cfg, user=_user(os.geteuid(), os.getegid()))
    assert (expected, "token") in statuses(result)


def test_state_dir_must_be_writable_by_the_service_user(config: Callable[..., Config]) -> None:
    cfg = config()
    assert (WARN, "state dir") in statuses(check_permissions(cfg, user=_user(0, 0, "root")))
    cfg.state_dir.mkdir(parents=True, mode=0o750)
    assert (OK, "state dir") in statuses(check_permissions(cfg, user=_user(os.geteuid(), os.getegid())))
    stranger = check_permissions(cfg, user=_user(54321, 54321, "stranger"))
    assert (FAIL, "state dir") in statuses(stranger)
    assert "chown" in next(c.fix for c in stranger if c.topic == "state dir")


def test_device_groups_for_serial_and_usb_printers(config: Callable[..., Config]) -> None:
    import grp

    try:
        grp.getgrnam("dialout"), grp.getgrnam("lp")
    except KeyError:
        pytest.skip("this machine has no dialout / lp groups")
    cfg = config('[[printers]]\nname = "s"\nuri = "serial:///dev/ttyUSB0"\n'
                 '[[printers]]\nname = "u"\nuri = "usb://04b8:0202"\n'
                 '[[printers]]\nname = "n"\nuri = "tcp://127.0.0.1:9100"\n')
    outsider = check_permissions(cfg, user=_user(54321, 54321, "outsider"))
    groups = [c for c in outsider if c.topic == "groups"]
    assert [c.status for c in groups] == [FAIL, FAIL]
    assert "usermod -aG dialout outsider" in groups[0].fix and "usermod -aG lp outsider" in groups[1].fix
    member = _user(54321, grp.getgrnam("dialout").gr_gid, "member")  # primary group dialout
    assert [c.status for c in check_permissions(cfg, user=member) if c.topic == "groups"] == [OK, FAIL]
    plain = check_permissions(config(), user=_user(54321, 54321))
    assert not [c for c in plain if c.topic == "groups"], "no device printers, no group check"


# -- the whole command ------------------------------------------------------------------------------------
def test_format_has_status_topic_detail_and_fix() -> None:
    line = format_check(Check(FAIL, "printer", "receipt: paper out", "load paper"))
    assert line.splitlines() == ["FAIL  printer    receipt: paper out", "      fix:       load paper"]
    assert format_check(Check(OK, "disk", "plenty")) == "OK    disk       plenty"


def test_one_broken_check_still_prints_the_others(config: Callable[..., Config],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> list[Check]:
        raise RuntimeError("bug")

    monkeypatch.setattr(doctor, "check_disk", broken)
    monkeypatch.setattr(doctor, "check_pcscd", lambda: [Check(OK, "pcscd", "fine")])
    monkeypatch.setattr(doctor, "check_readers", lambda cfg: [Check(OK, "reader", "fine")])
    import io

    out = io.StringIO()
    code = run_doctor(config(), out=out)
    text = out.getvalue()
    assert code == 1
    assert "FAIL  doctor" in text and "OK    spool" in text and "OK    pcscd" in text
    assert text.rstrip().splitlines()[-1].endswith("FAIL")


def _run_cli(cfg_path: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERMINALD_")}
    env.update(STATE_DIRECTORY=str(state), NO_COLOR="1")
    command = [sys.executable, "-m", "terminald.cli", "doctor", "--config", str(cfg_path), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_cli_exit_code_follows_failures(tmp_path: Path, printer_sim: PrinterSim,
                                       central_sim: CentralSim) -> None:
    cfg = tmp_path / "terminald.toml"
    cfg.write_text(f'[upstream]\nurl = "{central_sim.url}"\n'
                   f'[[printers]]\nname = "counter"\nuri = "{printer_sim.uri}"\n', encoding="utf-8")
    state = tmp_path / "state"
    result = _run_cli(cfg, state)
    lines = result.stdout.splitlines()
    assert any(line.startswith("OK    printer    counter") for line in lines), result.stdout
    assert any(line.startswith("OK    upstream") for line in lines), result.stdout
    assert any(line.startswith(("OK    clock", "WARN  clock")) for line in lines), result.stdout
    assert result.returncode == (1 if any(line.startswith("FAIL") for line in lines) else 0)

    printer_sim.state = "cover_open"
    result = _run_cli(cfg, state)
    assert result.returncode == 1
    assert "FAIL  printer    counter" in result.stdout and "close the printer cover" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].endswith(("1 FAIL", "2 FAIL", "3 FAIL"))


def test_cli_print_sends_a_test_page(tmp_path: Path, printer_sim: PrinterSim) -> None:
    cfg = tmp_path / "terminald.toml"
    cfg.write_text(f'[[printers]]\nname = "counter"\nuri = "{printer_sim.uri}"\n', encoding="utf-8")
    result = _run_cli(cfg, tmp_path / "state", "--print")
    assert "OK    test page  counter" in result.stdout, result.stdout + result.stderr
    import time

    deadline = time.monotonic() + 10
    while not printer_sim.jobs_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert printer_sim.jobs_text(), "the emulator printed nothing"

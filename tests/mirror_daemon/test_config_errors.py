"""A `[mirror]` section that cannot be used as written never costs a sale: the daemon starts,
sells, and says what is wrong in `/v1/status` (alarm `mirror_config`), whatever the mistake:
a DSN libpq cannot parse, a setting libpq refuses when connecting, a password file that is not
UTF-8. No PostgreSQL is needed: none of these reaches a server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from terminald.mirror import MirrorError
from terminald.mirror.connect import read_password
from tests.fixtures.daemon import DaemonProcess
from tests.mirror_daemon.helpers import config, copier_processes, mirror_of, sell
from tests.waiting import wait_for


def config_alarm(m: dict[str, Any]) -> dict[str, Any] | None:
    return next((a for a in m["alarms"] if a["code"] == "mirror_config"), None)


def test_a_dsn_libpq_cannot_parse_starts_no_copier_and_says_so(daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config("host=127.0.0.1 port"))
    with d.client() as api:
        assert sell(api, 3) == [1, 2, 3]
        m = mirror_of(api)
        alarm = config_alarm(m)
        assert alarm is not None and "not a valid libpq connection string" in alarm["message"], m
        # No copier that could only fail (a good DSN's starts within milliseconds: 3 s of none
        # means none), and no "copier process not running" noise beside the alarm.
        with pytest.raises(AssertionError, match="timed out"):
            wait_for(lambda: copier_processes(d.pid) or mirror_of(api)["pid"], 3, "a copier process")
        assert [a["code"] for a in mirror_of(api)["alarms"]] == ["mirror_config"]


def test_a_setting_libpq_refuses_at_connect_is_a_config_alarm_not_a_refused_write(
        daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config("host=127.0.0.1 port=1 dbname=x connect_timeout=abc"))
    with d.client() as api:
        assert sell(api, 2) == [1, 2]
        def alarmed() -> dict[str, Any] | None:
            m = mirror_of(api)
            return m if config_alarm(m) else None

        m = wait_for(alarmed, 30, "the mirror_config alarm")
        alarm = config_alarm(m)
        assert alarm is not None and "connect_timeout" in alarm["message"], m
        assert "mirror_rejected" not in {a["code"] for a in m["alarms"]}


def test_a_password_file_not_in_utf8_is_an_alarm_and_sales_go_on(
        tmp_path: Path, daemon_proc: Callable[..., DaemonProcess]) -> None:
    secret = tmp_path / "mirror-password"
    secret.write_bytes("密码123\n".encode("gbk"))
    secret.chmod(0o600)
    with pytest.raises(MirrorError, match="not UTF-8"):
        read_password(secret)
    d = daemon_proc(config("host=127.0.0.1 port=1 dbname=x") + f'password_file = "{secret}"\n')
    with d.client() as api:
        assert sell(api, 2) == [1, 2]
        alarm = config_alarm(mirror_of(api))
        assert alarm is not None and "not UTF-8" in alarm["message"] and str(secret) in alarm["message"]

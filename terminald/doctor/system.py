"""Doctor checks of the system: upstream and clock, disk space, spool integrity, permissions."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from terminald.config import Config
from terminald.doctor.base import FAIL, OK, WARN, Check

__all__ = ["check_disk", "check_permissions", "check_spool", "check_upstream"]

SERVICE_USER = "terminald"
SKEW_WARN_S = 30.0
SKEW_FAIL_S = 300.0
DISK_FAIL_BYTES, DISK_WARN_BYTES = 100 * 2**20, 1024 * 2**20


def check_upstream(cfg: Config, transport: httpx.BaseTransport | None = None,
                   now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> list[Check]:
    up = cfg.upstream
    if not up.url:
        return [Check(WARN, "upstream", "no upstream configured: every transaction stays pending",
                      "set [upstream] url in the config (see docs/install.md)")]
    headers = {}
    if up.token_file:
        try:
            headers["Authorization"] = "Bearer " + Path(up.token_file).read_text(encoding="ascii").strip()
        except OSError as exc:
            return [Check(FAIL, "upstream", f"cannot read {up.token_file}: {exc.strerror}",
                          "check the file exists and is readable by the terminald group")]
    verify: Any = up.ca_file or True
    cert = (up.client_cert, up.client_key) if up.client_cert else None
    try:
        with httpx.Client(transport=transport, verify=verify, cert=cert,
                          timeout=min(up.timeout_s, 10.0)) as client:
            sent = now()
            response = client.get(up.url + "/v1/health", headers=headers)
            received = now()
    except (httpx.HTTPError, OSError) as exc:
        return [Check(FAIL, "upstream", f"{up.url} unreachable: {type(exc).__name__}",
                      "check the network, DNS and firewall; transactions are spooled meanwhile")]
    checks = []
    if response.status_code == 200:
        checks.append(Check(OK, "upstream", f"{up.url} answers (HTTP 200)"))
    else:
        checks.append(Check(FAIL, "upstream", f"{up.url}/v1/health answered HTTP {response.status_code}",
                            "check upstream.url and the token; ask the insurance office if it persists"))
    checks.append(_clock(response.headers.get("date"), sent, received))
    return checks


def _clock(date_header: str | None, sent: datetime, received: datetime) -> Check:
    if not date_header:
        return Check(WARN, "clock", "central sent no Date header: clock skew unknown",
                     "check that NTP is on: timedatectl")
    try:
        theirs = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return Check(WARN, "clock", f"unreadable Date header {date_header!r}",
                     "check that NTP is on: timedatectl")
    mine = sent + (received - sent) / 2
    skew = (mine - theirs).total_seconds()
    # The Date header has 1 s resolution: skews below that are noise.
    text = f"local clock {'ahead of' if skew > 0 else 'behind'} central by {abs(skew):.0f} s"
    if abs(skew) >= SKEW_FAIL_S:
        return Check(FAIL, "clock", text + ": business times would be wrong",
                     "enable NTP: sudo timedatectl set-ntp true")
    if abs(skew) >= SKEW_WARN_S:
        return Check(WARN, "clock", text, "enable NTP: sudo timedatectl set-ntp true")
    return Check(OK, "clock", f"in step with central (skew {abs(skew):.0f} s)")


# -- disk, spool, permissions -------------------------------------------------------------------------
def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(cfg: Config, usage: Callable[[Path], Any] = shutil.disk_usage) -> list[Check]:
    where = _existing(cfg.spool_path.parent)
    try:
        du = usage(where)
    except OSError as exc:
        return [Check(FAIL, "disk", f"cannot stat {where}: {exc.strerror}", "check the mount")]
    free, total = int(du.free), int(du.total) or 1
    text = f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB at {where}"
    # Absolute thresholds: the spool needs megabytes, whatever the size of the disk.
    if free < DISK_FAIL_BYTES:
        return [Check(FAIL, "disk", text + ": new transactions will be refused (spool_full)",
                      "free space now: old logs (journalctl --vacuum-size=100M), downloads")]
    if free < DISK_WARN_BYTES:
        return [Check(WARN, "disk", text, "free some space soon (journalctl --vacuum-size=100M)")]
    return [Check(OK, "disk", text)]


def check_spool(cfg: Config) -> list[Check]:
    from spool import Spool, SpoolError

    path = cfg.spool_path
    if not path.exists():
        return [Check(OK, "spool", f"no spool yet at {path} (created on first start)")]
    try:
        # Read-only: doctor runs as root, beside the daemon; it must not migrate or create anything.
        spool = Spool.open_readonly(path, cfg.terminal.id)
    except SpoolError as exc:
        return [Check(FAIL, "spool", f"{path} cannot be opened: {exc}",
                      "run as root or the terminald user; if corrupt: `terminald spool check`, "
                      "keep the file, call support (records are never deleted)")]
    try:
        report = spool.check()
        stats = spool.stats()
    except SpoolError as exc:
        return [Check(FAIL, "spool", f"{path}: {exc}", "run `terminald spool check` and call support")]
    finally:
        spool.close()
    if not report.ok:
        first = report.problems[0]
        return [Check(FAIL, "spool", f"{path}: {len(report.problems)} problem(s), first: {first}",
                      "stop terminald, keep a copy of the file, call support")]
    return [Check(OK, "spool", f"{report.records} records, hash chain and SQLite integrity ok; "
                               f"{stats.pending} pending, last seq {stats.last_seq}")]


def _service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return pwd.getpwuid(os.geteuid())


def _in_group(user: pwd.struct_passwd, group: str) -> bool | None:
    try:
        g = grp.getgrnam(group)
    except KeyError:
        return None
    return user.pw_uid == 0 or user.pw_gid == g.gr_gid or user.pw_name in g.gr_mem


def _needed_groups(cfg: Config) -> dict[str, list[str]]:
    needs: dict[str, list[str]] = {}
    for entry in cfg.printer_entries:
        uri = entry.uri
        if uri.startswith("serial://") or uri.startswith("file:///dev/tty"):
            needs.setdefault("dialout", []).append(entry.name)
        elif uri.startswith("usb://") or uri.startswith("file:///dev/usb/"):
            needs.setdefault("lp", []).append(entry.name)
    return needs


def check_permissions(cfg: Config, user: pwd.struct_passwd | None = None) -> list[Check]:
    user = user or _service_user()
    checks: list[Check] = []
    state = cfg.state_dir
    if not state.exists():
        checks.append(Check(WARN, "state dir", f"{state} does not exist yet",
                            "start the service once (systemd creates it) or: sudo systemd-tmpfiles --create"))
    else:
        st = state.stat()
        writable = (st.st_uid == user.pw_uid and st.st_mode & stat.S_IWUSR) or user.pw_uid == 0 or (
            _in_group(user, grp.getgrgid(st.st_gid).gr_name) and st.st_mode & stat.S_IWGRP)
        if writable:
            checks.append(Check(OK, "state dir", f"{state} writable by {user.pw_name}"))
        else:
            checks.append(Check(FAIL, "state dir", f"{state} is not writable by {user.pw_name}",
                                f"sudo chown -R {user.pw_name}: {state}"))
    token = cfg.token_path
    try:
        mode = stat.S_IMODE(token.stat().st_mode)
    except FileNotFoundError:
        checks.append(Check(OK, "token", f"{token} not created yet (made on first start, mode 0640)"))
    except OSError as exc:
        checks.append(Check(FAIL, "token", f"{token}: {exc.strerror}", f"sudo chmod 0640 {token}"))
    else:
        if mode & 0o007:
            checks.append(Check(FAIL, "token", f"{token} is readable by every user (mode {mode:04o})",
                                f"sudo chmod 0640 {token}"))
        elif mode & 0o020:
            checks.append(Check(WARN, "token", f"{token} is group-writable (mode {mode:04o})",
                                f"sudo chmod 0640 {token}"))
        else:
            checks.append(Check(OK, "token", f"{token} mode {mode:04o}"))
    for group, printers in sorted(_needed_groups(cfg).items()):
        member = _in_group(user, group)
        used_by = ", ".join(printers)
        if member:
            checks.append(Check(OK, "groups", f"{user.pw_name} is in {group} (printers {used_by})"))
        elif member is None:
            checks.append(Check(FAIL, "groups", f"group {group} does not exist (printers {used_by})",
                                "reinstall the sysusers file: sudo systemd-sysusers"))
        else:
            checks.append(Check(FAIL, "groups", f"{user.pw_name} is not in {group}: cannot open {used_by}",
                                f"sudo usermod -aG {group} {user.pw_name}"))
    return checks

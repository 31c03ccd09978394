"""The systemd files: hardening score, `systemd-analyze verify`, sysusers and tmpfiles applied
to a scratch root, and a syntax check of the udev rules (udevadm is not always installed)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "terminald.service"
SYSUSERS = SYSTEMD / "terminald.sysusers"
TMPFILES = SYSTEMD / "terminald.tmpfiles"
INSTALLED = "/etc/systemd/system/terminald.service"
MAX_EXPOSURE = 1.8

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (apt-get install systemd)")


def unit_settings() -> dict[str, list[str]]:
    """Every `Key=value` of the unit, repeated keys kept in order."""
    found: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_is_notify_with_watchdog_restart_and_directories() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert s["StateDirectory"] == ["terminald"]
    assert s["ConfigurationDirectory"] == ["terminald"]
    assert s["User"] == ["terminald"]
    assert s["Group"] == ["terminald"]
    # The daemon is in the API group (to give it the token files and the socket), not the reverse.
    assert set(s["SupplementaryGroups"][0].split()) == {"dialout", "lp", "terminald-api"}
    assert re.fullmatch(r"\d+s?", s["WatchdogSec"][0])
    assert "pcscd.socket" in " ".join(s["After"]) and "pcscd.socket" in " ".join(s["Wants"])
    assert s["ExecStart"][0].split()[0].startswith("/") and s["ExecStart"][0].split()[1] == "serve"


@needs_analyze
def test_exposure_score_is_at_most_1_8() -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for terminald\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_keeps_the_spool_private_and_gives_the_api_group_only_its_files() -> None:
    s = unit_settings()
    assert s["StateDirectoryMode"] == ["0700"], "the spool holds every patient's identity"
    assert s["UMask"] == ["0077"], "whatever the daemon creates is its own"
    # The POS reaches /run/terminald/api.sock by passing through, without listing.
    assert s["RuntimeDirectoryMode"] == ["0711"]
    assert s["ReadWritePaths"] == ["-/var/lib/terminald-api"]


def _scratch_root(tmp_path: Path) -> Path:
    """A root with the host's unit library and the unit's ExecStart binary, for `verify --root`."""
    root = tmp_path / "root"
    lib = root / "usr/lib/systemd"
    lib.mkdir(parents=True)
    candidates = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
    host_units = next((p for p in candidates if p.is_dir()), None)
    if host_units is None:
        pytest.skip("no systemd unit library on this machine")
    shutil.copytree(host_units, lib / "system", symlinks=True)
    exec_start = unit_settings()["ExecStart"][0].split()[0]
    binary = root / exec_start.lstrip("/")
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/terminald.service")
    return root


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", INSTALLED],
                            capture_output=True, text=True, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "terminald" in line]
    assert result.returncode == 0, result.stderr
    assert ours == [], "\n".join(ours)


@needs_analyze
def test_verify_catches_a_typo(tmp_path: Path) -> None:
    # Guards the test above: a misspelt key must show up, or "clean" means nothing.
    root = _scratch_root(tmp_path)
    unit = root / "etc/systemd/system/terminald.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=", "WatchdogSc="))
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", INSTALLED],
                            capture_output=True, text=True, timeout=60)
    assert "WatchdogSc" in result.stdout + result.stderr


def _passwd_root(tmp_path: Path) -> Path:
    root = tmp_path / "sysroot"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nlp:x:7:\ndialout:x:20:\n")
    return root


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_creates_the_user_in_dialout_and_lp(tmp_path: Path) -> None:
    root = _passwd_root(tmp_path)
    subprocess.run(["systemd-sysusers", f"--root={root}", "-"], input=SYSUSERS.read_bytes(),
                   check=True, capture_output=True, timeout=30)
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    user = passwd["terminald"]
    assert user[5] == "/var/lib/terminald" and user[6].endswith("nologin")
    assert 0 < int(user[2]) < 1000, "a system user"
    assert groups["terminald"][2] == user[3]
    assert "terminald" in groups["dialout"][3].split(",")
    assert "terminald" in groups["lp"][3].split(",")
    # The API group exists, only the daemon is in it; group terminald has no other member.
    assert groups["terminald-api"][3].split(",") == ["terminald"]
    assert groups["terminald"][3] == ""


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None or shutil.which("systemd-sysusers") is None,
                    reason="systemd-tmpfiles / systemd-sysusers are not installed")
def test_tmpfiles_creates_private_directories_owned_by_the_user(tmp_path: Path) -> None:
    root = _passwd_root(tmp_path)
    subprocess.run(["systemd-sysusers", f"--root={root}", "-"], input=SYSUSERS.read_bytes(),
                   check=True, capture_output=True, timeout=30)
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", "-"],
                   input=TMPFILES.read_bytes(), check=True, capture_output=True, timeout=30)
    uid = int(next(line for line in (root / "etc/passwd").read_text().splitlines()
                   if line.startswith("terminald:")).split(":")[2])
    gids = {line.split(":")[0]: int(line.split(":")[2]) for line in (root / "etc/group").read_text().splitlines()}
    expected = {  # path: (mode, group)
        "var/lib/terminald": (0o700, "terminald"),            # the spool: the daemon's alone
        "var/lib/terminald/receipts": (0o700, "terminald"),
        "var/lib/terminald-api": (0o750, "terminald-api"),    # the API token files
        "run/terminald": (0o711, "terminald"),                # the socket: pass through, no listing
    }
    for rel, (mode, group) in expected.items():
        st = (root / rel).stat()
        assert st.st_uid == uid, rel
        assert st.st_mode & 0o7777 == mode, f"{rel}: {st.st_mode & 0o7777:04o}"
        assert st.st_gid == gids[group], rel
    etc = (root / "etc/terminald").stat()
    assert etc.st_uid == 0 and etc.st_mode & 0o777 == 0o750


# -- udev rules -----------------------------------------------------------------------------------------
_KEY = re.compile(r'\s*(?P<key>[A-Z_]+(?:\{[^}]+\})?)\s*(?P<op>==|!=|\+=|-=|:=|=)\s*'
                  r'"(?P<value>[^"]*)"\s*(?:,|$)')
_MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "DRIVER", "ENV", "ATTR", "ATTRS", "TAG", "SUBSYSTEMS",
               "KERNELS", "DRIVERS", "DEVPATH"}
_ASSIGN_KEYS = {"GROUP", "MODE", "OWNER", "SYMLINK", "TAG", "ENV", "GOTO", "LABEL", "RUN"}


def parse_rule(line: str) -> list[tuple[str, str, str]]:
    pairs, pos = [], 0
    while pos < len(line):
        match = _KEY.match(line, pos)
        if not match:
            raise ValueError(f"cannot parse at column {pos}: {line[pos:pos + 40]!r}")
        pairs.append((match["key"], match["op"], match["value"]))
        pos = match.end()
    return pairs


def rules() -> list[list[tuple[str, str, str]]]:
    lines = [line.strip() for line in (SYSTEMD / "70-terminald.rules").read_text().splitlines()]
    return [parse_rule(line) for line in lines if line and not line.startswith("#")]


def test_udev_rules_parse_and_use_known_keys_and_operators() -> None:
    parsed = rules()
    assert len(parsed) >= 4
    labels = {v for rule in parsed for k, _, v in rule if k == "LABEL"}
    for rule in parsed:
        for key, op, _value in rule:
            base = key.split("{")[0]
            if op in ("==", "!="):
                assert base in _MATCH_KEYS, key
            else:
                assert base in _ASSIGN_KEYS, key
            if base == "GOTO":
                assert _value in labels
            if base == "MODE":
                assert re.fullmatch(r"0[0-7]{3}", _value)


def test_udev_rules_give_printers_to_lp_and_serial_to_dialout() -> None:
    groups: dict[str, list[dict[str, str]]] = {}
    for rule in rules():
        d = {k: v for k, _, v in rule}
        if "GROUP" in d:
            groups.setdefault(d["GROUP"], []).append(d)
    assert any(r.get("KERNEL", "").startswith("lp") for r in groups["lp"]), "usblp nodes"
    assert any("0701" in r.get("ENV{ID_USB_INTERFACES}", "") for r in groups["lp"]), "printer-class devices"
    assert any("ttyUSB" in r.get("KERNEL", "") for r in groups["dialout"])
    assert all(r["MODE"] == "0660" for rs in groups.values() for r in rs), "never world-writable"


def test_the_parser_rejects_broken_rules() -> None:
    with pytest.raises(ValueError):
        parse_rule('SUBSYSTEM=="usb", GROUP="lp" MODE="0660"')
    with pytest.raises(ValueError):
        parse_rule('SUBSYSTEM=="usb, GROUP="lp"')

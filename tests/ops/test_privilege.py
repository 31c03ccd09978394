"""Least privilege around the counter PC: the POS's group reaches the API, never the spool.

The layout of docs/install.md, rebuilt in a scratch directory: the state directory 0700 (as
systemd's StateDirectoryMode makes it), the token directory 0750 terminald:API-group and the
socket directory 0711 (as the tmpfiles file makes them). As root, the test creates throwaway
accounts (removed afterwards): an API group, a service user in it that runs the daemon (with
Debian's python3 and this checkout on PYTHONPATH: the virtualenv's interpreter lives under
/root, which other users cannot enter), a POS user in the API group, and a bystander in no
group. The daemon starts with a lax umask (0022), as it would outside systemd. Then:

- the POS user reads the token, connects to the Unix socket and gets 200, but cannot open
  spool.db, its -wal, -shm or -seq, nor list the state directory;
- the bystander can do none of it;
- every file the daemon created in its state directory is 0600 (directories 0700), owned by
  the service user, with no ACL; the token files are 0640 and the socket 0660, group API;
- `terminald token rotate` run by root keeps the file's owner and mode; the POS reads the new
  token, the old one is refused.

Without root (or useradd), the same modes are checked on a daemon run by the test's own user.
`spool export` and the salvage side file are 0600 whatever the umask.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from spool.salvage import after_break_path, salvage
from tests.fixtures.daemon import DaemonProcess, free_port
from tests.ops._helpers import post_transaction, settlement
from tests.spool.test_corruption import _build, _tamper
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
LAX_UMASK = 0o022
ACL_ATTRS = ("system.posix_acl_access", "system.posix_acl_default")
TOKEN_NAMES = ("api-token", "status-token")

can_make_users = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "userdel", "groupadd", "groupdel")),
    reason="needs root and useradd/groupadd to create throwaway accounts")

# Run as the POS user or the bystander, with nothing but the standard library.
PROBE = r"""
import json, os, socket, sys
token_path, status_path, sock_path, state_dir, spool = sys.argv[1:6]
out = {}
def attempt(name, fn):
    try:
        out[name] = ["ok", fn()]
    except PermissionError as exc:
        out[name] = ["denied", exc.errno]
    except OSError as exc:
        out[name] = ["error", exc.errno]
def read(path):
    with open(path, "rb") as fh:
        return fh.read().decode().strip()
def status():
    token = read(token_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    s.sendall(("GET /v1/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + token
               + "\r\nConnection: close\r\n\r\n").encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.split(b"\r\n", 1)[0].decode()
def connect_only():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.close()
    return "connected"
attempt("token", lambda: read(token_path))
attempt("status_token", lambda: read(status_path))
attempt("connect", connect_only)
attempt("api", status)
for suffix in ("", "-wal", "-shm", "-seq"):
    attempt("spool" + suffix, lambda: read(spool + suffix)[:8])
attempt("list_state", lambda: os.listdir(state_dir))
print(json.dumps(out))
"""


# -- throwaway accounts ---------------------------------------------------------------------------------
@dataclass
class Accounts:
    api: str
    service: str
    pos: str
    bystander: str

    def uid(self, user: str) -> int:
        return pwd.getpwnam(user).pw_uid

    def gid(self, group: str) -> int:
        return grp.getgrnam(group).gr_gid


@contextlib.contextmanager
def throwaway_accounts() -> Iterator[Accounts]:
    tag = secrets.token_hex(3)
    acc = Accounts(api=f"tdapi{tag}", service=f"tdsvc{tag}", pos=f"tdpos{tag}", bystander=f"tdoth{tag}")
    users: list[str] = []
    groups: list[str] = []

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    try:
        run("groupadd", "--system", acc.api)
        groups.append(acc.api)
        for user, extra in ((acc.service, [acc.api]), (acc.pos, [acc.api]), (acc.bystander, [])):
            # -U: a group of the user's own name (removed with the user); -M: no home.
            run("useradd", "--system", "-M", "-U", "-s", "/usr/sbin/nologin",
                *(["-G", ",".join(extra)] if extra else []), user)
            users.append(user)
        yield acc
    finally:
        for user in users:
            subprocess.run(["userdel", user], capture_output=True, timeout=60)
            with contextlib.suppress(KeyError):  # userdel leaves the group when it is not empty
                grp.getgrnam(user)
                subprocess.run(["groupdel", user], capture_output=True, timeout=60)
        for group in groups:
            subprocess.run(["groupdel", group], capture_output=True, timeout=60)


def as_user(acc: Accounts, user: str, groups: list[str]) -> dict[str, Any]:
    """Popen arguments that run a child as `user` with exactly these supplementary groups."""
    return {"user": user, "group": grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name, "extra_groups": groups}


def _child_env(base: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TERMINALD_")
           and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STATE_DIRECTORY", "PYTHONPATH")}
    env.update({"HOME": str(base), "PYTHONUNBUFFERED": "1", **extra})
    return env


def _service_python(acc: Accounts, env: dict[str, str]) -> str | None:
    """An interpreter the service user can run with this checkout importable, or None."""
    if not SYSTEM_PYTHON.exists():
        return None
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import terminald.server, terminald.cli"],
                           env=env, capture_output=True, timeout=120,
                           **as_user(acc, acc.service, [acc.api]))
    return str(SYSTEM_PYTHON) if probe.returncode == 0 else None


def _no_acl(path: Path) -> bool:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return True  # no xattr support: no ACL either
    return not any(name in ACL_ATTRS for name in names)


def _walk(top: Path) -> list[Path]:
    return [Path(root) / name for root, dirs, files in os.walk(top) for name in (*dirs, *files)]


def _wait_printed(api: httpx.Client, job_id: str) -> None:
    wait_for(lambda: api.get(f"/v1/print-jobs/{job_id}").json().get("state") in ("done", "failed"), 30,
             "the receipt preview to be written")


@can_make_users
def test_the_pos_group_reaches_the_api_and_never_the_spool() -> None:
    base = Path(tempfile.mkdtemp(prefix="terminald-privilege-"))
    base.chmod(0o755)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with throwaway_accounts() as acc:
            svc_uid, svc_gid, api_gid = acc.uid(acc.service), pwd.getpwnam(acc.service).pw_gid, acc.gid(acc.api)
            lib, run_dir = base / "lib", base / "run"
            lib.mkdir(mode=0o755)
            state, api_dir = lib / "terminald", lib / "terminald-api"
            # What systemd (StateDirectory=, RuntimeDirectory=) and tmpfiles make, with their modes.
            for directory, mode, gid in ((state, 0o700, svc_gid), (api_dir, 0o750, api_gid),
                                         (run_dir, 0o711, svc_gid)):
                directory.mkdir()
                os.chown(directory, svc_uid, gid)
                directory.chmod(mode)
            sock = run_dir / "api.sock"
            config = base / "terminald.toml"
            config.write_text(f'[api]\nunix_socket = "{sock}"\ntoken_file = "{api_dir / "api-token"}"\n'
                              f'group = "{acc.api}"\n[offline]\nrequire_card_present = false\n')
            config.chmod(0o644)
            port = free_port()
            env = _child_env(base, {"STATE_DIRECTORY": str(state), "TERMINALD_CONFIG": str(config),
                                    "TERMINALD_API__LISTEN": f"127.0.0.1:{port}",
                                    "PYTHONPATH": os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]])})
            python = _service_python(acc, env)
            if python is None:
                pytest.skip("no interpreter the throwaway service user can run (Debian's python3 with this "
                            "checkout on PYTHONPATH)")
            with open(base / "stderr.log", "wb") as err:
                proc = subprocess.Popen([python, "-m", "terminald.cli", "serve"], env=env, cwd=base,
                                        stdin=subprocess.DEVNULL, stdout=err, stderr=err, umask=LAX_UMASK,
                                        start_new_session=True, **as_user(acc, acc.service, [acc.api]))

            def healthy() -> bool:
                assert proc is not None and proc.poll() is None, (base / "stderr.log").read_text()
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(healthy, 60, "the daemon run by the service user to answer")
            token_path, status_path = api_dir / "api-token", api_dir / "status-token"
            token = token_path.read_text().strip()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              headers={"Authorization": f"Bearer {token}"}) as api:
                # Make the daemon create what it creates in a day: records (-wal, -shm, -seq),
                # events, print jobs, a receipt preview.
                created = post_transaction(api, settlement(), wait=0)
                assert created.status_code == 202, created.text
                job = api.post(f"/v1/transactions/{created.json()['id']}/receipt", json={})
                assert job.status_code == 202, job.text
                _wait_printed(api, job.json()["job_id"])
            spool = state / "spool.db"
            for suffix in ("", "-wal", "-shm", "-seq"):
                assert Path(f"{spool}{suffix}").exists(), suffix
            assert list((state / "receipts").glob("*.png"))

            def probe(user: str, groups: list[str]) -> dict[str, list[Any]]:
                done = subprocess.run([str(SYSTEM_PYTHON), "-c", PROBE, str(token_path), str(status_path),
                                       str(sock), str(state), str(spool)], env=_child_env(base, {}),
                                      capture_output=True, text=True, timeout=60, **as_user(acc, user, groups))
                assert done.returncode == 0, done.stderr
                result: dict[str, list[Any]] = json.loads(done.stdout)
                return result

            pos = probe(acc.pos, [acc.api])
            assert pos["token"] == ["ok", token]
            assert pos["status_token"][0] == "ok"
            assert pos["connect"] == ["ok", "connected"]
            assert pos["api"] == ["ok", "HTTP/1.1 200 OK"]
            for name in ("spool", "spool-wal", "spool-shm", "spool-seq", "list_state"):
                assert pos[name][0] == "denied", (name, pos[name])

            bystander = probe(acc.bystander, [])
            for name in ("token", "status_token", "connect", "api", "spool", "spool-wal", "list_state"):
                assert bystander[name][0] == "denied", (name, bystander[name])

            # Every file the daemon made in its state directory, under a lax umask: its own alone.
            made = _walk(state)
            assert len(made) >= 6, made
            for path in made:
                st = path.lstat()
                assert st.st_uid == svc_uid, path
                expected = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
                assert stat.S_IMODE(st.st_mode) == expected, f"{path}: {stat.S_IMODE(st.st_mode):04o}"
                assert _no_acl(path), path
            for path in (token_path, status_path):
                st = path.stat()
                assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, svc_uid, api_gid), path
                assert _no_acl(path)
            st = sock.stat()
            assert stat.S_ISSOCK(st.st_mode)
            assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, svc_uid, api_gid)

            # Root rotates the POS's token: same owner and mode; the POS reads the new one at once.
            rotate_env = {**env, "PYTHONPATH": ""}
            done = subprocess.run([sys.executable, "-m", "terminald.cli", "token", "rotate"], env=rotate_env,
                                  cwd=base, capture_output=True, text=True, timeout=60, umask=LAX_UMASK)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "accepts the new token" in done.stdout
            st = token_path.stat()
            assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, svc_uid, api_gid)
            new = token_path.read_text().strip()
            assert new != token
            after = probe(acc.pos, [acc.api])
            assert after["token"] == ["ok", new] and after["api"] == ["ok", "HTTP/1.1 200 OK"]
            old = httpx.get(f"http://127.0.0.1:{port}/v1/status", headers={"Authorization": f"Bearer {token}"})
            assert old.status_code == 401

            proc.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal once it has shut down cleanly
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM), (base / "stderr.log").read_text()
            assert not sock.exists()
            proc = None
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


# -- without root: the same modes, the daemon run by the test's own user ------------------------------------
@contextlib.contextmanager
def lax_umask() -> Iterator[None]:
    old = os.umask(LAX_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def test_every_file_the_daemon_creates_is_private_under_a_lax_umask(
        daemon_proc: Callable[..., DaemonProcess]) -> None:
    with lax_umask():
        d = daemon_proc("[offline]\nrequire_card_present = false\n")
    api = d.client()
    created = post_transaction(api, settlement(), wait=0)
    assert created.status_code == 202, created.text
    job = api.post(f"/v1/transactions/{created.json()['id']}/receipt", json={})
    _wait_printed(api, job.json()["job_id"])
    made = _walk(d.state_dir)
    assert {p.name for p in made} >= {"spool.db", "spool.db-wal", "spool.db-shm", "spool.db-seq", "receipts",
                                      *TOKEN_NAMES}
    for path in made:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = 0o640 if path.name in TOKEN_NAMES else 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{path}: {mode:04o}"
        assert _no_acl(path), path


def test_an_older_spool_readable_by_the_group_is_made_private_at_start(
        daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc()
    d.stop()
    spool = d.state_dir / "spool.db"
    for suffix in ("", "-seq"):
        Path(f"{spool}{suffix}").chmod(0o640)  # as an older version under UMask=0027 left them
    d.start()
    for suffix in ("", "-wal", "-shm", "-seq"):
        path = Path(f"{spool}{suffix}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_spool_export_writes_0600_whatever_the_umask(daemon_proc: Callable[..., DaemonProcess], tmp_path: Path,
                                                     fmt: str) -> None:
    d = daemon_proc("[offline]\nrequire_card_present = false\n")
    assert post_transaction(d.client(), settlement(), wait=0).status_code == 202
    dest = tmp_path / f"export.{fmt}"
    done = subprocess.run([sys.executable, "-m", "terminald.cli", "spool", "export", str(dest), "--format", fmt],
                          env=d.env, cwd=d.workdir, capture_output=True, text=True, timeout=120, umask=LAX_UMASK)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert dest.stat().st_size > 0


def test_the_salvage_side_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 20)
    _tamper(src, "UPDATE records SET payload = json_set(payload, '$.total_fen', 99999) WHERE seq = 5")
    out = tmp_path / "out"
    out.mkdir()
    with lax_umask():
        report = salvage(src, out / "salvaged.db")
    side = after_break_path(out / "salvaged.db")
    assert report.after_break > 0 and side.exists()
    assert stat.S_IMODE(side.stat().st_mode) == 0o600

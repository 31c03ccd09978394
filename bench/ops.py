"""Operations figures: idle memory and start-up time of `terminald serve`, and the unit's exposure.

- start to READY: time from exec to the `READY=1` datagram on a NOTIFY_SOCKET
  this script owns (systemd's own protocol; READY=1 means spool open and API
  listening), against a bare `python -c "import fastapi, uvicorn"` process
  timed from exec to exit in the same run;
- idle RSS: VmRSS of the daemon a few seconds after READY with default config
  (no printer, no upstream), against the bare import process's peak RSS;
- `systemd-analyze security --offline=true systemd/terminald.service`.

Each figure is the median of --runs starts, alternating daemon and baseline.

    .venv/bin/python bench/ops.py [--runs 5] [--idle 3]

Targets: RSS <= 60 MB, READY <= 1.5 s, exposure <= 1.8. Ends with one RESULT line.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from terminald.sim.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "terminald.service"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def daemon_run(workdir: Path, idle_s: float) -> tuple[float, int]:
    """(seconds from exec to READY=1, idle RSS in KiB) of one fresh daemon with defaults."""
    state = Path(tempfile.mkdtemp(dir=workdir))
    notify_path = state / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(30)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TERMINALD_", "WATCHDOG_"))}
        env.update(STATE_DIRECTORY=str(state), NOTIFY_SOCKET=str(notify_path),
                   TERMINALD_API__LISTEN=f"127.0.0.1:{free_port()}",
                   TERMINALD_CONFIG=str(state / "none.toml"))
        (state / "none.toml").write_text("")
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "terminald.cli", "serve"], cwd=state, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                message = notify.recv(4096).decode()
                if "READY=1" in message.split("\n"):
                    ready = time.perf_counter() - started
                    break
            time.sleep(idle_s)
            rss = rss_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return ready, rss


def baseline_run() -> tuple[float, int]:
    """(seconds from exec to exit, peak RSS in KiB) of a bare `import fastapi, uvicorn`.

    Children's ru_maxrss is the maximum over every child so far: call this before any daemon runs.
    """
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import fastapi, uvicorn"], check=True)
    elapsed = time.perf_counter() - started
    return elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def exposure() -> float | None:
    if shutil.which("systemd-analyze") is None:
        return None
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                         capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    return float(match.group(1)) if match else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds idle before reading RSS")
    args = parser.parse_args()

    first_base_s, base_kib = baseline_run()
    readies, rsses, base_times = [], [], [first_base_s]
    with tempfile.TemporaryDirectory(prefix="terminald-bench-ops-") as tmp:
        for _ in range(args.runs):
            ready, rss = daemon_run(Path(tmp), args.idle)
            readies.append(ready)
            rsses.append(rss)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import fastapi, uvicorn"], check=True)
            base_times.append(time.perf_counter() - t0)
    ready_s = statistics.median(readies)
    rss_mb = statistics.median(rsses) / 1024
    base_s = statistics.median(base_times)
    base_mb = base_kib / 1024
    score = exposure()
    print(f"start to READY=1   {ready_s:6.3f} s   (bare fastapi+uvicorn import {base_s:.3f} s, "
          f"ratio {ready_s / base_s:.2f}x; target <= 1.5 s)")
    print(f"idle RSS           {rss_mb:6.1f} MB  (bare import peak {base_mb:.1f} MB, "
          f"ratio {rss_mb / base_mb:.2f}x; target <= 60 MB)")
    print(f"exposure score     {score if score is not None else 'n/a':>6}      (target <= 1.8)")
    ok = ready_s <= 1.5 and rss_mb <= 60 and (score is None or score <= 1.8)
    print(f"RESULT ready_s={ready_s:.3f} base_start_s={base_s:.3f} ready_ratio={ready_s / base_s:.2f} "
          f"idle_rss_mb={rss_mb:.1f} base_rss_mb={base_mb:.1f} rss_ratio={rss_mb / base_mb:.2f} "
          f"exposure={score if score is not None else 'na'} ok={str(ok).lower()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The command line, run as a user runs it: real processes, real files."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from terminald.sim.card import CARDS_DIR, load_card

TYPED = {"card_number": "A12345678", "ssn": "110101199003077777", "name": "李雷", "issuer_code": "110000"}


def terminald(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "terminald.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def sale(n: int) -> dict[str, Any]:
    return {"kind": "settlement", "card": TYPED,
            "items": [{"code": f"X{n}", "name": "阿莫西林胶囊", "qty": 1, "unit_price_fen": 1000 + n,
                       "amount_fen": 1000 + n}],
            "total_fen": 1000 + n, "operator": {"id": "op1", "name": "王芳"},
            "business_time": "2026-11-23T10:15:00+08:00"}


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text("[upstream]\nwait_s = 'soon'\n[card]\nprofil = 'x'\n", encoding="utf-8")
    result = terminald("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "upstream.wait_s" in result.stderr
    assert "card.profil: unknown key" in result.stderr


def test_usage_error_exits_2() -> None:
    assert terminald("spool", "export", "--format", "xml", "out").returncode == 2
    assert terminald("no-such-command").returncode == 2


def test_serve_with_nothing_attached(daemon_proc: Any) -> None:
    """No config file, no pcscd, no upstream: it serves and says what is absent."""
    d = daemon_proc(env={"PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"})
    with d.client() as api:
        assert api.get("/v1/health").json() == {"status": "ok"}
        status = api.get("/v1/status").json()
        assert status["mode"] == "offline"
        assert status["upstream"]["cause"] == "no upstream configured"
        assert status["devices"]["readers"] == []
        assert status["devices"]["reader_state"] in ("pcscd_unavailable", "no_reader")
        assert status["devices"]["printers"][0]["uri"].startswith("preview://")
        read = api.post("/v1/card/read", json={})
        assert read.status_code == 503
        assert read.json()["code"] == "no_reader"


def test_spool_commands_on_a_real_spool(daemon_proc: Any, tmp_path: Path) -> None:
    d = daemon_proc(config="[terminal]\nid = \"T0042\"\n[offline]\nrequire_card_present = false\n")
    with d.client() as api:
        ids = []
        for n in range(3):
            r = api.post("/v1/transactions?wait=0", json=sale(n), headers={"Idempotency-Key": f"cli-{n}"})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
    d.stop()
    env = {**d.env}

    listing = terminald("spool", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    for record_id in ids:
        assert record_id in listing.stdout

    shown = terminald("spool", "show", "2", env=env)
    assert shown.returncode == 0
    assert ids[1] in shown.stdout
    assert TYPED["ssn"] not in shown.stdout and TYPED["name"] not in shown.stdout
    full = terminald("spool", "show", ids[1], "--full", env=env)
    assert TYPED["ssn"] in full.stdout

    check = terminald("spool", "check", env=env)
    assert check.returncode == 0, check.stdout
    assert "3 records" in check.stdout

    out = tmp_path / "export.jsonl"
    assert terminald("spool", "export", str(out), env=env).returncode == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    out_csv = tmp_path / "export.csv"
    assert terminald("spool", "export", str(out_csv), "--format", "csv", env=env).returncode == 0
    assert len(list(csv.reader(out_csv.open(encoding="utf-8")))) == 4

    rec = terminald("reconcile", "--date", "2026-11-23", env=env)
    assert "3" in rec.stdout
    assert terminald("outages", "--csv", env=env).returncode == 0


def test_check_fails_on_an_edited_record(daemon_proc: Any) -> None:
    import sqlite3

    d = daemon_proc(config="[offline]\nrequire_card_present = false\n")
    with d.client() as api:
        for n in range(3):
            api.post("/v1/transactions?wait=0", json=sale(n), headers={"Idempotency-Key": f"edit-{n}"})
    d.stop()
    db = d.state_dir / "spool.db"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE records SET payload = replace(payload, '1001', '9001') WHERE seq = 2")
    conn.close()
    check = terminald("spool", "check", env=d.env)
    assert check.returncode == 1
    assert re.search(r"seq 2", check.stdout)


@pytest.mark.pcsc
def test_demo_plays_the_day_and_leaks_nothing(pcscd: Any, vpcd_slots: Any) -> None:
    result = terminald("demo", "--keep", timeout=180)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "DEMO OK" in out
    assert "uploaded to central: 4 records, in order, each once" in out
    assert "refused offline: card_frozen, offline_limit_exceeded" in out
    assert "matches=True" in out
    assert "unplanned" in out and "planned" in out
    kept = Path(re.search(r"kept in (\S+)", out).group(1))  # type: ignore[union-attr]
    try:
        pngs = sorted(p.name for p in (kept / "receipts").glob("*.png"))
        assert pngs == ["1-online.png", "2-offline.png", "3-planned-downtime.png", "4-settlement-notice.png",
                        "printer-paper.png"]
        # Identity numbers and names of every emulated card, nowhere in any log or on screen.
        secrets = set()
        for path in CARDS_DIR.glob("*.toml"):
            fields = load_card(path).fields
            secrets.update(v for k, v in fields.items() if k in ("ssn", "name") and v)
        logs = [out, result.stderr] + [p.read_text(encoding="utf-8", errors="replace") for p in kept.glob("*.log")]
        leaked = sorted(s for s in secrets for text in logs if s in text)
        assert leaked == []
    finally:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)


@pytest.mark.pcsc
def test_nhsa_demo_reverses_the_dropped_answer_and_leaks_nothing(pcscd: Any, vpcd_slots: Any) -> None:
    result = terminald("demo", "--protocol", "nhsa", "--keep", timeout=240)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "DEMO OK" in out
    assert "platform: 5 sales, each settled exactly once (1 reversed)" in out
    assert "money check on the platform's books: passed" in out
    assert re.search(r"dropped 2102 answer \(seq \d\): unknown, reversed, retried once", out), out
    lost, reversal, retry = (re.search(rf"  {infno} (\w{{30}}): {what}", out)
                             for infno, what in (("2102", "answer lost"), ("2601", "reversed it"), ("2102", "settled")))
    assert lost and reversal and retry and len({lost[1], reversal[1], retry[1]}) == 3, out
    assert "card A10000123: settled in seq order 1, 2, 5" in out and "card B20000456: settled in seq order 3, 4" in out
    assert "统筹" in out and "refunds owed to outage patients: 4," in out
    kept = Path(re.search(r"kept in (\S+)", out).group(1))  # type: ignore[union-attr]
    try:
        pngs = sorted(p.name for p in (kept / "receipts").glob("*.png"))
        assert pngs == ["1-online.png", "2-outage.png", "3-settlement-notice.png"]
        secrets = set()
        for path in CARDS_DIR.glob("*.toml"):
            fields = load_card(path).fields
            secrets.update(v for k, v in fields.items() if k in ("ssn", "name") and v)
        logs = [out, result.stderr] + [p.read_text(encoding="utf-8", errors="replace") for p in kept.glob("*.log")]
        assert sorted(s for s in secrets for text in logs if s in text) == []
    finally:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)


@pytest.mark.pcsc
def test_demo_with_the_mirror_copies_the_day_and_shows_the_fleet(pcscd: Any, vpcd_slots: Any) -> None:
    """`terminald demo --mirror`: its own PostgreSQL pair, the lag while the primary is stopped,
    the catch-up, the mirror equal to the spool, the fleet table; nothing left running."""
    from tests.fixtures.postgres import pg_unavailable_reason

    reason = pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    result = terminald("demo", "--mirror", "--keep", timeout=240)
    out = result.stdout
    flat = " ".join(out.split())  # rich wraps long lines at the console's width
    cannot = re.search(r"--mirror: PostgreSQL cannot run here: [^;]*", flat)
    kept = Path(re.search(r"kept in (\S+)", out).group(1)) if "kept in" in out else None  # type: ignore[union-attr]
    try:
        if cannot:
            assert result.returncode == 0, out + result.stderr
            pytest.skip(cannot[0])
        assert result.returncode == 0, out + result.stderr
        assert "DEMO OK" in out
        assert "IT sets up the mirror: PostgreSQL" in flat
        assert "schema, fleet view and row-level security in place" in flat
        assert re.search(r"mirror \(/v1/status\): seq 1 of 1 copied to PostgreSQL 127\.0\.0\.1:\d+, 0 waiting, "
                         r"lag 0\.00 s", flat), flat
        assert "the hospital's PostgreSQL primary stops" in flat
        during = re.search(r"sale answered 202 in (\d+) ms; mirror \(/v1/status\): (\d+) record\(s\) waiting, "
                           r"lag ([\d.]+) s", flat)
        after = re.search(r"without the primary: (\d+) record\(s\) only on this PC's disk, lag ([\d.]+) s and "
                          r"growing", flat)
        assert during and after, flat
        assert int(during[1]) < 2000  # the sale does not wait for PostgreSQL
        assert int(during[2]) >= 1 and int(after[1]) >= int(during[2])
        assert float(after[2]) > float(during[3])
        assert re.search(r"the primary is back: the mirror caught up in [\d.]+ s \(seq 3 copied\): seq 3 of 3, "
                         r"0 waiting", flat), flat
        assert "mirror = spool: 4 records, last seq 4, last hash" in flat
        assert "every seq, hash and status equal" in flat
        lines = out.splitlines()
        header = lines.index("\t".join(("terminal", "attention", "mode", "pending", "pending_yuan", "oldest_pending",
                                        "overdue", "mirror_lag", "alarms", "last_seen", "version")))
        assert lines[header + 1].startswith("T0001\tok\tonline\t0\t0.00\t-\t0\t-\t-\t"), lines[header + 1]
        assert "mirror: PostgreSQL holds 4 records = the spool (last seq 4" in flat
        assert kept is not None
        # Both servers stopped: no process left with the demo's directory on its command line.
        left = []
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if proc.name.isdigit() and str(kept) in cmdline:
                left.append(cmdline)
        assert left == []
    finally:
        if kept is not None:
            import shutil

            shutil.rmtree(kept, ignore_errors=True)

"""`terminald mirror init-db`, `mirror status` (no daemon: read directly), `fleet`, and what
`spool restore --from-mirror` refuses and how it leaves the file, run as a user runs them."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from rich.console import Console

from spool import Spool
from terminald.mirror import role_name
from terminald.mirror.fleet import FLEET_SQL, fleet_rows
from terminald.mirror.heartbeat import Heartbeat, send_heartbeat
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import OTHER, TID, append, prepare, run
from tests.mirror_cli.helpers import mirror_once, terminald


def _config(tmp_path: Path, dsn: str, terminal_id: str = TID, spool_dir: Path | None = None) -> dict[str, str]:
    """A counter's config, as the environment the commands run with (no daemon listens on its port)."""
    spool_dir = spool_dir or tmp_path
    config = tmp_path / "terminald.toml"
    config.write_text(f'[terminal]\nid = "{terminal_id}"\n[spool]\npath = "{spool_dir / "spool.db"}"\n'
                      f'[api]\nlisten = "127.0.0.1:9"\ntoken_file = "{tmp_path / "no-token"}"\n'
                      f'[mirror]\ndsn = "{dsn}"\nlag_alarm_s = 60\n', encoding="utf-8")
    return {"TERMINALD_CONFIG": str(config)}


def test_init_db_is_idempotent_and_prints_the_role_lines(pg_pair: PgPair, pg_database: str) -> None:
    dsn = pg_pair.dsn(pg_database)
    for _ in range(2):
        done = terminald("mirror", "init-db", "--dsn", dsn, "--terminal", TID, "--terminal", OTHER)
        assert done.returncode == 0, done.stderr
        assert "OK schema, fleet view and row-level security in place" in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"-- terminal {TID}" and len(lines) == 8
    assert all(line.startswith(("--", "DO $$", "GRANT", "INSERT INTO terminald_roles")) for line in lines)
    with pg_pair.admin(pg_database) as conn:
        for line in lines:  # what IT pastes into psql, twice: safe to run again
            if not line.startswith("--"):
                conn.execute(line)
                conn.execute(line)
        assert conn.execute("SELECT count(*) FROM terminald_roles").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM terminald_fleet").fetchone() == (0,)

    bad = terminald("mirror", "init-db", "--dsn", dsn, "--terminal", "T 1; DROP")
    assert bad.returncode == 2 and "terminal id" in bad.stderr
    nobody = terminald("mirror", "init-db", "--dsn", pg_pair.dsn(pg_database, user=role_name(TID)))
    assert nobody.returncode == 1 and "FAIL" in nobody.stderr
    down = terminald("mirror", "init-db", "--dsn", "host=127.0.0.1 port=9 dbname=x connect_timeout=2")
    assert down.returncode == 1 and "no read-write mirror server answered" in down.stderr


def test_mirror_status_without_a_daemon_reads_the_mirror_and_the_spool(
    pg_pair: PgPair, pg_database: str, tmp_path: Path,
) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    env = _config(tmp_path, dsn)
    with Spool.open(tmp_path / "spool.db", TID, background_check=False) as spool:
        append(spool, 12)
    mirror_once(tmp_path / "spool.db", TID, dsn)
    done = terminald("mirror", "status", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "read directly (no daemon answered)" in done.stdout
    assert "head:    seq 12" in done.stdout and "spool seq 12" in done.stdout
    assert "waiting: none" in done.stdout

    with Spool.open(tmp_path / "spool.db", TID, background_check=False) as spool:
        append(spool, 3, prefix="later")
    report = json.loads(terminald("mirror", "status", "--json", env=env).stdout)
    assert report["source"] == "direct" and report["connected"] is True
    assert (report["mirrored_seq"], report["spool_seq"], report["unmirrored"]) == (12, 15, 3)
    assert report["lag_s"] is not None and report["alarms"] == [] and report["ok"] is True

    # A mirror that holds another chain at this terminal's head: a fork, exit 1.
    with pg_pair.admin(pg_database) as conn:
        conn.execute("UPDATE terminald_terminals SET last_hash = repeat('e', 64) WHERE terminal_id = %s", (TID,))
    forked = terminald("mirror", "status", env=env)
    assert forked.returncode == 1 and "ALARM mirror_fork" in forked.stdout, forked.stdout

    off = _config(tmp_path, "")
    assert terminald("mirror", "status", env=off).stdout.strip().endswith("mirror: off")
    unreachable = json.loads(terminald("mirror", "status", "--json", env=_config(
        tmp_path, "host=127.0.0.1 port=9 dbname=x connect_timeout=2")).stdout)
    assert unreachable["ok"] is False and unreachable["alarms"][0]["code"] == "mirror_unavailable"


def _beat(mode: str, pending: int, *, overdue: int = 0, alarms: tuple[dict[str, str], ...] = ()) -> Heartbeat:
    return Heartbeat(mode=mode, pending=pending, pending_amount_fen=pending * 1000,
                     oldest_pending_at="2026-11-23T10:15:00+08:00" if pending else None, outage_since=None,
                     overdue_reentries=overdue, version="1.0", alarms=alarms)


def test_fleet_puts_what_needs_attention_first(pg_pair: PgPair, pg_database: str) -> None:
    counters = ["T0001", "T0002", "T0003", "T0004", "T0005", "T0006"]
    dsns = prepare(pg_pair, pg_database, *counters)
    beats = {
        "T0001": (_beat("online", 0), 0, None),                                     # fine
        "T0002": (_beat("offline", 7), 0, None),                                    # offline with pending
        "T0003": (_beat("online", 0), 40, "2026-11-23T10:00:00+08:00"),             # the mirror lags
        "T0004": (_beat("online", 0, overdue=2), 0, None),                          # overdue re-entries
        "T0005": (_beat("offline", 1, alarms=({"code": "chain_broken"},)), 0, None),  # halted with an alarm
        "T0006": (_beat("offline", 0), 0, None),                                    # offline, nothing waits
    }

    async def report() -> None:
        import psycopg

        for tid, (beat, spool_seq, oldest) in beats.items():
            async with await psycopg.AsyncConnection.connect(dsns[tid], autocommit=True) as conn:
                await send_heartbeat(conn, tid, beat, spool_last_seq=spool_seq, oldest_unmirrored_at=oldest)

    run(report())
    with pg_pair.admin(pg_database) as conn:
        conn.execute("CREATE ROLE it_wang LOGIN IN ROLE terminald_reader")
    reader = pg_pair.dsn(pg_database, user="it_wang")
    done = terminald("fleet", "--dsn", reader, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["terminal_id"] for r in rows] == ["T0005", "T0004", "T0002", "T0003", "T0001", "T0006"]
    assert [r["attention"] for r in rows] == [0, 0, 1, 2, 3, 3]
    assert rows[3]["mirror_lag_records"] == 40 and rows[3]["mirror_lag_s"] > 0

    table = terminald("fleet", "--dsn", reader)  # piped: tab-separated, a header first
    lines = [line.split("\t") for line in table.stdout.splitlines()]
    assert lines[0][:3] == ["terminal", "attention", "mode"] and [line[0] for line in lines[1:]] == \
        [r["terminal_id"] for r in rows]
    assert lines[1][8] == "chain_broken"

    console = Console(record=True, width=200, force_terminal=True)
    from terminald.cli.mirror import show_fleet

    with pg_pair.admin(pg_database) as conn:
        show_fleet(fleet_rows(conn), console)
        assert conn.execute(FLEET_SQL).fetchall()[0][0] == "T0005"  # the docs' query, as psql runs it
    text = console.export_text()
    assert "6 counters: 2 need action, 1 offline with pending, 1 mirror behind" in text
    assert text.index("T0005") < text.index("T0002") < text.index("T0003") < text.index("T0001")

    refused = terminald("fleet", "--dsn", dsns["T0001"])
    assert refused.returncode == 1 and "terminald_reader" in refused.stderr


def test_restore_refuses_and_leaves_nothing_when_the_mirror_cannot_give_it_back(
    pg_pair: PgPair, pg_database: str, tmp_path: Path,
) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    env = _config(tmp_path, dsn)
    done = terminald("spool", "restore", "--from-mirror", env=env)
    assert done.returncode == 1 and "the mirror has no terminal 'T0001'" in done.stdout, done.stdout
    assert "nothing was written" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool.db.lock", "terminald.toml"]

    assert terminald("spool", "restore", env=env).returncode == 2
    assert terminald("spool", "restore", "--from-mirror", env=_config(tmp_path, "")).returncode == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to the daemon's user needs root")
def test_restore_as_root_gives_the_spool_to_the_owner_of_its_directory(
    pg_pair: PgPair, pg_database: str, tmp_path: Path,
) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    with Spool.open(tmp_path / "src.db", TID, background_check=False) as spool:
        append(spool, 5)
    mirror_once(tmp_path / "src.db", TID, dsn)
    daemon_user = pwd.getpwnam("postgres")  # a user that is not root, standing in for terminald
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, daemon_user.pw_uid, daemon_user.pw_gid)
    done = terminald("spool", "restore", "--from-mirror", env=_config(tmp_path, dsn, spool_dir=state))
    assert done.returncode == 0, done.stdout + done.stderr
    st = (state / "spool.db").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (daemon_user.pw_uid, daemon_user.pw_gid, 0o600)
    assert "owner postgres:" in done.stdout and "mode 0600" in done.stdout
    assert sorted(p.name for p in state.iterdir()) == ["spool.db", "spool.db.lock"]


def test_status_through_the_daemon_is_not_ok_while_its_copier_is_away_from_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon still knows the last head while its copier cannot reach PostgreSQL (before the
    lag alarm is due): `mirror status` must not say ok (exit 0 means "reached, no alarm")."""
    from terminald.cli import mirror as cli_mirror
    from terminald.config import load_config

    config = tmp_path / "terminald.toml"
    config.write_text(f'[terminal]\nid = "{TID}"\n[mirror]\ndsn = "host=127.0.0.1 port=9 dbname=x"\n',
                      encoding="utf-8")
    cfg = load_config(config)
    section = {"enabled": True, "connected": True, "server": "127.0.0.1:9", "mirrored_seq": 5, "spool_seq": 5,
               "unmirrored": 0, "lag_s": 0.0, "lagging": False, "last_error": None, "alarms": []}
    monkeypatch.setattr(cli_mirror, "_from_daemon", lambda _cfg: {"mirror": section})
    assert cli_mirror.status_report(cfg)["ok"] is True
    section.update(connected=False, last_error="no read-write mirror server answered: connection refused")
    report = cli_mirror.status_report(cfg)
    assert report["ok"] is False and report["source"] == "daemon" and report["mirrored_seq"] == 5

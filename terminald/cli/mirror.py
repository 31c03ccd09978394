"""`terminald mirror init-db|status`, `terminald spool restore --from-mirror`, `terminald fleet`:
the PostgreSQL mirror from the command line (docs/mirror.md, contract mirror-postgresql.md).

`init-db` and `fleet` are IT's, run from any machine with the admin's or a reader's DSN; they need
no config. `mirror status` and `spool restore` are the counter's own: its config gives the DSN,
the password file, the terminal id and the spool.

`mirror status` asks the running daemon (its `/v1/status`, where the copier keeps its state);
with no daemon it reads the mirror's head row and the spool itself, both read-only, so it is
safe beside a daemon that does not answer too. `spool restore` writes a spool, so it takes the
spool's lock (spool/lock.py) for the whole restore: never beside the daemon.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from terminald.cli.base import App, ConfigOpt, fail, load

if TYPE_CHECKING:
    from rich.console import Console

    from terminald.config import Config
    from terminald.mirror.fleet import FleetRow

__all__ = ["app", "fleet", "init_db", "mirror_status", "restore_from_mirror", "show_fleet", "status_report"]

app = App(help="The copy of every record on the hospital's PostgreSQL: schema, roles, this counter's lag.")

# Who restore names itself as in the spool's lock file (what a daemon refused at start prints).
RESTORE_HOLDER = "terminald spool restore"
# The daemon's user in the packaged install (systemd/terminald.sysusers): who gets a state
# directory that a restore run as root had to create.
DAEMON_USER = "terminald"
STATE_DIR_MODE = 0o700  # as systemd's StateDirectoryMode= and systemd/terminald.tmpfiles make it
LAG_ALARM = "mirror_lag"  # the daemon's code for it (terminald/mirror/service.py), kept the same here

DsnOpt = Annotated[str, typer.Option("--dsn", help="libpq connection string or postgresql:// URL.")]
PasswordFileOpt = Annotated[Path | None, typer.Option(
    "--password-file", help="A file whose first line is the role's password (else libpq's PGPASSWORD, ~/.pgpass).")]


@app.command("init-db")
def init_db_command(
    dsn: DsnOpt,
    terminals: Annotated[list[str] | None, typer.Option(
        "--terminal", metavar="ID", help="A terminal id to print the role lines for; repeat for each.")] = None,
    password_file: PasswordFileOpt = None,
) -> None:
    """Create or update the mirror's schema and row-level security; print the terminals' role lines.

    Idempotent; run it as the database's owner. The CREATE ROLE / GRANT lines go to standard
    output, for psql."""
    raise typer.Exit(init_db(dsn, terminals or [], password_file))


@app.command("status")
def status_command(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on standard output.")] = False,
) -> None:
    """This terminal's mirror: head, records waiting, lag, alarms. Exit 1 when not connected, on an alarm or lag."""
    raise typer.Exit(mirror_status(load(config), as_json=as_json))


def fleet_command(
    dsn: DsnOpt,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on standard output.")] = False,
    password_file: PasswordFileOpt = None,
) -> None:
    """Every counter at a glance, from the mirror; what needs attention first."""
    raise typer.Exit(fleet(dsn, password_file, as_json=as_json))


# -- shared ----------------------------------------------------------------------------------------
def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _say(console: Console, text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False)


def _password(path: Path | str | None) -> str | None:
    """The password file's first line; None when there is no file (libpq looks elsewhere)."""
    if not path:
        return None
    from terminald.mirror.connect import read_password

    return read_password(path)


def _connect(dsn: str, password_file: Path | str | None, application_name: str) -> Any:
    """A sync autocommit connection; MirrorError (unreadable password file, bad DSN, no server)."""
    from terminald.mirror.connect import conninfo, sync_connect

    return sync_connect(conninfo(dsn, password=_password(password_file), application_name=application_name))


def _escape(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _fail(console: Console, text: object) -> int:
    """FAIL and `text` (plain, escaped here); the exit status 1."""
    _say(console, f"[bold red]FAIL[/] {_escape(text)}")
    return 1


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{seconds // 86400:.0f} d {seconds % 86400 // 3600:.0f} h"


# -- init-db ---------------------------------------------------------------------------------------
def init_db(dsn: str, terminals: list[str], password_file: Path | None) -> int:
    """The schema on `dsn`; the role lines on standard output (so `> roles.sql` keeps only SQL)."""
    import psycopg

    from terminald.mirror.errors import MirrorError
    from terminald.mirror.schema import init_db as create_schema
    from terminald.mirror.schema import role_statements

    err = _console(stderr=True)
    try:
        lines = role_statements(terminals)  # a bad id is a usage error, found before connecting
    except ValueError as exc:
        fail(str(exc), 2)
    try:
        with _connect(dsn, password_file, "terminald mirror init-db") as conn:
            create_schema(conn)
            where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
    except MirrorError as exc:
        return _fail(err, exc.detail)
    except psycopg.errors.InsufficientPrivilege as exc:
        return _fail(err, f"{str(exc).strip()}: run init-db as the database's owner with CREATEROLE "
                          "(docs/mirror.md, section 2)")
    except psycopg.Error as exc:
        return _fail(err, f"the server refused the schema: {str(exc).strip()}")
    _say(err, f"[green]OK[/] schema, fleet view and row-level security in place on {_escape(where)}")
    if lines:
        print("\n".join(lines))
        _say(err, f"the lines above create the roles of {len(terminals)} terminal(s): run them with psql as the "
                  "same user, then give each role a password (\\password) or a client certificate")
    else:
        _say(err, "no --terminal given: no role lines (add --terminal T0001 --terminal T0002 ...)")
    return 0


# -- mirror status ---------------------------------------------------------------------------------
def mirror_status(cfg: Config, *, as_json: bool) -> int:
    report = status_report(cfg)
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_status(report)
    return 0 if report["ok"] else 1


def status_report(cfg: Config) -> dict[str, Any]:
    """This terminal's mirror as plain values: from the daemon when it answers, else read directly.

    Keys: ok, source ("daemon", "direct" or "off"), terminal_id, connected, server, mirrored_seq,
    mirrored_hash, spool_seq, unmirrored, oldest_unmirrored_at, lag_s, lag_alarm_s, lagging,
    last_ok_at, last_error, alarms (each {code, message, ...}), notes.
    """
    base: dict[str, Any] = {
        "ok": False, "source": "off", "terminal_id": cfg.terminal.id, "connected": False, "server": None,
        "mirrored_seq": None, "mirrored_hash": None, "spool_seq": None, "unmirrored": None,
        "oldest_unmirrored_at": None, "lag_s": None, "lag_alarm_s": cfg.mirror.lag_alarm_s, "lagging": False,
        "last_ok_at": None, "last_error": None, "alarms": [], "notes": [],
    }  # fmt: skip
    answered = _from_daemon(cfg)
    section = answered.get("mirror") if answered is not None else None
    if isinstance(section, dict) and section.get("enabled", True):
        report = {**base, **_normalise(section), "source": "daemon"}
    elif not cfg.mirror.dsn:
        base["notes"].append("no mirror: [mirror] dsn is empty in the config")
        return base
    else:
        if answered is not None:
            base["notes"].append("the running daemon reports no mirror (started before [mirror] was set?): "
                                 "read directly")
        report = {**base, **_direct(cfg), "source": "direct"}
    lag_alarm_s = report["lag_alarm_s"] or cfg.mirror.lag_alarm_s
    already = any(alarm.get("code") == LAG_ALARM for alarm in report["alarms"])  # the daemon raised it
    if report["lag_s"] is not None and report["lag_s"] > lag_alarm_s and not already:
        report["alarms"].append({"code": LAG_ALARM, "message": f"{report['unmirrored']} records not yet "
                                 f"mirrored for more than {lag_alarm_s:g} s: they exist only on this PC's disk"})
    report["lagging"] = report["lagging"] or already or any(a.get("code") == LAG_ALARM for a in report["alarms"])
    # "Reached": a daemon whose copier lost the server still knows the last head; that is not ok.
    report["ok"] = bool(report["mirrored_seq"] is not None and report["connected"] and not report["alarms"]
                        and not report["lagging"])
    return report


def _from_daemon(cfg: Config) -> dict[str, Any] | None:
    """The daemon's /v1/status, or None when no daemon answers (no token file, nobody listening)."""
    import httpx

    from terminald.cli.client import api_call

    try:
        response = api_call(cfg, "GET", "/v1/status", timeout_s=3.0)
    except (FileNotFoundError, PermissionError, httpx.HTTPError):
        return None
    if response.status_code >= 300:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


_STATUS_KEYS = ("connected", "server", "mirrored_seq", "mirrored_hash", "spool_seq", "unmirrored",
                "oldest_unmirrored_at", "lag_s", "lag_alarm_s", "lagging", "last_ok_at", "last_error")


def _normalise(section: dict[str, Any]) -> dict[str, Any]:
    """The daemon's `mirror` section (MirrorStatus's fields) with only the keys this report knows."""
    found = {key: section[key] for key in _STATUS_KEYS if key in section}
    alarms = section.get("alarms") or []
    found["alarms"] = [a if isinstance(a, dict) else {"code": str(a)} for a in alarms]
    return found


def _direct(cfg: Config) -> dict[str, Any]:
    """No daemon: the head row from PostgreSQL, the tail from the spool, both only read."""
    import time

    import psycopg

    from spool import Spool, SpoolError
    from terminald.mirror.errors import MirrorError

    out: dict[str, Any] = {"alarms": [], "notes": []}
    spool: Spool | None = None
    if cfg.spool_path.exists():
        try:
            spool = Spool.open_readonly(cfg.spool_path, cfg.terminal.id)
            out["spool_seq"] = spool.stats().last_seq
        except SpoolError as exc:
            out["notes"].append(f"spool not readable: {exc}")
            spool = None
    else:
        out["notes"].append(f"no spool at {cfg.spool_path}")
    try:
        try:
            with _connect(cfg.mirror.dsn, cfg.mirror.password_file, "terminald mirror status") as conn:
                out["connected"] = True
                out["server"] = f"{conn.info.host}:{conn.info.port}"
                row = conn.execute("SELECT last_seq, last_hash, alarms, seen_at FROM terminald_terminals"
                                   " WHERE terminal_id = %s", (cfg.terminal.id,)).fetchone()
        except MirrorError as exc:
            out["last_error"] = exc.detail
            out["alarms"].append({"code": exc.code, "message": exc.detail})
            return out
        except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege) as exc:
            detail = f"{str(exc).strip()}: run `terminald mirror init-db` and this terminal's role lines"
            out["last_error"] = detail
            out["alarms"].append({"code": "mirror_schema_missing", "message": detail})
            return out
        except psycopg.Error as exc:
            out["last_error"] = str(exc).strip()
            out["alarms"].append({"code": "mirror_unavailable", "message": out["last_error"]})
            return out
        if row is None:
            out["notes"].append(f"the mirror has no row for terminal {cfg.terminal.id} yet: nothing mirrored")
            head_seq, head_hash = 0, None
        else:
            head_seq, head_hash = int(row[0]), str(row[1])
            heartbeat_alarms = row[2] if isinstance(row[2], list) else []
            # The daemon's last heartbeat: what it reported then (it may have cleared since).
            for alarm in heartbeat_alarms:
                if isinstance(alarm, dict):
                    out["alarms"].append({**alarm, "as_of": row[3].isoformat() if row[3] else None})
        out["mirrored_seq"], out["mirrored_hash"] = head_seq, head_hash
        if spool is None:
            return out
        tail = out["spool_seq"]
        if head_seq > 0:
            at_head = spool.get_seq(head_seq)
            if at_head is None and head_seq > tail:
                out["alarms"].append({"code": "mirror_fork", "seq": head_seq, "message": (
                    f"the mirror is ahead of this spool (mirror seq {head_seq}, spool seq {tail}): an older "
                    "spool put back, or two PCs with one terminal id")})
            elif at_head is not None and at_head.hash != head_hash:
                out["alarms"].append({"code": "mirror_fork", "seq": head_seq, "message": (
                    f"the mirror's hash at seq {head_seq} is not this spool's: another chain")})
        out["unmirrored"] = max(tail - head_seq, 0)
        if out["unmirrored"]:
            first = spool.get_seq(head_seq + 1)
            if first is not None:
                out["oldest_unmirrored_at"] = first.spooled_at
                out["lag_s"] = max(time.time() - datetime.fromisoformat(first.spooled_at).timestamp(), 0.0)
        else:
            out["lag_s"] = 0.0
        return out
    finally:
        if spool is not None:
            spool.close()


def _print_status(r: dict[str, Any]) -> None:
    console = _console()
    for note in r["notes"]:
        _say(console, f"note: {_escape(note)}")
    if r["source"] == "off":
        _say(console, "mirror: [yellow]off[/]")
        return
    source = "from the running daemon" if r["source"] == "daemon" else "read directly (no daemon answered)"
    link = f"connected to {_escape(r['server'])}" if r["connected"] else "[red]not connected[/]"
    _say(console, f"mirror of terminal {_escape(r['terminal_id'])}: {link} ({source})")
    head = r["mirrored_seq"]
    digest = f" (hash {str(r['mirrored_hash'])[:12]}…)" if r["mirrored_hash"] else ""
    _say(console, f"head:    seq {head if head is not None else 'unknown'}{digest}; spool seq "
                  f"{r['spool_seq'] if r['spool_seq'] is not None else 'unknown'}")
    waiting = r["unmirrored"]
    if waiting:
        colour = "bold red" if r["lagging"] else "yellow"
        _say(console, f"waiting: [{colour}]{waiting} record(s), oldest {_escape(r['oldest_unmirrored_at'] or '-')}, "
                      f"lag {_duration(r['lag_s'])}[/] (alarm after {_duration(r['lag_alarm_s'])})")
    elif waiting == 0:
        _say(console, "waiting: [green]none[/], the mirror holds every record")
    if r["last_ok_at"]:
        _say(console, f"last ok: {_escape(r['last_ok_at'])}")
    if r["last_error"] and not r["alarms"]:
        _say(console, f"last error: {_escape(r['last_error'])}")
    for alarm in r["alarms"]:
        since = f" (as of {alarm['as_of']})" if alarm.get("as_of") else ""
        _say(console, f"[bold red]ALARM[/] {_escape(alarm.get('code'))}: {_escape(alarm.get('message', ''))}"
                      f"{_escape(since)}")


# -- spool restore --from-mirror -------------------------------------------------------------------
def restore_from_mirror(cfg: Config, dsn: str | None, terminal_id: str | None, password_file: Path | None) -> int:
    """Rebuild the config's spool from the mirror. Exit 0 restored, 1 refused or failed, 2 usage."""
    import os

    from spool import Spool, SpoolError
    from spool.lock import SpoolLock, SpoolLocked
    from terminald.mirror.errors import MirrorError
    from terminald.mirror.restore import restore_spool

    console = _console()
    dsn = dsn or cfg.mirror.dsn
    if not dsn:
        fail("no mirror to restore from: give --dsn or set [mirror] dsn in the config", 2)
    tid = terminal_id or cfg.terminal.id
    dest = cfg.spool_path
    try:
        password = _password(password_file or cfg.mirror.password_file)
        owner = _prepare_directory(dest.parent)
    except MirrorError as exc:
        return _fail(console, exc.detail)
    except OSError as exc:
        return _fail(console, f"cannot make {dest.parent}: {exc.strerror or exc}")
    try:
        lock = SpoolLock.acquire(dest, RESTORE_HOLDER)
    except SpoolLocked as exc:
        pid = exc.pid if exc.pid is not None else "unknown"
        if exc.holder == "terminald serve":  # terminald/server.py LOCK_HOLDER
            message = (f"terminald is running (pid {pid}) and holds {dest}: a restore never replaces a spool in "
                       "use; stop it first (sudo systemctl stop terminald)")
        else:
            message = f"{exc.holder or 'another process'} (pid {pid}) holds {dest}: wait for it to finish"
        _say(console, f"[bold red]REFUSED[/] {_escape(message)}")
        return 1
    except OSError as exc:
        return _fail(console, f"cannot lock {dest}: {exc.strerror or exc}")
    try:
        present = [dest.with_name(dest.name + s) for s in ("", "-wal", "-shm", "-seq", "-journal")]
        present = [p for p in present if os.path.lexists(p)]
        if present:
            _say(console, f"[bold red]REFUSED[/] a spool is already here: {_escape(', '.join(map(str, present)))}. "
                          "A restore never overwrites one. If it is the dead disk's leftover, move these files "
                          "aside (keep them), then run the restore again; if it opens, try `terminald spool "
                          "check` first: it may need no restore at all")
            return 1
        try:
            # Marked as rebuilt from a copy only for the national platform (no idempotency key:
            # its adapter holds the restored pending sales, and alone clears the mark).
            report = restore_spool(dsn, tid, dest, password=password, owner=owner,
                                   mark_restored=cfg.upstream.protocol == "nhsa")
        except MirrorError as exc:
            _say(console, f"[bold red]FAIL[/] {_escape(exc.detail)}")
            _say(console, "nothing was written")
            return 1
    finally:
        lock.release()
    try:
        with Spool.open_readonly(dest, tid) as restored:
            stats = restored.stats()
    except SpoolError as exc:  # it passed the check a moment ago: say so, but it is in place
        return _fail(console, f"the restored spool does not open: {exc}")
    st = dest.stat()
    _say(console, f"restored {_escape(dest)} from the mirror: terminal {_escape(tid)}")
    if report.records:
        start = f"seq {report.first_seq}" + ("" if report.first_seq == 1 else " (after the prune checkpoint)")
        _say(console, f"records: {report.records}, seq {report.first_seq}-{report.last_seq}, hash chain verified "
                      f"from {start} (last hash {report.last_hash[:12]}…)")
    else:
        _say(console, "records: none (the mirror holds no record of this terminal)")
    _say(console, "status:  " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_status.items())))
    if cfg.upstream.protocol == "nhsa" and stats.pending:
        _say(console, f"pending: {stats.pending} (¥{stats.pending_amount_fen / 100:,.2f}): they stay pending and "
                      "[bold]wait for staff[/]: the national platform may already hold some of them (their call "
                      "log died with the old disk, and the platform has no idempotency key). Check them with the "
                      "platform, reverse there any that stands, then `terminald upstream resume --restored-checked "
                      "--reason '…'` (alarm nhsa_restored_unverified until then; a resume without "
                      "--restored-checked leaves them held; docs/mirror.md, section 6)")
    else:
        _say(console, f"pending: {stats.pending} (¥{stats.pending_amount_fen / 100:,.2f}): they stay pending; the "
                      "daemon uploads them and central's cursor and record ids keep that exactly once")
    _say(console, f"last seq: {stats.last_seq}")
    _say(console, f"file:    owner {_owner_name(st.st_uid, st.st_gid)}, mode {st.st_mode & 0o777:04o}")
    for note in report.notes[:20]:
        _say(console, f"note:    {_escape(note)}")
    if len(report.notes) > 20:
        _say(console, f"note:    ... and {len(report.notes) - 20} more")
    if tid != cfg.terminal.id:
        _say(console, f"[bold yellow]WARN[/] the config's terminal id is {_escape(cfg.terminal.id)}: set [terminal] "
                      f"id = \"{_escape(tid)}\" before starting terminald, or it refuses this spool")
    _say(console, f"[green]OK[/] {report.check.records} records, chain and integrity verified (as `terminald spool "
                  "check`). Next: `terminald spool check`, then `sudo systemctl start terminald`")
    return 0


def _prepare_directory(directory: Path) -> tuple[int, int] | None:
    """The spool's directory, made as the daemon's would be if the new disk lacks it; the owner
    (uid, gid) the restored file must have: the directory's, when run as root, else our own."""
    import os
    import pwd

    if not directory.is_dir():
        directory.mkdir(parents=True, mode=STATE_DIR_MODE)
        os.chmod(directory, STATE_DIR_MODE)  # mkdir's mode passes through the umask
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(DAEMON_USER)
            except KeyError:
                pass
            else:
                os.chown(directory, user.pw_uid, user.pw_gid)
    if os.geteuid() != 0:
        return None  # our file is ours; only root may (and must) give it away
    st = directory.stat()
    return st.st_uid, st.st_gid


def _owner_name(uid: int, gid: int) -> str:
    import grp
    import pwd

    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"


# -- fleet -----------------------------------------------------------------------------------------
FLEET_COLUMNS = ("terminal", "attention", "mode", "pending", "pending_yuan", "oldest_pending", "overdue",
                 "mirror_lag", "alarms", "last_seen", "version")


def fleet(dsn: str, password_file: Path | None, *, as_json: bool) -> int:
    import psycopg

    from terminald.mirror.errors import MirrorError
    from terminald.mirror.fleet import fleet_rows

    err = _console(stderr=True)
    try:
        with _connect(dsn, password_file, "terminald fleet") as conn:
            rows = fleet_rows(conn)
    except MirrorError as exc:
        return _fail(err, exc.detail)
    except psycopg.errors.InsufficientPrivilege as exc:
        return _fail(err, f"{str(exc).strip()}: the fleet view is for members of terminald_reader "
                          "(docs/mirror.md, section 2), not a terminal's role")
    except psycopg.errors.UndefinedTable as exc:
        return _fail(err, f"{str(exc).strip()}: no mirror schema here (terminald mirror init-db)")
    except psycopg.Error as exc:
        return _fail(err, str(exc).strip())
    if as_json:
        print(json.dumps([row.as_dict() for row in rows], ensure_ascii=False, indent=2))
        return 0
    show_fleet(rows, _console())
    return 0


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M")


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _cells(row: FleetRow) -> tuple[str, ...]:
    from terminald.mirror.fleet import ATTENTION

    lag = "-" if not row.mirror_lag_records else f"{row.mirror_lag_records} rec, {_duration(_seconds(row.mirror_lag))}"
    amount = "-" if row.pending_amount_fen is None else f"{row.pending_amount_fen / 100:,.2f}"
    return (row.terminal_id, ATTENTION.get(row.attention, str(row.attention)), row.mode or "-",
            "-" if row.pending is None else str(row.pending), amount, _when(row.oldest_pending_at),
            str(row.overdue_reentries or 0), lag, " ".join(row.alarm_codes) or "-",
            "never" if row.since_seen is None else f"{_duration(_seconds(row.since_seen))} ago", row.version or "-")


def show_fleet(rows: list[FleetRow], console: Console) -> None:
    """The fleet as a rich table (tab-separated, whole values, when piped)."""
    from rich.table import Table

    cells = [_cells(row) for row in rows]
    if not console.is_terminal:
        # Piped into a file or another tool, as `terminald spool list` does: no decoration.
        for line in (FLEET_COLUMNS, *cells):
            print("\t".join(line))
        return
    if not rows:
        _say(console, "no counter has reported to this mirror yet")
        return
    counts = [sum(1 for row in rows if row.attention == tier) for tier in range(3)]
    title = (f"{len(rows)} counters: {counts[0]} need action, {counts[1]} offline with pending, "
             f"{counts[2]} mirror behind")
    table = Table(*FLEET_COLUMNS, title=title)
    styles = {0: "bold red", 1: "yellow", 2: "cyan"}
    for row, line in zip(rows, cells, strict=True):
        table.add_row(*line, style=styles.get(row.attention))
    console.print(table)

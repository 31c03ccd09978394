"""Command bodies for the CLI: `spool drain`, `outages`, `reconcile`, `upstream resume` (wired into
typer by cli.py).

Each returns the exit code: 0 ok, 1 failure. Also runnable on its own,
`python -m terminald.upload.commands drain --config FILE` (used by the crash tests).
"""

from __future__ import annotations

import argparse
import asyncio
import csv as csv_module
import getpass
import json
import os
import signal
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from spool import Spool, SpoolError
from terminald.config import Config, load_config
from terminald.errors import TerminaldError
from terminald.reports import outages, reconcile
from terminald.upload.uploader import Uploader

__all__ = ["drain", "main", "print_outages", "print_reconcile", "resume"]

INTERRUPTED = 130


def drain(cfg: Config) -> int:
    """Upload now until the backlog is empty, halted, or Ctrl-C (which loses nothing).

    Refused (exit 1) while the daemon, or another drain, holds the spool's lock (spool/lock.py):
    two uploaders on one backlog race each other into a false `chain_broken` at central.
    """
    console = Console(stderr=True)
    if not cfg.upstream.url:
        console.print("[red]upstream.url is empty: there is no central system to upload to[/red]")
        return 1
    from spool.lock import SpoolLock, SpoolLocked
    from terminald.spoolcmd import with_spool

    try:
        lock: SpoolLock | None = SpoolLock.acquire(cfg.spool_path, "terminald spool drain")
    except SpoolLocked as exc:
        pid = exc.pid if exc.pid is not None else "unknown"
        if exc.holder == "terminald serve":  # terminald/server.py LOCK_HOLDER
            message = f"terminald is running (pid {pid}) and holds this spool: stop it, or let it upload"
        else:
            message = f"{exc.holder or 'another process'} (pid {pid}) holds this spool: wait for it to finish"
        console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
        return 1
    except OSError:
        lock = None  # no directory for it, so no spool either: with_spool says so
    try:
        return with_spool(cfg, lambda spool: asyncio.run(_drain(spool, cfg, console)))
    finally:
        if lock is not None:
            lock.release()


async def _drain(spool: Spool, cfg: Config, console: Console) -> int:
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    uploader = Uploader(spool, cfg, on_event=lambda name, data: None)
    start = spool.stats().pending
    code = 0
    await uploader.start()
    try:
        with Progress(
            TextColumn("uploading"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("", total=max(start, 1))
            while True:
                pending = (await asyncio.to_thread(spool.stats)).pending
                link = uploader.link
                bar.update(
                    task,
                    completed=max(start - pending, 0),
                    total=max(start, pending, 1),
                    description=f"{link.state}" + (f" ({link.cause})" if link.cause else ""),
                )
                if pending == 0:
                    break
                if link.halted:
                    code = 1
                    break
                if uploader.downtime_now() is not None:
                    code = 1
                    break
                if interrupted.is_set():
                    code = INTERRUPTED
                    break
                uploader.wake()
                await asyncio.sleep(0.2)
    finally:
        await uploader.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    window = uploader.downtime_now()
    if code == 1 and window is not None:
        console.print(f"planned downtime until {window['end']} ({window['reason']}): nothing uploaded")
    elif code == 1:
        for alarm in uploader.link.alarms:
            console.print(f"[red]{alarm['code']}: {alarm['message']}[/red]")
    elif code == INTERRUPTED:
        console.print("interrupted: the records not uploaded stay pending, nothing is lost")
    else:
        console.print(f"done: {start} record(s) uploaded, backlog empty")
    return code


def print_outages(cfg: Config, reportable: bool, csv: bool) -> int:
    try:
        rows = outages(cfg.spool_path, reportable_only=reportable)
    except SpoolError as exc:
        Console(stderr=True).print(f"[red]cannot read the outage log: {exc}[/red]")
        return 1
    keys = ["started_at", "ended_at", "duration_s", "cause", "planned", "reportable"]
    if csv:
        writer = csv_module.DictWriter(sys.stdout, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    table = Table(title="outages" + (" over 1 hour" if reportable else ""))
    for key in keys:
        table.add_column(key)
    for row in rows:
        table.add_row(*(_duration(row[k]) if k == "duration_s" else _cell(row[k]) for k in keys))
    Console().print(table)
    return 0


def print_reconcile(cfg: Config, date: str) -> int:
    """`terminald reconcile --date D`: what `GET /v1/reconciliation` answers, as a table; 1 unless it matches."""
    from terminald.spoolcmd import with_spool

    return with_spool(cfg, lambda spool: _show_reconcile(asyncio.run(reconcile(spool, cfg, date))))


def _show_reconcile(result: dict[str, Any]) -> int:
    console = Console()
    figures = ("count", "total_fen", "fund_paid_fen", "account_paid_fen")
    table = Table(title=f"reconciliation {result['date']}")
    for column in ("", *figures, "by_status"):
        table.add_column(column)
    for side in ("local", "central"):
        part = result[side]
        if part is None:
            table.add_row(side, *["-"] * len(figures), result.get("error", "unavailable"))
        else:
            table.add_row(
                side, *(str(part[f]) for f in figures), json.dumps(part["by_status"], ensure_ascii=False)
            )
    console.print(table)
    for item in result.get("differences", []):
        if "figure" in item:
            console.print(f"differs: {item['figure']} local {item['local']} central {item['central']}")
        else:
            console.print(
                f"record {item['record_id']} seq {item['seq']} {item['kind']} {item['status']} "
                f"{item['total_fen']} fen: {item['why']} ({item['detail']})",
                markup=False,
            )
    if "note" in result:
        console.print(result["note"], markup=False)
    console.print("[green]matches[/green]" if result["matches"] else "[red]does not match[/red]")
    return 0 if result["matches"] else 1


def resume(cfg: Config, *, reason: str, operator: str | None = None, clear_downtime: bool = False) -> int:
    """Ask the running daemon to clear its upload halt (and/or central's window in force now).

    The daemon logs who (`operator`, by default the login name) and why, checks central's
    cursor again and answers the upstream status: exit 0 when no longer halted, 1 when it
    halted again (the cause is not fixed), nothing was halted, or the daemon did not answer.
    """
    import httpx

    from terminald.clientcmd import api_call

    console = Console()
    who = operator or _login_name()
    body = {"operator": who, "reason": reason, "clear_downtime": clear_downtime}
    try:
        response = api_call(cfg, "POST", "/v1/upstream/resume", body, timeout_s=30.0)
    except FileNotFoundError:
        console.print(f"[red]no API token at {cfg.token_path}: is terminald running here?[/red]")
        return 1
    except httpx.HTTPError as exc:
        console.print(f"[red]terminald does not answer on {cfg.api.listen or cfg.api.unix_socket}: {exc}[/red]")
        return 1
    if response.status_code != 200:
        try:
            problem = response.json()
            detail = f"{problem.get('code')}: {problem.get('detail')}"
        except ValueError:
            detail = response.text[:200]
        console.print(f"terminald answered {response.status_code}: {detail}", style="red", markup=False)
        return 1
    link = response.json()
    if link.get("halted"):
        console.print("[red]uploading halted again: the cause is not fixed[/red]")
        for alarm in link.get("alarms") or []:
            console.print(f"{alarm.get('code')}: {alarm.get('message')}", style="red", markup=False)
        return 1
    cause = f" ({link['cause']})" if link.get("cause") else ""
    console.print(f"resumed by {who}: upstream {link.get('state')}{cause}", markup=False)
    return 0


def _login_name() -> str:
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m terminald.upload.commands")
    parser.add_argument("command", choices=["drain", "outages", "reconcile"])
    parser.add_argument("--config")
    parser.add_argument("--date", default="")
    parser.add_argument("--reportable", action="store_true")
    parser.add_argument("--csv", action="store_true")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except TerminaldError as exc:
        print(exc.detail, file=sys.stderr)
        return 2
    if args.command == "drain":
        return drain(cfg)
    if args.command == "outages":
        return print_outages(cfg, args.reportable, args.csv)
    return print_reconcile(cfg, args.date)


if __name__ == "__main__":
    sys.exit(main())

"""The link to central: `terminald upstream resume`, `outages`, `reconcile`.

Each body returns the exit code: 0 ok, 1 failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from terminald.cli.base import App, ConfigOpt, load

if TYPE_CHECKING:
    from terminald.config import Config

__all__ = ["app", "outages", "print_outages", "print_reconcile", "reconcile", "resume"]

app = App(help="The link to central.")


@app.command("resume")
def upstream_resume(
    reason: Annotated[str, typer.Option("--reason", help="Why: logged with who.")],
    config: ConfigOpt = None,
    operator: Annotated[str | None, typer.Option(help="Who resumes (default: your login name).")] = None,
    clear_downtime: Annotated[bool, typer.Option(
        "--clear-downtime", help="Also drop the downtime window from central in force now.")] = False,
    restored_checked: Annotated[bool, typer.Option(
        "--restored-checked",
        help="The pending sales of a spool restored from the mirror were checked with the platform (alarm "
             "nhsa_restored_unverified): send them from now on. Without it they stay held.")] = False,
) -> None:
    """Clear an upload halt once its cause is fixed (central's cursor is checked again first)."""
    raise typer.Exit(resume(load(config), reason=reason, operator=operator, clear_downtime=clear_downtime,
                            restored_checked=restored_checked))


def outages(
    config: ConfigOpt = None,
    reportable: Annotated[bool, typer.Option("--reportable", help="Only outages over 1 hour.")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="CSV for the insurance office.")] = False,
) -> None:
    """The outage log."""
    raise typer.Exit(print_outages(load(config), reportable, csv))


def reconcile(
    date: Annotated[str, typer.Option("--date", help="Business date, YYYY-MM-DD.")],
    config: ConfigOpt = None,
) -> None:
    """Local vs central totals for a business date."""
    raise typer.Exit(print_reconcile(load(config), date))


def print_outages(cfg: Config, reportable: bool, csv: bool) -> int:
    """The outage log, read from the spool's file without writing it."""
    import csv as csv_module
    import sys

    from rich.console import Console
    from rich.table import Table

    from spool import SpoolError
    from terminald.reports import outages as outage_log

    try:
        rows = outage_log(cfg.spool_path, reportable_only=reportable)
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
    """`terminald reconcile --date D`: what `GET /v1/reconciliation` answers, as a table; 1 unless it matches.

    Protocol v1 only reads: the spool is opened read-only (beside a running daemon, too). Protocol
    nhsa writes each 3201 in the call log (the spool's file) before sending it, and the spool has
    one writer: while the daemon runs (it holds the spool's lock) the report is the daemon's,
    asked through its API; when it does not run, the command takes the lock (as `spool drain`
    does: the daemon does not start meanwhile) and reconciles here.
    """
    import asyncio

    from terminald.cli.spool import with_spool
    from terminald.reports import reconcile as reconciliation

    if cfg.upstream.protocol == "nhsa" and cfg.upstream.url:
        return _reconcile_nhsa(cfg, date)
    return with_spool(cfg, lambda spool: _show_reconcile(asyncio.run(reconciliation(spool, cfg, date))))


# The holder name a running daemon writes in the spool's lock (terminald/server.py LOCK_HOLDER).
_DAEMON = "terminald serve"


def _reconcile_nhsa(cfg: Config, date: str) -> int:
    """3201 through the running daemon, or here under the spool's lock when none runs."""
    import asyncio

    from rich.console import Console

    from spool.lock import SpoolLock, SpoolLocked
    from terminald.cli.spool import with_spool
    from terminald.reports import reconcile as reconciliation

    console = Console(stderr=True)
    if not cfg.spool_path.exists():
        return with_spool(cfg, lambda spool: 1)  # says "no spool at ..."
    try:
        lock = SpoolLock.acquire(cfg.spool_path, "terminald reconcile")
    except SpoolLocked as exc:
        if exc.holder == _DAEMON:
            return _reconcile_by_daemon(cfg, date, exc.pid)
        pid = exc.pid if exc.pid is not None else "unknown"
        console.print(f"{exc.holder or 'another process'} (pid {pid}) holds this spool: wait for it to finish",
                      style="red", markup=False, highlight=False, soft_wrap=True)
        return 1
    except OSError:
        # The lock cannot even be opened here: only a running daemon can send the 3201s.
        return _reconcile_by_daemon(cfg, date, None)
    try:
        return with_spool(cfg, lambda spool: _show_reconcile(asyncio.run(reconciliation(spool, cfg, date))),
                          write=True)
    finally:
        lock.release()


def _reconcile_by_daemon(cfg: Config, date: str, pid: int | None) -> int:
    """`GET /v1/reconciliation?date=D` of the running daemon, shown as the table."""
    import httpx
    from rich.console import Console

    from terminald.cli.client import api_call, problem_text

    console = Console(stderr=True)
    where = cfg.api.listen or cfg.api.unix_socket
    running = f"terminald is running (pid {pid if pid is not None else 'unknown'}) and holds this spool"
    # The daemon signs in and sends one 3201 per group, each within upstream.timeout_s.
    timeout_s = max(30.0, 10 * cfg.upstream.timeout_s)
    try:
        response = api_call(cfg, "GET", f"/v1/reconciliation?{httpx.QueryParams(date=date)}", timeout_s=timeout_s)
    except FileNotFoundError:
        console.print(f"{running}, but there is no API token at {cfg.token_path} to ask it: run this as a user "
                      "who can read it", style="red", markup=False, highlight=False, soft_wrap=True)
        return 1
    except httpx.HTTPError as exc:
        console.print(f"{running}, but its API does not answer on {where} ({exc or type(exc).__name__}): the 3201 "
                      "calls go through it (its call log)", style="red", markup=False, highlight=False,
                      soft_wrap=True)
        return 1
    if response.status_code != 200:
        console.print(f"terminald answered {response.status_code}: {problem_text(response)}", style="red",
                      markup=False, highlight=False, soft_wrap=True)
        return 1
    console.print(f"reconciled by the running terminald (pid {pid if pid is not None else 'unknown'})",
                  style="dim", markup=False, highlight=False)
    return _show_reconcile(response.json())


def _show_reconcile(result: dict[str, Any]) -> int:
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    figures = ("count", "total_fen", "fund_paid_fen", "account_paid_fen")
    table = Table(title=f"reconciliation {result['date']}")
    for column in ("", *figures, "by_status"):
        table.add_column(column)
    for side in ("local", "central"):
        part = result[side]
        if part is None:
            table.add_row(side, *["-"] * len(figures), "could not be asked" if result.get("error") else "unavailable")
        else:
            table.add_row(
                # A figure central did not give (3201 answers a verdict): "?".
                side, *("?" if part[f] is None else str(part[f]) for f in figures),
                json.dumps(part["by_status"], ensure_ascii=False)
            )
    console.print(table)
    if result.get("insutypes"):
        # protocol nhsa: one 3201 per insurance type (and clearing agency), central's verdict on each.
        per_type = Table(title="3201 per insurance type")
        for column in ("insutype", "clr_type", "setl_optins", "count", "medfee", "fund", "account", "central"):
            per_type.add_column(column)
        for row in result["insutypes"]:
            sent = row["sent"]
            if row["matches"] is not None:
                verdict = "matches" if row["matches"] else f"differs: {row['stmt_rslt_dscr'] or row['stmt_rslt']}"
            else:
                verdict = f"refused: {row['refused']}" if "refused" in row else "not answered"
            per_type.add_row(row["insutype"], row["clr_type"], row["setl_optins"], str(sent["fixmedins_setl_cnt"]),
                             sent["medfee_sumamt"], sent["fund_pay_sumamt"], sent["acct_pay"], escape(verdict))
        console.print(per_type)
    if result.get("error"):
        console.print(f"error: {result['error']}", style="red", markup=False, highlight=False, soft_wrap=True)
    for item in result.get("differences", []):
        if "figure" in item:
            console.print(f"differs: {item['figure']} local {item['local']} central {item['central']}",
                          markup=False, highlight=False, soft_wrap=True)
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


def resume(cfg: Config, *, reason: str, operator: str | None = None, clear_downtime: bool = False,
           restored_checked: bool = False) -> int:
    """Ask the running daemon to clear its upload halt (and/or central's window in force now;
    with `restored_checked`, to release the pending sales of a spool restored from the mirror).

    The daemon logs who (`operator`, by default the login name) and why, checks central's
    cursor again and answers the upstream status: exit 0 when no longer halted, 1 when it
    halted again (the cause is not fixed), nothing was halted, or the daemon did not answer.
    What stays held without `restored_checked` is printed either way (with nothing else to
    resume, the daemon refuses: exit 1).
    """
    import httpx
    from rich.console import Console

    from terminald.cli.client import api_call, problem_text

    console = Console()
    who = operator or _login_name()
    body = {"operator": who, "reason": reason, "clear_downtime": clear_downtime, "restored_checked": restored_checked}
    try:
        response = api_call(cfg, "POST", "/v1/upstream/resume", body, timeout_s=30.0)
    except FileNotFoundError:
        console.print(f"[red]no API token at {cfg.token_path}: is terminald running here?[/red]")
        return 1
    except httpx.HTTPError as exc:
        console.print(f"[red]terminald does not answer on {cfg.api.listen or cfg.api.unix_socket}: {exc}[/red]")
        return 1
    if response.status_code != 200:
        console.print(f"terminald answered {response.status_code}: {problem_text(response)}", style="red",
                      markup=False, soft_wrap=True)
        return 1
    link = response.json()
    for code in link.get("still_held") or []:
        console.print(f"still held: {code}: the pending sales restored from the mirror are not sent until they are "
                      "checked with the platform (the alarm says how); then: terminald upstream resume "
                      "--restored-checked --reason '…'", style="yellow", markup=False, soft_wrap=True)
    if link.get("halted"):
        console.print("[red]uploading halted again: the cause is not fixed[/red]")
        for alarm in link.get("alarms") or []:
            console.print(f"{alarm.get('code')}: {alarm.get('message')}", style="red", markup=False)
        return 1
    cause = f" ({link['cause']})" if link.get("cause") else ""
    console.print(f"resumed by {who}: upstream {link.get('state')}{cause}", markup=False)
    return 0


def _login_name() -> str:
    import getpass
    import os

    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)

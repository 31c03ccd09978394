"""`terminald status`, `followups`, `doctor`: how this counter is doing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from terminald.cli.base import ConfigOpt, load

if TYPE_CHECKING:
    from terminald.config import Config

__all__ = ["doctor", "followups", "print_followups", "print_status", "status"]


def status(config: ConfigOpt = None) -> None:
    """The running daemon's /v1/status, readable."""
    raise typer.Exit(print_status(load(config)))


def followups(
    config: ConfigOpt = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on standard output.")] = False,
) -> None:
    """Patients to contact: refunds owed after outage sales, rejections to settle; with deadlines."""
    raise typer.Exit(print_followups(load(config), as_csv=as_csv))


def doctor(
    config: ConfigOpt = None,
    print_page: Annotated[bool, typer.Option("--print", help="Also print a test page.")] = False,
) -> None:
    """Check pcscd, readers, card, printers, upstream, clock, disk, spool, permissions."""
    from terminald.doctor import run_doctor

    raise typer.Exit(run_doctor(load(config), print_page=print_page))


def _yuan(fen: int | None) -> str:
    return f"¥{(fen or 0) / 100:,.2f}"


def print_status(cfg: Config) -> int:
    from rich.console import Console
    from rich.table import Table

    from terminald.cli.client import api_json

    s = api_json(cfg, "GET", "/v1/status")
    if s is None:
        return 1
    console = Console()
    mode = s["mode"]
    colour = {"online": "green", "offline": "red", "planned_downtime": "yellow"}.get(mode, "white")
    label = {"online": "ONLINE 在线", "offline": "OFFLINE 离线", "planned_downtime": "停机 PLANNED DOWNTIME"}
    console.print(f"[bold {colour}]{label.get(mode, mode)}[/]  terminal {s['terminal_id']}  "
                  f"version {s['version']}  since {s['started_at']}")
    up, sp = s["upstream"], s["spool"]
    if up.get("cause"):
        console.print(f"upstream: {up['state']} ({up['cause']}), last ok {up.get('last_ok_at') or 'never'}")
    for alarm in up.get("alarms") or []:
        console.print(f"[bold red]ALARM[/] {alarm.get('code')}: {alarm.get('message')}")
    console.print(f"pending: {sp['pending']} ({_yuan(sp['pending_amount_fen'])}), oldest "
                  f"{sp['oldest_pending_at'] or '-'}; rejected to follow up: {sp['rejected_unresolved']}; "
                  f"settled: {sp['settled_total']}; last seq {sp['last_seq']}; integrity {sp.get('integrity')}")
    owed = s.get("followups") or {}
    if owed.get("count"):
        console.print(f"follow-ups: {owed['count']} ({owed.get('overdue', 0)} overdue), "
                      f"refunds owed {_yuan(owed.get('owed_fen'))}: terminald followups")
    table = Table("device", "name", "state")
    for r in s["devices"]["readers"]:
        table.add_row("reader", r["name"], r["state"] + (" (card)" if r["card_present"] else ""))
    for p in s["devices"]["printers"]:
        table.add_row("printer", f"{p['name']} {p['uri']}", p["state"])
    console.print(table)
    return 0


FOLLOWUP_COLUMNS = ("seq", "id", "reason", "business_time", "total_yuan", "owed_yuan", "deadline", "overdue",
                    "card", "name", "phone", "rejection")


def print_followups(cfg: Config, *, as_csv: bool) -> int:
    """`terminald followups`: patients to contact, oldest first (masked, as the API gives them)."""
    import csv
    import sys

    from rich.console import Console
    from rich.table import Table

    from terminald.cli.client import api_json

    body = api_json(cfg, "GET", "/v1/followups")
    if body is None:
        return 1
    rows = [(str(i["seq"]), i["id"], i["reason"], i["business_time"], f"{i['total_fen'] / 100:.2f}",
             f"{i['owed_fen'] / 100:.2f}", i["deadline"] or "", "yes" if i["overdue"] else "",
             i["card"]["card_number"], i["card"]["name_masked"], i["contact_phone_masked"] or "",
             (i["rejection"] or {}).get("code", "")) for i in body["items"]]
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(FOLLOWUP_COLUMNS)
        writer.writerows(rows)
        return 0
    table = Table(*FOLLOWUP_COLUMNS, title=f"{body['count']} to follow up, {body['overdue']} overdue, "
                                           f"refunds owed {_yuan(body['owed_fen'])}")
    for row in rows:
        table.add_row(*row, style="bold red" if row[7] else None)
    Console().print(table)
    return 0

"""CLI commands that talk to the running daemon or to the hardware directly."""

from __future__ import annotations

import csv
import sys
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from terminald.config import Config
from terminald.privacy import mask_card, mask_name, mask_ssn

console = Console()


def api_call(cfg: Config, method: str, path: str, body: Any = None, timeout_s: float = 5.0) -> httpx.Response:
    """One call to the running daemon's API, with its token, over TCP or the Unix socket."""
    token = cfg.token_path.read_text(encoding="ascii").strip()
    headers = {"Authorization": f"Bearer {token}"}
    if cfg.api.listen:
        host = cfg.api.host
        host = f"[{host}]" if ":" in host else host
        with httpx.Client(base_url=f"http://{host}:{cfg.api.port}", timeout=timeout_s) as client:
            return client.request(method, path, headers=headers, json=body)
    transport = httpx.HTTPTransport(uds=cfg.api.unix_socket)
    with httpx.Client(transport=transport, base_url="http://localhost", timeout=timeout_s) as client:
        return client.request(method, path, headers=headers, json=body)


def api_get(cfg: Config, path: str, timeout_s: float = 5.0) -> httpx.Response:
    return api_call(cfg, "GET", path, timeout_s=timeout_s)


def api_json(cfg: Config, method: str, path: str, body: Any = None) -> Any:
    """The answer's JSON, or None after printing why the daemon could not give it."""
    try:
        response = api_call(cfg, method, path, body)
    except FileNotFoundError:
        console.print(f"[red]no API token at {cfg.token_path}: is terminald running here?[/]")
        return None
    except httpx.HTTPError as exc:
        console.print(f"[red]terminald does not answer on {cfg.api.listen or cfg.api.unix_socket}: {exc}[/]")
        return None
    if response.status_code >= 300:
        try:
            problem = response.json()
            console.print(f"[red]{problem.get('code')}: {problem.get('detail')}[/]")
        except ValueError:
            console.print(f"[red]terminald answered {response.status_code}: {response.text[:200]}[/]")
        return None
    return response.json()


def _yuan(fen: int | None) -> str:
    return f"¥{(fen or 0) / 100:,.2f}"


def print_status(cfg: Config) -> int:
    s = api_json(cfg, "GET", "/v1/status")
    if s is None:
        return 1
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


def read_card(cfg: Config, *, full: bool, timeout_s: float, reader: str | None) -> int:
    from drivers.cards import CardService
    from drivers.errors import DriverError

    service = CardService(profile=cfg.card.profile, readers=cfg.card.readers, psam_reader=cfg.card.psam_reader)
    service.start()
    try:
        read = service.read(reader, timeout_s)
    except DriverError as exc:
        console.print(f"[red]{exc.code}: {exc}[/]")
        return 1
    finally:
        service.stop()
    card = read.card.as_dict()
    if not full:
        card["ssn"] = mask_ssn(card.get("ssn"))
        card["name"] = mask_name(card.get("name"))
        card["card_number"] = mask_card(card.get("card_number"))
    table = Table("field", "value", title=f"{read.reader}  ATR {read.atr}")
    for key, value in card.items():
        table.add_row(key, value or "")
    console.print(table)
    return 0


def print_test_page(cfg: Config, printer_name: str | None) -> int:
    from drivers.errors import DriverError
    from drivers.printers import Printer, PrinterConfig
    from terminald.receipts.templates import render_test_page

    entries = {p.name: p for p in cfg.printer_entries}
    name = printer_name or next(iter(entries))
    if name not in entries:
        console.print(f"[red]no printer named {name!r}; configured: {', '.join(entries)}[/]")
        return 1
    entry = entries[name]
    printer = Printer(PrinterConfig(name=entry.name, uri=entry.uri, profile=entry.profile,
                                    chinese=entry.chinese, columns=entry.columns, language=entry.language))
    try:
        state = printer.status()
        data = render_test_page(institution=cfg.terminal.institution_name, terminal_id=cfg.terminal.id,
                                printer=name, columns=entry.columns, chinese=entry.chinese)
        printer.print_bytes(data, job_id="test-page")
    except DriverError as exc:
        console.print(f"[red]{exc.code}: {exc}[/]")
        return 1
    finally:
        printer.close()
    console.print(f"test page sent to {name} ({entry.uri}); printer status: {state}")
    return 0


FOLLOWUP_COLUMNS = ("seq", "id", "reason", "business_time", "total_yuan", "owed_yuan", "deadline", "overdue",
                    "card", "name", "phone", "rejection")


def print_followups(cfg: Config, *, as_csv: bool) -> int:
    """`terminald followups`: patients to contact, oldest first (masked, as the API gives them)."""
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
    console.print(table)
    return 0


def retry_print_job(cfg: Config, job_id: str) -> int:
    """`terminald print retry JOB`: print an `unknown` job again, as a reprint (POST /v1/print-jobs/{id}/retry)."""
    from urllib.parse import quote

    body = api_json(cfg, "POST", f"/v1/print-jobs/{quote(job_id, safe='')}/retry")
    if body is None:
        return 1
    console.print(f"print job {job_id} is printed again as {body['job_id']} on {body['printer']} "
                  f"({body['document']}, marked reprint)")
    return 0


def rotate_token(cfg: Config, *, status_page: bool) -> int:
    """`terminald token rotate [--status-page]`: a new random token, written atomically with the old
    file's mode and owner; the running daemon refuses the old token from its next request."""
    import grp
    import pwd

    from terminald.security import api_group_id
    from terminald.security import rotate_token as rotate

    path = cfg.status_token_path if status_page else cfg.token_path
    which = "status-page token" if status_page else "API token (the POS's)"
    try:
        done = rotate(path, api_group_id(cfg.api.group))
    except FileNotFoundError:
        console.print(f"[red]no directory {path.parent}: start terminald once, or create it as "
                      f"docs/install.md says (systemd-tmpfiles --create terminald.conf)[/]")
        return 1
    except OSError as exc:
        console.print(f"[red]cannot write {path}: {exc.strerror or exc}[/]")
        return 1

    def name(lookup: Any, ident: int) -> str:
        try:
            return str(lookup(ident)[0])
        except KeyError:
            return str(ident)

    owner = f"{name(pwd.getpwuid, done.uid)}:{name(grp.getgrgid, done.gid)}"
    console.print(f"{'created' if done.created else 'new'} {which} in {path} "
                  f"(mode {done.mode:04o}, owner {owner})")
    # The daemon picks the file up on its next request: show that it did, when one runs here.
    try:
        probe = "/v1/status"
        response = _call_with(cfg, done.token, probe)
    except httpx.HTTPError:
        console.print("terminald does not answer here: it reads the new token when it starts")
        return 0
    if response.status_code != 200:
        console.print(f"[red]the running daemon refuses the new token ({response.status_code}): can the "
                      f"terminald user read {path}?[/]")
        return 1
    console.print("the running daemon accepts the new token and refuses the old one; "
                  + ("update the status page's desktop shortcut (#token=...)" if status_page
                     else "the POS must read the token file again"))
    return 0


def _call_with(cfg: Config, token: str, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if cfg.api.listen:
        host = cfg.api.host
        host = f"[{host}]" if ":" in host else host
        with httpx.Client(base_url=f"http://{host}:{cfg.api.port}", timeout=5.0) as client:
            return client.get(path, headers=headers)
    transport = httpx.HTTPTransport(uds=cfg.api.unix_socket)
    with httpx.Client(transport=transport, base_url="http://localhost", timeout=5.0) as client:
        return client.get(path, headers=headers)

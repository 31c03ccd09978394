"""`terminald spool list|show|check|export`: read the system of record directly."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from spool import Spool, SpoolError
from terminald.config import Config
from terminald.privacy import mask_card, mask_name, mask_ssn
from terminald.transactions import answer

console = Console()


def _open(cfg: Config) -> Spool:
    if not cfg.spool_path.exists():
        raise SpoolError(f"no spool at {cfg.spool_path}")
    return Spool.open(cfg.spool_path, cfg.terminal.id, background_check=False)


def list_records(cfg: Config, status: str | None, after_seq: int, limit: int) -> int:
    try:
        spool = _open(cfg)
    except SpoolError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    try:
        records = spool.records(status, after_seq, limit)
    finally:
        spool.close()
    table = Table("seq", "id", "kind", "status", "business time", "total", "offline")
    for r in records:
        table.add_row(str(r.seq), r.record_id, r.kind, r.status, r.business_time,
                      f"{r.total_fen / 100:.2f}", r.offline_reason or ("yes" if r.offline else ""))
    console.print(table)
    return 0


def show_record(cfg: Config, ref: str, *, full: bool) -> int:
    try:
        spool = _open(cfg)
    except SpoolError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    try:
        record = spool.get_seq(int(ref)) if ref.isdigit() else spool.get(ref)
        if record is None:
            console.print(f"[red]no record {ref}[/]")
            return 1
        history = spool.history(record.record_id)
    finally:
        spool.close()
    if full:
        shown = record.wire()
    else:
        shown = answer(record, history)
        card = record.payload.get("card") or {}
        shown["card"] = {"card_number": mask_card(card.get("card_number")),
                         "ssn": mask_ssn(card.get("ssn")), "name": mask_name(card.get("name"))}
    console.print_json(json.dumps(shown, ensure_ascii=False))
    return 0


def check(cfg: Config) -> int:
    try:
        spool = _open(cfg)
    except SpoolError as exc:
        console.print(f"[bold red]FAIL[/] {exc}")
        return 1
    try:
        report = spool.check()
    finally:
        spool.close()
    if report.ok:
        console.print(f"[green]OK[/] {report.records} records, chain and integrity verified ({cfg.spool_path})")
        return 0
    for problem in report.problems:
        console.print(f"[bold red]FAIL[/] {problem}")
    return 1


def export(cfg: Config, dest: Path, fmt: str) -> int:
    try:
        spool = _open(cfg)
    except SpoolError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    try:
        count = spool.export(dest, fmt)
    finally:
        spool.close()
    console.print(f"exported {count} records to {dest}")
    return 0

"""`terminald spool list|show|check|export`: read the system of record directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from spool import Spool, SpoolError
from terminald.config import Config
from terminald.privacy import mask_card, mask_name, mask_ssn
from terminald.transactions import answer

console = Console()


def with_spool(cfg: Config, action: Callable[[Spool], int]) -> int:
    """Open the spool (never creating one), run `action`, close; a spool error is exit 1."""
    if not cfg.spool_path.exists():
        console.print(f"[bold red]FAIL[/] no spool at {cfg.spool_path}")
        return 1
    try:
        spool = Spool.open(cfg.spool_path, cfg.terminal.id, background_check=False)
    except SpoolError as exc:
        console.print(f"[bold red]FAIL[/] {exc}")
        return 1
    try:
        return action(spool)
    except SpoolError as exc:
        console.print(f"[bold red]FAIL[/] {exc}")
        return 1
    finally:
        spool.close()


def list_records(cfg: Config, status: str | None, after_seq: int, limit: int) -> int:
    def show(spool: Spool) -> int:
        columns = ("seq", "id", "kind", "status", "business_time", "total_yuan", "offline")
        rows = [(str(r.seq), r.record_id, r.kind, r.status, r.business_time, f"{r.total_fen / 100:.2f}",
                 r.offline_reason or ("yes" if r.offline else ""))
                for r in spool.records(status, after_seq, limit)]
        if not console.is_terminal:
            # Piped into a file or another tool: whole values, tab-separated, no decoration.
            for row in (columns, *rows):
                print("\t".join(row))
            return 0
        table = Table(*columns)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return 0

    return with_spool(cfg, show)


def show_record(cfg: Config, ref: str, *, full: bool) -> int:
    def show(spool: Spool) -> int:
        record = spool.get_seq(int(ref)) if ref.isdigit() else spool.get(ref)
        if record is None:
            console.print(f"[red]no record {ref}[/]")
            return 1
        if full:
            shown = record.wire()
        else:
            shown = answer(record, spool.history(record.record_id))
            card = record.payload.get("card") or {}
            shown["card"] = {"card_number": mask_card(card.get("card_number")),
                             "ssn": mask_ssn(card.get("ssn")), "name": mask_name(card.get("name"))}
        console.print_json(json.dumps(shown, ensure_ascii=False))
        return 0

    return with_spool(cfg, show)


def check(cfg: Config) -> int:
    def verify(spool: Spool) -> int:
        report = spool.check()
        if report.ok:
            console.print(f"[green]OK[/] {report.records} records, chain and integrity verified "
                          f"({cfg.spool_path})")
            return 0
        for problem in report.problems:
            console.print(f"[bold red]FAIL[/] {problem}")
        return 1

    return with_spool(cfg, verify)


def export(cfg: Config, dest: Path, fmt: str) -> int:
    def write(spool: Spool) -> int:
        count = spool.export(dest, fmt)
        console.print(f"exported {count} records to {dest}")
        return 0

    return with_spool(cfg, write)

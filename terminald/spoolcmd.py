"""`terminald spool list|show|check|export|salvage`: read the system of record directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spool import InvalidRequest, Spool, SpoolError
from spool.salvage import SalvageReport
from spool.salvage import salvage as salvage_file
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
            shown = answer(record, spool.history(record.record_id), cfg.terminal.timezone)
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


def salvage(src: Path, dest: Path, terminal_id: str | None = None) -> int:
    """`spool salvage SRC DEST`: 0 when everything was copied, 1 when anything was lost, 2 usage."""
    try:
        report = salvage_file(src, dest, terminal_id)
    except InvalidRequest as exc:
        console.print(f"[bold red]FAIL[/] {escape(str(exc))}", soft_wrap=True)
        return 2
    except SpoolError as exc:
        console.print(f"[bold red]FAIL[/] {escape(str(exc))}", soft_wrap=True)
        return 1
    print_salvage(report)
    return 0 if report.complete else 1


def _seqs(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}-{last}"


def print_salvage(report: SalvageReport) -> None:
    def say(text: str) -> None:
        console.print(text, soft_wrap=True, highlight=False)

    say(f"salvage {escape(str(report.src))} -> {escape(str(report.dest))} (terminal {escape(report.terminal_id)})")
    say(f"read from: {escape(report.read_from)}")
    start = f" after the prune checkpoint at seq {report.chain_start}" if report.chain_start else ""
    if report.copied and report.first_seq is not None and report.last_seq is not None:
        say(f"copied:    {report.copied} records, {_seqs(report.first_seq, report.last_seq)}{start}, "
            "hash chain verified")
    else:
        say(f"copied:    no records{start}")
    if report.broken_at is not None:
        say(f"[bold red]BROKEN[/]    the chain stops at seq {report.broken_at}: {escape(report.break_reason or '')}")
    for lost in report.lost:
        held = report.held_by_central(lost.first, lost.last)
        central = f"; central holds {held} of them" if held else ""
        say(f"[bold red]LOST[/]      {escape(str(lost))}{central}")
    if report.after_break and report.after_break_seqs and report.after_break_file:
        first, last = report.after_break_seqs
        central = f"; central holds {report.after_break_held} of them" if report.after_break_held else ""
        say(f"[yellow]AFTER[/]     {report.after_break} readable records after the break ({_seqs(first, last)}), "
            f"not chainable, in {escape(str(report.after_break_file))}{central}")
    if report.acked_seq is None:
        say("central:   acknowledged cursor unknown (no readable upload_state.acked_seq)")
    else:
        say(f"central:   acknowledged up to seq {report.acked_seq} (upload_state.acked_seq)")
        end = report.last_seq or report.chain_start
        if report.acked_seq > end:
            say(f"[yellow]WARN[/]      central holds {_seqs(end + 1, report.acked_seq)}, which DEST's chain lacks: "
                "a daemon on DEST would reuse those seqs; call the insurance office before putting DEST in service")
    if report.witness_seq is not None:
        say(f"witness:   {report.src.name}-seq says seq {report.witness_seq} was appended")
    if report.side_tables:
        say(f"side tables copied: {', '.join(report.side_tables)}")
    elif report.side_tables_note:
        say(f"[yellow]WARN[/]      uploader/print/event tables {escape(report.side_tables_note)}")
    for line in report.damaged[:20]:
        say(f"[bold red]DAMAGED[/]   {escape(line)}")
    if len(report.damaged) > 20:
        say(f"[bold red]DAMAGED[/]   ... and {len(report.damaged) - 20} more")
    for line in report.notes[:20]:
        say(f"note:      {escape(line)}")
    if len(report.notes) > 20:
        say(f"note:      ... and {len(report.notes) - 20} more")
    if report.dest_check.ok:
        say(f"[green]OK[/]        {escape(str(report.dest))}: {report.dest_check.records} records, "
            "chain and integrity verified (as `spool check`)")
    else:
        for problem in report.dest_check.problems:
            say(f"[bold red]FAIL[/]      {escape(str(report.dest))}: {escape(problem)}")
    if report.complete:
        say("[green]COMPLETE[/]  every record and its state was copied")
    else:
        say("[bold red]INCOMPLETE[/] not everything could be copied: see above and docs/spool.md, \"Salvage\"")

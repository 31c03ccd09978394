"""`terminald spool list|show|check|export|salvage|drain|restore`: the system of record, directly.

`list`, `show`, `check` and `export` only read (`Spool.open_readonly`): no migration, no writer
thread, no file created or changed beside the spool (nor its owner or mode), so they are safe
beside a running daemon and as root. `salvage` never writes its source. `drain` uploads, so it
writes, and takes the spool's lock (never beside the daemon). `restore --from-mirror` writes a
new spool where the config's is missing (its body: cli/mirror.py), under the same lock.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from terminald.cli.base import App, ConfigOpt, fail, load, setup_logging

if TYPE_CHECKING:
    from rich.console import Console

    from spool import Spool
    from spool.salvage import SalvageReport
    from terminald.config import Config

__all__ = ["app", "check", "drain", "export", "list_records", "print_salvage", "salvage", "show_record",
           "with_spool"]

app = App(help="Inspect, verify, export, drain, salvage and restore the spool.")

INTERRUPTED = 130


@app.command("list")
def spool_list(
    config: ConfigOpt = None,
    status_: Annotated[str | None, typer.Option("--status", help="pending, settled, rejected, resolved")] = None,
    after_seq: int = 0,
    limit: int = 50,
) -> None:
    """List records, in seq order."""
    raise typer.Exit(list_records(load(config), status_, after_seq, limit))


@app.command("show")
def spool_show(record: str, config: ConfigOpt = None,
               full: Annotated[bool, typer.Option("--full", help="Unmasked.")] = False) -> None:
    """Show one record (by id or seq) with its history."""
    raise typer.Exit(show_record(load(config), record, full=full))


@app.command("check")
def spool_check(config: ConfigOpt = None) -> None:
    """Verify the hash chain and SQLite integrity."""
    raise typer.Exit(check(load(config)))


@app.command("export")
def spool_export(
    dest: Path,
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="jsonl, csv, or sqlite (a copy of the whole spool, chain included)")] = "jsonl",
) -> None:
    """Export every record (through SQLite's backup API); the file is 0600."""
    from spool.maintenance import EXPORT_FORMATS

    if fmt not in EXPORT_FORMATS:
        fail(f"--format is one of {', '.join(EXPORT_FORMATS)}", 2)
    raise typer.Exit(export(load(config), dest, fmt))


@app.command("salvage")
def spool_salvage(
    src: Annotated[Path, typer.Argument(help="The damaged spool file: only read, never written.")],
    dest: Annotated[Path, typer.Argument(help="The new spool to create (must not exist).")],
    terminal_id: Annotated[str | None, typer.Option(
        "--terminal-id", help="Only when SRC cannot say which terminal it belongs to.")] = None,
) -> None:
    """Copy every readable record of a damaged spool into a new one; report exactly what was lost."""
    raise typer.Exit(salvage(src, dest, terminal_id))


@app.command("restore")
def spool_restore(
    config: ConfigOpt = None,
    from_mirror: Annotated[bool, typer.Option(
        "--from-mirror", help="Rebuild from the PostgreSQL mirror (the only source; required).")] = False,
    dsn: Annotated[str | None, typer.Option("--dsn", help="Default: the config's mirror.dsn.")] = None,
    terminal: Annotated[str | None, typer.Option("--terminal", help="Default: the config's terminal.id.")] = None,
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", help="Default: the config's mirror.password_file.")] = None,
) -> None:
    """Rebuild a lost spool from the PostgreSQL mirror, its chain verified from seq 1 (or its prune checkpoint).

    Pending records stay pending; with upstream nhsa they are held until `terminald upstream resume
    --restored-checked`. Refused while terminald runs or while a spool file exists."""
    from terminald.cli.mirror import restore_from_mirror

    if not from_mirror:
        fail("--from-mirror is required: the mirror is the only source to restore from "
             "(a damaged file that still exists: terminald spool salvage)", 2)
    raise typer.Exit(restore_from_mirror(load(config), dsn, terminal, password_file))


@app.command("drain")
def spool_drain(config: ConfigOpt = None) -> None:
    """Upload now, with a progress bar, until empty or Ctrl-C (which loses nothing)."""
    cfg = load(config)
    setup_logging(cfg)
    raise typer.Exit(drain(cfg))


# -- bodies: each returns the exit code --------------------------------------------------------------------
def _console() -> Console:
    from rich.console import Console

    return Console()


def with_spool(cfg: Config, action: Callable[[Spool], int], *, write: bool = False) -> int:
    """Open the spool (never creating one), run `action`, close; a spool error is exit 1.

    Read-only (`Spool.open_readonly`) unless `write`.
    """
    from spool import Spool, SpoolError

    console = _console()
    if not cfg.spool_path.exists():
        console.print(f"[bold red]FAIL[/] no spool at {cfg.spool_path}")
        return 1
    try:
        if write:
            spool = Spool.open(cfg.spool_path, cfg.terminal.id, background_check=False)
        else:
            spool = Spool.open_readonly(cfg.spool_path, cfg.terminal.id)
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
    from rich.table import Table

    console = _console()

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
    import json

    from terminald.privacy import mask_card, mask_name, mask_ssn
    from terminald.transactions import answer

    console = _console()

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
    console = _console()

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
        _console().print(f"exported {count} records to {dest}")
        return 0

    return with_spool(cfg, write)


def salvage(src: Path, dest: Path, terminal_id: str | None = None) -> int:
    """`spool salvage SRC DEST`: 0 when everything was copied, 1 when anything was lost, 2 usage."""
    from rich.markup import escape

    from spool import InvalidRequest, SpoolError
    from spool.salvage import salvage as salvage_file

    try:
        report = salvage_file(src, dest, terminal_id)
    except InvalidRequest as exc:
        _console().print(f"[bold red]FAIL[/] {escape(str(exc))}", soft_wrap=True)
        return 2
    except SpoolError as exc:
        _console().print(f"[bold red]FAIL[/] {escape(str(exc))}", soft_wrap=True)
        return 1
    print_salvage(report)
    return 0 if report.complete else 1


def _seqs(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}-{last}"


def print_salvage(report: SalvageReport) -> None:
    from rich.markup import escape

    console = _console()

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


def drain(cfg: Config) -> int:
    """Upload now until the backlog is empty, halted, or Ctrl-C (which loses nothing).

    Refused (exit 1) while the daemon, or another drain, holds the spool's lock (spool/lock.py):
    two uploaders on one backlog race each other into a false `chain_broken` at central.
    """
    import asyncio

    from rich.console import Console

    from spool.lock import SpoolLock, SpoolLocked

    console = Console(stderr=True)
    if not cfg.upstream.url:
        console.print("[red]upstream.url is empty: there is no central system to upload to[/red]")
        return 1
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
        return with_spool(cfg, lambda spool: asyncio.run(_drain(spool, cfg, console)), write=True)
    finally:
        if lock is not None:
            lock.release()


async def _drain(spool: Spool, cfg: Config, console: Console) -> int:
    import asyncio
    import signal

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from terminald.upload.uploader import Uploader

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

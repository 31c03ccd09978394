"""`terminald …`: the command line (`terminald --help`; docs/operations.md and docs/install.md use it).

Exit codes: 0 ok, 1 failure, 2 usage (bad arguments or bad configuration).
Each command imports what it needs when it runs, so `terminald --help` and
`terminald status` stay quick on a slow counter PC.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from terminald.config import Config, load_config
from terminald.errors import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="terminald: social-security cards, receipts and a durable outbox to central.")
spool_app = typer.Typer(no_args_is_help=True, help="Inspect, verify, export, drain and salvage the spool.")
card_app = typer.Typer(no_args_is_help=True, help="Card readers.")
print_app = typer.Typer(no_args_is_help=True, help="Printers.")
sim_app = typer.Typer(no_args_is_help=True, help="Run one simulator by itself (for tests and demos).")
app.add_typer(spool_app, name="spool")
app.add_typer(card_app, name="card")
app.add_typer(print_app, name="print")
app.add_typer(sim_app, name="sim")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"terminald: {message}", err=True)
    raise typer.Exit(code)


def _config(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(exc.detail, 2)


def _setup_logging(cfg: Config) -> None:
    from terminald import logs

    # The terminal id looks like a card number to the log scrubber; it is not personal.
    logs.setup(cfg.logging.level, cfg.logging.format, keep=[cfg.terminal.id])


@app.command()
def serve(config: ConfigOpt = None) -> None:
    """Run the daemon (systemd Type=notify, watchdog)."""
    cfg = _config(config)
    _setup_logging(cfg)
    from terminald.server import serve as run

    try:
        run(cfg)
    except OSError as exc:
        _fail(f"cannot listen on {cfg.api.listen or cfg.api.unix_socket}: {exc.strerror}")


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the demo's state directory.")] = False,
) -> None:
    """Play a whole outage day with every simulator and print what happened."""
    from terminald.sim.demo import run_demo

    raise typer.Exit(run_demo(keep=keep))


@app.command()
def status(config: ConfigOpt = None) -> None:
    """The running daemon's /v1/status, readable."""
    from terminald.clientcmd import print_status

    raise typer.Exit(print_status(_config(config)))


@app.command()
def followups(
    config: ConfigOpt = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on standard output.")] = False,
) -> None:
    """Patients to contact: refunds owed after outage sales, rejections to settle; with deadlines."""
    from terminald.clientcmd import print_followups

    raise typer.Exit(print_followups(_config(config), as_csv=as_csv))


@app.command()
def doctor(
    config: ConfigOpt = None,
    print_page: Annotated[bool, typer.Option("--print", help="Also print a test page.")] = False,
) -> None:
    """Check pcscd, readers, card, printers, upstream, clock, disk, spool, permissions."""
    from terminald.doctor import run_doctor

    raise typer.Exit(run_doctor(_config(config), print_page=print_page))


@card_app.command("read")
def card_read(
    config: ConfigOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Show identity numbers and names unmasked.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a card.")] = 10.0,
    reader: Annotated[str | None, typer.Option(help="Reader name.")] = None,
) -> None:
    """Read the card once and print it (masked unless --full)."""
    from terminald.clientcmd import read_card

    raise typer.Exit(read_card(_config(config), full=full, timeout_s=timeout, reader=reader))


@print_app.command("test")
def print_test(
    config: ConfigOpt = None,
    printer: Annotated[str | None, typer.Option(help="Printer name (default: the first).")] = None,
) -> None:
    """Print a test page."""
    from terminald.clientcmd import print_test_page

    raise typer.Exit(print_test_page(_config(config), printer))


@print_app.command("retry")
def print_retry(
    job: Annotated[str, typer.Argument(help="The print job (pj-…) whose outcome is unknown.")],
    config: ConfigOpt = None,
) -> None:
    """Print a job whose outcome is unknown again, marked as a reprint (through the running daemon)."""
    from terminald.clientcmd import retry_print_job

    raise typer.Exit(retry_print_job(_config(config), job))


@spool_app.command("list")
def spool_list(
    config: ConfigOpt = None,
    status_: Annotated[str | None, typer.Option("--status", help="pending, settled, rejected, resolved")] = None,
    after_seq: int = 0,
    limit: int = 50,
) -> None:
    """List records, in seq order."""
    from terminald.spoolcmd import list_records

    raise typer.Exit(list_records(_config(config), status_, after_seq, limit))


@spool_app.command("show")
def spool_show(record: str, config: ConfigOpt = None,
               full: Annotated[bool, typer.Option("--full", help="Unmasked.")] = False) -> None:
    """Show one record (by id or seq) with its history."""
    from terminald.spoolcmd import show_record

    raise typer.Exit(show_record(_config(config), record, full=full))


@spool_app.command("check")
def spool_check(config: ConfigOpt = None) -> None:
    """Verify the hash chain and SQLite integrity."""
    from terminald.spoolcmd import check

    raise typer.Exit(check(_config(config)))


@spool_app.command("export")
def spool_export(
    dest: Path,
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="jsonl, csv, or sqlite (a copy of the whole spool, chain included)")] = "jsonl",
) -> None:
    """Export every record (through SQLite's backup API); the file is 0600."""
    from spool.maintenance import EXPORT_FORMATS
    from terminald.spoolcmd import export

    if fmt not in EXPORT_FORMATS:
        _fail(f"--format is one of {', '.join(EXPORT_FORMATS)}", 2)
    raise typer.Exit(export(_config(config), dest, fmt))


@spool_app.command("salvage")
def spool_salvage(
    src: Annotated[Path, typer.Argument(help="The damaged spool file: only read, never written.")],
    dest: Annotated[Path, typer.Argument(help="The new spool to create (must not exist).")],
    terminal_id: Annotated[str | None, typer.Option(
        "--terminal-id", help="Only when SRC cannot say which terminal it belongs to.")] = None,
) -> None:
    """Copy every readable record of a damaged spool into a new one; report exactly what was lost."""
    from terminald.spoolcmd import salvage

    raise typer.Exit(salvage(src, dest, terminal_id))


@spool_app.command("drain")
def spool_drain(config: ConfigOpt = None) -> None:
    """Upload now, with a progress bar, until empty or Ctrl-C (which loses nothing)."""
    cfg = _config(config)
    _setup_logging(cfg)
    from terminald.upload.commands import drain

    raise typer.Exit(drain(cfg))


@app.command()
def outages(
    config: ConfigOpt = None,
    reportable: Annotated[bool, typer.Option("--reportable", help="Only outages over 1 hour.")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="CSV for the insurance office.")] = False,
) -> None:
    """The outage log."""
    from terminald.upload.commands import print_outages

    raise typer.Exit(print_outages(_config(config), reportable, csv))


@app.command()
def reconcile(
    date: Annotated[str, typer.Option("--date", help="Business date, YYYY-MM-DD.")],
    config: ConfigOpt = None,
) -> None:
    """Local vs central totals for a business date."""
    from terminald.upload.commands import print_reconcile

    raise typer.Exit(print_reconcile(_config(config), date))


upstream_app = typer.Typer(no_args_is_help=True, help="The link to central.")
app.add_typer(upstream_app, name="upstream")


@upstream_app.command("resume")
def upstream_resume(
    reason: Annotated[str, typer.Option("--reason", help="Why: logged with who.")],
    config: ConfigOpt = None,
    operator: Annotated[str | None, typer.Option(help="Who resumes (default: your login name).")] = None,
    clear_downtime: Annotated[bool, typer.Option(
        "--clear-downtime", help="Also drop the downtime window from central in force now.")] = False,
) -> None:
    """Clear an upload halt once its cause is fixed (central's cursor is checked again first)."""
    from terminald.upload.commands import resume

    raise typer.Exit(resume(_config(config), reason=reason, operator=operator, clear_downtime=clear_downtime))


token_app = typer.Typer(no_args_is_help=True, help="The API's bearer tokens.")
app.add_typer(token_app, name="token")


@token_app.command("rotate")
def token_rotate(
    config: ConfigOpt = None,
    status_page: Annotated[bool, typer.Option(
        "--status-page", help="The status page's read-only token instead of the POS's.")] = False,
) -> None:
    """Write a new random token (same mode and owner); the running daemon refuses the old one at once."""
    from terminald.clientcmd import rotate_token

    raise typer.Exit(rotate_token(_config(config), status_page=status_page))


@sim_app.command("card")
def sim_card(
    card: Annotated[str, typer.Option("--card", help="Card description (TOML) or a shipped name, e.g. ssc2.")],
    slot: Annotated[int, typer.Option(help="vpcd slot: 0 or 1.")] = 0,
) -> None:
    """Emulate a card behind pcscd's vpcd driver."""
    from terminald.sim.card import run

    run(card, slot)


@sim_app.command("printer")
def sim_printer(
    host: str = "127.0.0.1",
    port: int = 9100,
    pty: Annotated[bool, typer.Option(help="Also open a pty serial port.")] = False,
    out: Annotated[Path | None, typer.Option(help="Directory for received jobs (.bin, .txt, .png).")] = None,
    state: Annotated[str, typer.Option(help="online, near_end, paper_out, cover_open or silent.")] = "online",
) -> None:
    """Emulate an ESC/POS receipt printer."""
    from terminald.sim.printer import run

    run(host=host, port=port, pty=pty, out=out, state=state)


@sim_app.command("central")
def sim_central(
    host: str = "127.0.0.1",
    port: int = 8640,
    db: Annotated[Path, typer.Option(help="Where central keeps what it accepts.")] = Path("var/central.db"),
    token: Annotated[str | None, typer.Option(help="Bearer token central requires (default: none).")] = None,
    down: Annotated[bool, typer.Option(help="Start refusing connections.")] = False,
    latency_ms: Annotated[float, typer.Option(help="Added latency per request.")] = 0,
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 503.")] = 0,
    reset_rate: Annotated[float, typer.Option(help="Share of requests reset before handling.")] = 0,
    drop_after_commit_rate: Annotated[float, typer.Option(help="Share of batches committed, then reset.")] = 0,
    garbage_rate: Annotated[float, typer.Option(help="Share of answers replaced by garbage.")] = 0,
    throttle_rate: Annotated[float, typer.Option(help="Share of requests answered 429.")] = 0,
    retry_after_s: Annotated[int, typer.Option(help="Retry-After of the 429 answers.")] = 1,
) -> None:
    """Run the central medical-insurance system simulator (faults also via POST /_control)."""
    from terminald.sim.central import run

    db.parent.mkdir(parents=True, exist_ok=True)
    run(host=host, port=port, db=db, token=token, down=down, latency_ms=latency_ms, error_rate=error_rate,
        reset_rate=reset_rate, drop_after_commit_rate=drop_after_commit_rate, garbage_rate=garbage_rate,
        throttle_rate=throttle_rate, retry_after_s=retry_after_s)


@sim_app.command("nhsa")
def sim_nhsa(
    host: str = "127.0.0.1",
    port: int = 8650,
    db: Annotated[Path, typer.Option(help="Where the platform keeps its books and call log.")] = Path("var/nhsa.db"),
    down: Annotated[bool, typer.Option(help="Start refusing connections.")] = False,
    latency_ms: Annotated[float, typer.Option(help="Added latency per call.")] = 0,
    error_rate: Annotated[float, typer.Option(help="Share of calls answered HTTP 503.")] = 0,
    reset_rate: Annotated[float, typer.Option(help="Share of calls reset before handling.")] = 0,
    drop_after_commit_rate: Annotated[float, typer.Option(help="Share of calls committed, then reset.")] = 0,
    garbage_rate: Annotated[float, typer.Option(help="Share of answers replaced by garbage.")] = 0,
    busy_rate: Annotated[float, typer.Option(help="Share of calls answered -1 系统繁忙.")] = 0,
    seed: Annotated[int | None, typer.Option(help="Seed of the fault dice.")] = None,
    amounts_as: Annotated[str, typer.Option(help="Amounts in answers: number or string.")] = "number",
    synthetic_persons: Annotated[int, typer.Option(help="Made-up card holders S00000001… to add.")] = 0,
) -> None:
    """Run the national medical-security platform simulator (faults also via POST /_control)."""
    from terminald.sim.nhsa import run

    db.parent.mkdir(parents=True, exist_ok=True)
    controls = {"down": down, "latency_ms": latency_ms, "error_rate": error_rate, "reset_rate": reset_rate,
                "drop_after_commit_rate": drop_after_commit_rate, "garbage_rate": garbage_rate,
                "busy_rate": busy_rate, "amounts_as": amounts_as}
    controls = {k: v for k, v in controls.items() if v not in (0, False)}
    run(host=host, port=port, db=db, synthetic_persons=synthetic_persons, **controls,
        **({} if seed is None else {"seed": seed}))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

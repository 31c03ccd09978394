"""`--help` shows options as typer's and click's users know them: a flag alone (`--csv`), an option
with the kind of value it takes (`--config -c PATH`), never a `<bool>`/`<path>` tag."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

TAG = re.compile(r"<(bool|path|str|int|float|[a-z_]+(\|[a-z_]+)+)>")


def help_of(*args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "150", "TERMINAL_WIDTH": "150"}
    done = subprocess.run([sys.executable, "-m", "terminald.cli", *args, "--help"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def line_of(text: str, option: str) -> str:
    """The help line of `option`, box drawing and padding squeezed out."""
    for line in text.splitlines():
        cells = line.strip("│ ").split()
        if option in cells[:3]:
            return " ".join(cells)
    raise AssertionError(f"no line for {option} in:\n{text}")


@pytest.mark.parametrize("command", [(), ("spool",), ("spool", "list"), ("spool", "export"), ("outages",),
                                     ("followups",), ("doctor",), ("token", "rotate"), ("print", "retry"),
                                     ("transactions", "resolve"), ("upstream", "resume"), ("sim", "central"),
                                     ("mirror",), ("mirror", "init-db"), ("mirror", "status"), ("fleet",),
                                     ("spool", "restore")])
def test_no_type_tags(command: tuple[str, ...]) -> None:
    text = help_of(*command)
    assert TAG.search(text) is None, text
    assert text.lstrip().startswith("Usage: terminald " + " ".join(command))
    assert line_of(text, "--help") == "--help Show this message and exit."


def test_flags_options_and_arguments_read_as_usual() -> None:
    outages = help_of("outages")
    assert line_of(outages, "--config") == "--config -c PATH TOML config file."
    assert line_of(outages, "--csv") == "--csv CSV for the insurance office."
    assert line_of(outages, "--reportable") == "--reportable Only outages over 1 hour."

    listing = help_of("spool", "list")
    assert line_of(listing, "--status") == "--status TEXT pending, settled, rejected, resolved"
    assert line_of(listing, "--limit") == "--limit INTEGER [default: 50]"

    export = help_of("spool", "export")
    assert line_of(export, "dest") == "* dest PATH [required]"

    resolve = help_of("transactions", "resolve")
    assert line_of(resolve, "--as").startswith("* --as [self_pay|voided] self_pay: the patient paid")
    assert line_of(resolve, "--note").startswith("--note TEXT Kept with the record")
    assert line_of(resolve, "ID") == "* ID TEXT The rejected transaction's id. [required]"

    init_db = help_of("mirror", "init-db")
    assert line_of(init_db, "--dsn") == "* --dsn TEXT libpq connection string or postgresql:// URL. [required]"
    assert line_of(init_db, "--terminal").startswith("--terminal ID A terminal id")

    restore = help_of("spool", "restore")
    assert line_of(restore, "--from-mirror").startswith("--from-mirror Rebuild from the PostgreSQL mirror")
    assert line_of(restore, "--dsn") == "--dsn TEXT Default: the config's mirror.dsn."

    card = help_of("card", "read")
    assert line_of(card, "--timeout") == "--timeout FLOAT Seconds to wait for a card. [default: 10.0]"
    assert line_of(card, "--full") == "--full Show identity numbers and names unmasked."


def test_every_command_group_is_listed() -> None:
    text = help_of()
    for name in ("serve", "demo", "status", "followups", "doctor", "outages", "reconcile", "spool", "card",
                 "print", "transactions", "sim", "upstream", "token", "mirror", "fleet"):
        assert re.search(rf"│ {name} ", text), name
    assert "--install-completion" not in text


def test_the_command_modules_import_nothing_heavy() -> None:
    """Every command imports what it needs when it runs: `terminald --help` loads typer and the
    command modules only (no config models, spool, HTTP client, daemon, drivers)."""
    probe = ("import sys, terminald.cli; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('spool', 'drivers', 'pydantic', 'pydantic_settings', 'fastapi', 'uvicorn', 'sqlite3', 'psycopg') "
             "or m == 'httpx' or (m.startswith('terminald.') and not m.startswith('terminald.cli')))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == []

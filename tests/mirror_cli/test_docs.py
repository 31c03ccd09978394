"""The fleet query IT copies from docs/operations.md is the one `terminald fleet` runs."""

from __future__ import annotations

import re
from pathlib import Path

from terminald.mirror.fleet import FLEET_SQL, SILENT_AFTER

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_operations_shows_the_fleet_query_verbatim() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    section = text.split("## The fleet: every counter in one query", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert blocks == [FLEET_SQL]
    assert f"interval '{SILENT_AFTER}'" in FLEET_SQL
    assert "10 minutes" in section


def test_mirror_doc_names_the_commands_not_the_python_api() -> None:
    text = (DOCS / "mirror.md").read_text(encoding="utf-8")
    for command in ("terminald mirror init-db --dsn", "terminald mirror status", "terminald fleet --dsn",
                    "terminald spool restore --from-mirror"):
        assert command in text, command
    assert "python -c" not in text

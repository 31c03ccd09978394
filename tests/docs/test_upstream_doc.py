"""docs/upstream.md documents both adapters and every setting of the `nhsa` one.

Generated from the code, so the page cannot drift: every protocol of the adapters' name table,
every field of a profile (`Profile`, and each list of `[refusals]`) in the profile table, every
`[nhsa]` key (`NhsaConfig`) in the configuration table. A setting added to the code without a
row here fails this test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from terminald.config import NhsaConfig
from terminald.upstream.adapters import ADAPTERS
from terminald.upstream.nhsa.profiles import Profile, Refusals

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_MD = ROOT / "docs" / "upstream.md"
# Not a setting: a profile's name is its file's (a `name` key in a file is refused).
NOT_SETTINGS = {"name"}
# Profile fields that are TOML tables, written `[table]` (and `[refusals] <list>` per list).
TABLES = {"limits", "refusals"}


def _section(text: str, heading: str) -> str:
    """The text under `heading` (a line of #s), up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.MULTILINE)
    assert match, f"docs/upstream.md has no heading {heading!r}"
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def _first_cells(section: str) -> set[str]:
    """The first cell of every table row of `section`, as written."""
    cells = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells.add(line.split("|")[1].strip())
    return cells


@pytest.fixture(scope="module")
def doc() -> str:
    return UPSTREAM_MD.read_text(encoding="utf-8")


def test_both_adapters_are_documented(doc: str) -> None:
    adapters = _section(doc, "Adapters")
    table = _first_cells(doc.split("## Adapters")[0])
    for protocol, target in ADAPTERS.items():
        assert f'`"{protocol}"`' in " ".join(table), f"protocol {protocol!r} missing from the table at the top"
        assert f'"{protocol}": "{target}"' in adapters, f"the name table's {protocol!r} entry is not quoted as it is"
    assert "## v1 in brief" in doc and "## The `nhsa` adapter" in doc


def test_every_profile_setting_has_a_row(doc: str) -> None:
    rows = _first_cells(_section(doc, "Profile settings"))
    expected = {f"`{name}`" for name in Profile.model_fields if name not in NOT_SETTINGS | TABLES}
    expected |= {f"`[{name}]`" for name in TABLES - {"refusals"}}
    expected |= {f"`[refusals] {name}`" for name in Refusals.model_fields}
    missing = sorted(expected - rows)
    assert not missing, f"profile settings without a row in docs/upstream.md, 'Profile settings': {missing}"
    unknown = sorted(rows - expected - {"key"})
    assert not unknown, f"rows of docs/upstream.md, 'Profile settings', that are no setting: {unknown}"


def test_every_nhsa_config_key_has_a_row(doc: str) -> None:
    rows = _first_cells(_section(doc, "Configuration: `[nhsa]`"))
    expected = {f"`{name}`" for name in NhsaConfig.model_fields}
    missing = sorted(expected - rows)
    assert not missing, f"[nhsa] keys without a row in docs/upstream.md: {missing}"
    unknown = sorted(rows - expected - {"key"})
    assert not unknown, f"rows of docs/upstream.md's [nhsa] table that are no key: {unknown}"


def test_the_table_finder_sees_a_missing_row() -> None:
    # The check above is not vacuous: a table without a setting's row is caught.
    text = "## Profile settings\n\n| key | meaning |\n|---|---|\n| `infver` | x |\n\n## Next\n| `signtype` | y |\n"
    assert _first_cells(_section(text, "Profile settings")) == {"key", "`infver`"}

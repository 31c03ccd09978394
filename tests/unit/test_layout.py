"""The direction of dependency is part of the design: spool/ and drivers/
are reusable without the daemon, and without each other."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update((str(path.relative_to(ROOT)), a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module))
    return found


@pytest.mark.parametrize(("package", "forbidden"), [("spool", ("terminald", "drivers")),
                                                     ("drivers", ("terminald", "spool"))])
def test_package_does_not_import(package: str, forbidden: tuple[str, ...]) -> None:
    offenders = sorted(f"{where} imports {mod}" for where, mod in imported_modules(package)
                       if mod.split(".")[0] in forbidden)
    assert offenders == []


def test_the_checker_sees_imports() -> None:
    # Guard against a checker that finds nothing: terminald does import both.
    mods = {mod.split(".")[0] for _, mod in imported_modules("terminald")}
    assert {"spool", "drivers"} <= mods

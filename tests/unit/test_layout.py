"""The direction of dependency is part of the design: spool/ and drivers/
are reusable without the daemon, and without each other; no two modules
import each other; metrics observe the daemon, they never sit above it.

`python -m tests.unit.test_layout` prints the import tower: the longest chain
of module-level imports inside the three packages (TYPE_CHECKING and
function-level imports excluded), and any circle left.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
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


# -- the import graph of the three packages ---------------------------------------------------
PACKAGES = ("spool", "drivers", "terminald")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not in a function, not under TYPE_CHECKING."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _top_level_imports(node.body)
            yield from _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _top_level_imports(block)
        elif isinstance(node, ast.With):
            yield from _top_level_imports(node.body)


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The package modules an import statement loads (`from a import b`: a.b when it is a module)."""
    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        return {m for a in node.names if (m := known(a.name))}
    base = node.module or ""
    if node.level:
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        here = here[: len(here) - node.level + 1]
        base = ".".join([*here, node.module] if node.module else here)
    found = set()
    for alias in node.names:
        target = known(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules else known(base)
        if target:
            found.add(target)
    return found


def import_graph(*, every_import: bool) -> dict[str, set[str]]:
    """module -> the package modules it imports. `every_import`: also those in functions and
    under TYPE_CHECKING (a circle through them is still a circle to the reader)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = ([n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)] if every_import
                 else list(_top_level_imports(tree.body)))
        graph[module] = set().union(*(_targets(module, path, n, modules) for n in nodes)) - {module}
    return graph


def two_module_circles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted({(a, b) for a, deps in graph.items() for b in deps if a < b and a in graph.get(b, set())})


def circle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of imports (its modules, the first repeated at the end), or [] when none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = "open"
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[module] = "done"
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


def tower(graph: dict[str, set[str]]) -> list[str]:
    """The longest chain of imports, each module importing the next (the graph has no circle)."""
    best: dict[str, list[str]] = {}

    def longest(module: str) -> list[str]:
        if module not in best:
            best[module] = [module, *max((longest(d) for d in sorted(graph[module])), key=len, default=[])]
        return best[module]

    return max((longest(m) for m in sorted(graph)), key=len)


def test_no_two_modules_import_each_other() -> None:
    # Every import counts here, even one inside a function or under TYPE_CHECKING: issue #13
    # found escpos <-> render (in functions), spool errors <-> records and upload answers <->
    # errors (TYPE_CHECKING). Give the shared piece its own module, or pass it in.
    assert two_module_circles(import_graph(every_import=True)) == []


def test_module_level_imports_form_no_circle() -> None:
    # What runs at import time: a circle there depends on import order (and makes the tower endless).
    assert circle(import_graph(every_import=False)) == []


def test_metrics_observe_the_daemon_and_never_import_it() -> None:
    graph = import_graph(every_import=True)
    assert "terminald.daemon" not in graph["terminald.metrics"]
    assert "terminald.metrics" in graph["terminald.daemon"]  # the composition root builds it


def test_the_graph_sees_imports_of_every_kind() -> None:
    # Guard against a checker that finds nothing: one module-level, one relative, one in a function.
    top, every = import_graph(every_import=False), import_graph(every_import=True)
    assert "terminald.daemon" in top["terminald.app"]
    assert "drivers.printers.decode" in top["drivers.printers.render"]
    assert "drivers.printers.render" in every["drivers.printers.escpos"] - top["drivers.printers.escpos"]
    assert len(tower(top)) > 5


if __name__ == "__main__":
    graph = import_graph(every_import=False)
    chain = tower(graph)
    print(f"import tower: {len(chain)} floors: {' -> '.join(chain)}")
    every = import_graph(every_import=True)
    print("two-module circles:", ", ".join(" <-> ".join(c) for c in two_module_circles(every)) or "none")
    print("a longer circle (imports in functions and TYPE_CHECKING too):", " -> ".join(circle(every)) or "none")

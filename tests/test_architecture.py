"""The arrows between the project's parts (DEVELOPERS' house rules), checked on every
import statement in the code, function-local imports included:

    core  <-  schedules, packing  <-  exact, solvers  <-  mallocgame  <-  api  <-  cli  <-  harness

``cosma.api`` is the face (the Python API): it may import every part but the CLI and the
harness; the CLI is a layer over it, and ``cosma/__init__.py`` re-exports it lazily.

The IR imports nothing of the project; the judge (validator, cost) imports no solver; the
exact side and the game never import each other; nothing imports the harness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cosma", "solvers", "mallocgame")

# part -> the parts it may import (itself always allowed)
ALLOWED = {
    "core": set(),
    "schedules": {"core"},
    "packing": {"core"},
    "exact": {"core", "schedules", "packing"},
    "solvers": {"core", "schedules", "packing"},
    "mallocgame": {"core", "schedules", "packing", "solvers"},
    "api": {"core", "schedules", "packing", "exact", "solvers", "mallocgame"},  # cosma/api.py, the face
    "cli": {"core", "schedules", "packing", "exact", "solvers", "mallocgame", "api", "top"},
    "top": {"core", "api"},  # cosma/__init__.py: re-exports the api lazily
    "harness": {"core", "schedules", "packing", "exact", "solvers", "mallocgame", "api", "cli", "top"},
}


def part_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("solvers", "mallocgame"):
        return parts[0]
    if len(parts) == 1:
        return "top"
    return "cli" if parts[1] == "__main__" else parts[1]


def project_imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, at any depth in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in PACKAGES and _exists(m)}


def _exists(module: str) -> bool:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    return {name: project_imports(path) for name, path in modules().items()}


def test_parts_import_only_downward():
    wrong = []
    for module, imports in import_graph().items():
        src = part_of(module)
        for target in imports:
            dst = part_of(target)
            if dst != src and dst not in ALLOWED[src]:
                wrong.append(f"{module} ({src}) imports {target} ({dst})")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_ir_imports_nothing_of_the_project():
    assert import_graph()["cosma.core.ir"] == set()


@pytest.mark.parametrize("judge", ["cosma.core.validator", "cosma.core.cost"])
def test_the_judge_imports_only_the_ir_and_the_analysis(judge):
    assert import_graph()[judge] <= {"cosma.core.ir", "cosma.core.analysis"}


def test_no_package_cycles():
    import networkx as nx

    graph = nx.DiGraph()
    for module, imports in import_graph().items():
        for target in imports:
            if part_of(target) != part_of(module):
                graph.add_edge(part_of(module), part_of(target))
    assert nx.is_directed_acyclic_graph(graph), list(nx.simple_cycles(graph))


def test_every_solver_is_an_installed_entry_point():
    """The interface names no implementer: every ``@register`` in the code is declared in
    pyproject.toml, and every declared solver imports and registers."""
    from cosma.core.interface import load_all, solver_names

    assert sorted(load_all()) == solver_names()
    assert {"auto", "exact", "ilp", "dnc", "best-greedy", "xla-msa", "muzero"} <= set(solver_names())

"""The package map of ``docs/architecture.md``, enforced: which room may import what.

Every ``import`` of every module under ``src/rom_pipeline`` is read with :mod:`ast` (module-level
and function-level alike: a lazy import is still a dependency), resolved to the project module it
names, and checked against the rules. Nothing is imported, so the test is fast and a rule broken in
a file that would fail to import is still reported.
"""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rom_pipeline"

SCIENCE = ("physics", "rom", "evaluation")
# Rooms a science module must not reach: Kedro glue, command-line tools, Kedro wiring and settings.
ABOVE_SCIENCE = ("cli", "framework", "pipelines", "datasets", "settings", "pipeline_registry")
# Import cycles allowed (none: the session state the hooks store for the pipeline registry lives
# in framework/session_state.py). The test fails on any new cycle, and on a listed one once gone.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    """``{dotted name: path}`` of every module and package of ``rom_pipeline``."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(project modules, top-level third-party packages) that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    project, external = set(), set()

    def add(target: str) -> None:
        if target.split(".")[0] != "rom_pipeline":
            external.add(target.split(".")[0])
            return
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            project.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:  # `from pkg import module` depends on pkg.module
                full = f"{base}.{alias.name}"
                add(full if full in MODULES else base)
    return project, external


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _violations(rooms: tuple[str, ...], forbidden_rooms: tuple[str, ...], no_kedro: bool) -> list[str]:
    found = []
    for name, (project, external) in sorted(GRAPH.items()):
        if _room(name) not in rooms:
            continue
        found += [f"{name} imports {t}" for t in sorted(project) if _room(t) in forbidden_rooms]
        if no_kedro:
            found += [f"{name} imports {e}" for e in sorted(external) if e.startswith("kedro")]
    return found


def test_the_graph_sees_the_package():
    # Guards the rules below against passing vacuously: the parser must see real edges.
    assert {"physics", "rom", "evaluation", "execution", "framework", "cli", "pipelines", "datasets"} <= {
        _room(m) for m in MODULES}
    assert "rom_pipeline.execution.parallel" in GRAPH["rom_pipeline.framework.runner"][0]
    assert "kedro" in GRAPH["rom_pipeline.framework.runner"][1]
    assert "rom_pipeline.physics.dorsogna" in GRAPH["rom_pipeline.execution.runs"][0]  # a lazy import


@pytest.mark.parametrize("room", SCIENCE)
def test_science_rooms_import_no_kedro_and_nothing_above_them(room):
    assert _violations((room,), ABOVE_SCIENCE, no_kedro=True) == []


def test_execution_imports_no_kedro_and_no_glue():
    assert _violations(("execution",), ABOVE_SCIENCE, no_kedro=True) == []


def test_datasets_only_reach_execution_and_science():
    assert _violations(("datasets",), ("cli", "framework", "pipelines", "settings", "pipeline_registry"),
                       no_kedro=False) == []


def test_nothing_imports_the_command_line_tools():
    assert [f"{n} imports {t}" for n, (p, _) in sorted(GRAPH.items()) if _room(n) != "cli"
            for t in sorted(p) if _room(t) == "cli"] == []


def test_no_import_cycles_among_project_modules():
    graph = {name: set(project) for name, (project, _) in GRAPH.items()}
    for cycle in KNOWN_CYCLES:  # must still exist, or the exception is stale
        a, b = sorted(cycle)
        assert b in graph[a] and a in graph[b], f"{sorted(cycle)} is no longer a cycle: remove it from KNOWN_CYCLES"
        graph[a].discard(b)
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle among rom_pipeline modules: {' -> '.join(error.args[1])}")

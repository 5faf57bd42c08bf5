"""The package's import graph has no cycles - counting imports inside functions, which hide a cycle from
Python's import machinery but not from a reader (issue 13: runner <-> cells, metrics <-> exposure,
cells <-> training). Imports under ``if TYPE_CHECKING:`` are annotations only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, from pyproject's setuptools package-dir mapping."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    mods: dict[str, Path] = {}
    for pkg in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]:
        top = max((p for p in mapping if pkg == p or pkg.startswith(p + ".")), key=len)
        folder = ROOT / mapping[top] / Path(*pkg[len(top):].strip(".").split(".")) if pkg != top \
            else ROOT / mapping[top]
        for f in folder.glob("*.py"):
            mods[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return mods


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_graph() -> dict[str, set[str]]:
    """Module -> the recgym modules it imports anywhere in its body (TYPE_CHECKING blocks excepted)."""
    mods = _modules()

    def resolve(name: str) -> str | None:  # "recgym.agents.AGENTS" -> "recgym.agents"
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        hidden = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
        targets: set[str | None] = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("recgym"):
                targets |= {resolve(f"{node.module}.{a.name}") for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.startswith("recgym")}
        graph[mod] = {t for t in targets if t and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_imports_hidden_in_functions():
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b"]]
    assert "recgym.experiments.cells" in import_graph()["recgym.experiments.runner"]  # a function-level import


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50, f"the module scan found only {len(graph)} modules: the package-dir mapping changed?"
    assert cycles(graph) == []

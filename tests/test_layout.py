"""Import contract of the source tree: rooms import only downward.

    common -> encoders -> envs -> agents -> experiments -> benchmarks -> cli

A module may import its own room and the rooms before it, never one after it; function-level imports count
as much as top-level ones. Checked on the source (ast), so a violation fails here before it becomes an
import cycle or a heavy dependency of a light room.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# (room, source folder or file, package it installs as), in the allowed import order.
ROOMS = [
    ("common", "recgym/common", "recgym.common"),
    ("encoders", "encoders", "recgym.encoders"),
    ("envs", "envs", "recgym.envs"),
    ("agents", "agents", "recgym.agents"),
    ("experiments", "experiments", "recgym.experiments"),
    ("benchmarks", "benchmarks", "recgym.benchmarks"),
    ("cli", "recgym/cli.py", "recgym.cli"),
]
RANK = {name: i for i, (name, _, _) in enumerate(ROOMS)}
ROOT_FILES = {"recgym/__init__.py": "common", "recgym/__main__.py": "cli"}


def _room_of_module(module: str) -> str | None:
    """Room of an absolute module name (``None``: not recgym, or the root package itself)."""
    if module == "recgym":
        return None  # the package root: version and env registration, importable from anywhere
    for name, _, package in sorted(ROOMS, key=lambda r: -len(r[2])):
        if module == package or module.startswith(package + "."):
            return name
    if module.startswith("recgym.") and module.split(".")[1] == "__main__":
        return "cli"
    return None


def _sources() -> list[tuple[str, Path, str]]:
    """(room, file, its module name) of every source file of every room."""
    out = []
    for name, folder, package in ROOMS:
        path = REPO / folder
        files = [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
        for f in files:
            rel = f.relative_to(path).with_suffix("") if path.is_dir() else Path()
            parts = [p for p in rel.parts if p != "__init__"]
            module = ".".join([package, *parts]) if parts else package
            if path.is_dir() and f.name == "__init__.py":
                module = ".".join([package, *rel.parts[:-1]]) if rel.parts[:-1] else package
            out.append((name, f, module))
    for rel, name in ROOT_FILES.items():
        out.append((name, REPO / rel, "recgym" if rel.endswith("__init__.py") else "recgym.__main__"))
    return out


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved, at any depth."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # "from recgym import envs" imports a room too
            if target == "recgym":
                found += [(node.lineno, f"recgym.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def test_every_room_has_sources():
    rooms = {name for name, _, _ in _sources()}
    assert rooms == set(RANK)


def test_rooms_import_only_downward():
    violations = []
    for room, path, module in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in _imports(tree, module, path.name == "__init__.py"):
            other = _room_of_module(target)
            if other is not None and RANK[other] > RANK[room]:
                violations.append(f"{path.relative_to(REPO)}:{line}: {room} imports {target} ({other})")
    assert not violations, "imports against the room order:\n" + "\n".join(violations)


@pytest.mark.parametrize("source, expected", [
    ("from recgym.agents import make_agent", "recgym.agents"),
    ("def f():\n    import recgym.experiments.config\n", "recgym.experiments.config"),
    ("from ..agents import base", "recgym.agents"),
    ("import importlib\nimportlib.import_module('recgym.cli')", "recgym.cli"),
])
def test_the_checker_sees_every_kind_of_import(source, expected):
    """A violation hidden in a function, a relative import or importlib is still found."""
    found = [t for _, t in _imports(ast.parse(source), "recgym.envs.core", False)]
    assert expected in found or any(t.startswith(expected) for t in found)
    assert RANK[_room_of_module(expected)] > RANK["envs"]


def test_one_source_for_the_version_the_world_names_and_encoder_names():
    import importlib.metadata
    import re

    import recgym
    from recgym.envs import factory
    from recgym.experiments import config

    project = (REPO / "pyproject.toml").read_text().split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.M) and re.search(r'^dynamic\s*=\s*\[.*"version"', project, re.M)
    assert importlib.metadata.version("recgym") == recgym.__version__
    assert config.KNOWN_WORLDS is factory.KNOWN_WORLDS and config.REAL_WORLDS is factory.REAL_WORLDS
    # Encoder names ("hashing", a model folder) are resolved in one place: envs.factory.make_encoder.
    resolvers = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for _, path, _ in _sources() if path.name != "factory.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value == "hashing"
                                                 for c in (node.left, *node.comparators))
    ]
    assert not resolvers, f"encoder names resolved outside envs.factory.make_encoder: {resolvers}"

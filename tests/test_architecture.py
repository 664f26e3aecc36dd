"""The package's layers, read from the source with ``ast``: imports run one way.

Every ``import`` and ``from ... import`` of a memnets module counts, at module
level or inside a function (a lazy import is an import all the same).  The
layers, top to bottom, and what each may import, are the table of
``docs/architecture.md``:

    cli     memnets (the package), memnets.__main__, memnets.cli, memnets.demo
    train   memnets.train.*
    tasks   memnets.tasks.*
    models  memnets.models.*
    layers  memnets.layers.*
    leaves  memnets.cells.*, memnets.data.*, memnets.metrics.*, memnets.config,
            memnets.figures, memnets.errors

A module may import its own layer and any layer below; a leaf may import only
itself and :mod:`memnets.errors`.  No two memnets modules may import each other
in a cycle.  Names given to ``importlib`` at run time (the task discovery of
:mod:`memnets.tasks`) are not imports of the source and are not counted.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# layer -> rank (higher may import lower); "leaf" groups import only themselves and errors
RANKS = {"cli": 5, "train": 4, "tasks": 3, "models": 2, "layers": 1, "leaf": 0}
LAYER_OF = {
    "memnets": "cli",  # the package's __init__: re-exports cells and layers for users
    "memnets.__main__": "cli",
    "memnets.cli": "cli",
    "memnets.demo": "cli",  # `memnets demo`: uses the public API like a user would
    "memnets.train": "train",
    "memnets.tasks": "tasks",
    "memnets.models": "models",
    "memnets.layers": "layers",
    "memnets.cells": "leaf",
    "memnets.data": "leaf",
    "memnets.metrics": "leaf",
    "memnets.config": "leaf",
    "memnets.figures": "leaf",
    "memnets.errors": "leaf",
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """``{module: {imported memnets module: first line}}`` for every module under
    ``root/memnets``; ``from pkg import name`` counts as ``pkg.name`` when that is
    a module, else as ``pkg``."""
    files = {module_name(p, root): p for p in sorted((root / "memnets").rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package upwards
                    package = mod.split(".") if is_package else mod.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join(package + ([base] if base else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in files else base)
            for t in targets:
                if (t == "memnets" or t.startswith("memnets.")) and t != mod:
                    edges.setdefault(t, node.lineno)
        graph[mod] = edges
    return graph


def layer_of(mod: str) -> str | None:
    """The layer of ``mod``: that of ``memnets.X`` for every module under ``memnets.X``
    (``memnets`` alone is the package's ``__init__``)."""
    return LAYER_OF.get(group_of(mod))


def group_of(mod: str) -> str:
    """``memnets.cells.lstm`` -> ``memnets.cells``: the unit a leaf may import freely."""
    return ".".join(mod.split(".")[:2])


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """One line per import that the layer table forbids (or a module it does not place)."""
    bad = []
    for mod, edges in sorted(graph.items()):
        here = layer_of(mod)
        if here is None:
            bad.append(f"{mod}: in no layer (add it to the table)")
            continue
        for target, line in sorted(edges.items()):
            there = layer_of(target)
            if there is None:
                bad.append(f"{mod}:{line} imports {target}, which is in no layer")
            elif here == "leaf":
                if group_of(target) not in (group_of(mod), "memnets.errors"):
                    bad.append(f"{mod}:{line} (a leaf) imports {target}")
            elif RANKS[there] > RANKS[here]:
                bad.append(f"{mod}:{line} ({here}) imports {target} ({there}), a higher layer")
    return bad


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_path(graph, c) for c in components]


def _cycle_path(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A path ``a -> b -> ... -> a`` inside one strongly connected component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:  # breadth first, back to start
        v = queue.pop(0)
        for w in graph[v]:
            if w == start:
                return paths[v] + [start]
            if w in members and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return component  # pragma: no cover - a component always closes


GRAPH = import_graph(SRC)


def test_the_graph_sees_lazy_and_module_level_imports():
    """Smoke test of the reader on this tree: both kinds of import are found."""
    assert "memnets.cells.base" in GRAPH["memnets.layers.recurrent"]
    assert "memnets.figures" in GRAPH["memnets.tasks.babi"]  # imported inside a function
    assert "memnets.train.distributed" in GRAPH["memnets.train.trainer"]  # from pkg import mod


def test_no_import_cycle_between_memnets_modules():
    cycles = import_cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_a_higher_layer():
    bad = upward_imports(GRAPH)
    assert not bad, "imports against the layers of docs/architecture.md:\n" + "\n".join(bad)


def test_config_is_a_leaf_that_imports_only_the_standard_library_yaml_and_errors():
    tree = ast.parse((SRC / "memnets" / "config.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            roots.add(node.module)
    third_party = {r for r in roots if r.split(".")[0] not in _stdlib() and r != "__future__"}
    assert third_party == {"yaml", "memnets.errors"}


def _stdlib() -> set[str]:
    import sys

    return set(sys.stdlib_module_names)


@pytest.mark.parametrize("bad", ["cycle", "upward", "leaf", "unplaced"])
def test_the_checks_catch_what_they_forbid(tmp_path, bad):
    """The checker against a small made-up package with one fault of each kind."""
    pkg = tmp_path / "memnets"
    files = {
        "__init__.py": "from memnets import layers\n",
        "errors.py": "",
        "config.py": "from memnets.errors import ConfigError\n",
        "cells/__init__.py": "from memnets.cells.base import Cell\n",
        "cells/base.py": "from memnets.errors import ConfigError\n",
        "layers/__init__.py": "from memnets.layers.recurrent import Recurrent\n",
        "layers/recurrent.py": "from memnets.cells.base import Cell\n",
        "tasks/__init__.py": "",
        "tasks/base.py": "from memnets.config import DataConfig\n",
    }
    fault = {
        "cycle": ("config.py", "def f():\n    from memnets.tasks import get_task\n"),
        "upward": ("layers/recurrent.py", "from memnets.tasks.base import Task\n"),
        "leaf": ("config.py", "from memnets.cells.base import Cell\n"),
        "unplaced": ("stacks/__init__.py", "from memnets.cells.base import Cell\n"),
    }[bad]
    files[fault[0]] = files.get(fault[0], "") + fault[1]
    if bad == "cycle":
        files["tasks/__init__.py"] = "from memnets.tasks.base import Task\n"
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    graph = import_graph(tmp_path)
    cycles, upward = import_cycles(graph), upward_imports(graph)
    if bad == "cycle":
        assert cycles == [["memnets.config", "memnets.tasks", "memnets.tasks.base",
                           "memnets.config"]]
        assert any("memnets.config:3 (a leaf) imports memnets.tasks" in b for b in upward)
    else:
        assert not cycles
        assert len(upward) == 1, upward
        assert {"upward": "memnets.layers.recurrent:2 (layers) imports memnets.tasks.base "
                          "(tasks), a higher layer",
                "leaf": "memnets.config:2 (a leaf) imports memnets.cells.base",
                "unplaced": "memnets.stacks: in no layer"}[bad] in upward[0]


def test_test_files_have_unique_basenames():
    """pytest imports test files by basename (tests/ has no __init__.py): two files of
    one name in two folders would collide."""
    names = Counter(p.name for p in (REPO / "tests").rglob("*.py"))
    assert not [n for n, k in names.items() if k > 1]

"""The data layer's layout: one module per on-disk format, and no import circle among them."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

DATA = REPO / "metassl" / "data"
FORMATS = ("idx", "cifar", "svhn", "digits", "imagefolder", "csvfile", "npz", "imagenet")


def data_modules() -> dict[str, Path]:
    return {f"metassl.data.{p.stem}": p for p in sorted(DATA.glob("*.py")) if p.stem != "__init__"}


def imported(path: Path, package: str = "metassl.data") -> set[str]:
    """Every module that `path` imports, at the top or inside a function, as dotted names;
    `from metassl.data import x` counts as importing metassl.data.x where x is a module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: {m for m in imported(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_data_module_imports_one_that_imports_it_back():
    graph = import_graph(data_modules())
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_a_deferred_import_circle(tmp_path):
    (tmp_path / "a.py").write_text("from metassl.data.b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from metassl.data import a\n")
    modules = {"metassl.data.a": tmp_path / "a.py", "metassl.data.b": tmp_path / "b.py"}
    assert find_cycle(import_graph(modules)) == ["metassl.data.a", "metassl.data.b", "metassl.data.a"]


@pytest.mark.parametrize("name", FORMATS)
def test_each_on_disk_format_has_its_own_module_that_only_sources_dispatches_to(name):
    assert (DATA / f"{name}.py").is_file()
    graph = import_graph(data_modules())
    importers = {m for m, deps in graph.items() if f"metassl.data.{name}" in deps}
    # Formats share what lies below them (arrays, images, holdout, locate), never each other,
    # except that svhn and digits take idx's digit class names.
    allowed = {"metassl.data.sources"} | ({"metassl.data.svhn", "metassl.data.digits"} if name == "idx" else set())
    assert importers <= allowed, importers


def test_the_array_type_and_its_checks_import_no_reader():
    graph = import_graph(data_modules())
    assert graph["metassl.data.arrays"] == set()



def test_the_data_layer_builds_on_nothing_above_it():
    # The API, engine and methods build on the data layer; an import back (even a deferred one)
    # would make the package's import order a circle through them.
    above = ("metassl.api", "metassl.engine", "metassl.methods", "metassl.bench", "metassl.cli")
    for name, path in data_modules().items():
        up = sorted(m for m in imported(path) if m.startswith(above))
        assert not up, f"{name} imports {up}"

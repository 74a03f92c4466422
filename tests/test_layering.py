"""The layering of DESIGN.md, checked on the source: which package may import which, no import
cycle, no module over 400 lines.

Imports are read with `ast` from every module of `gancmp/`, at any depth (inside functions too:
a lazy import is still an edge), so the test needs no import of the package.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "gancmp")
MAX_LINES = 400

_LOWER = {"nets", "data", "train", "sweep", "report", "metrics"}
# layer -> the layers it must never import (a layer is the name after `gancmp.`)
_NEVER = {
    "losses": _LOWER,
    "penalties": _LOWER,
    "nets": {"train", "sweep", "report", "metrics"},
    "data": {"train", "sweep", "report", "metrics"},
    "metrics": {"train", "sweep", "report"},
    "train": {"sweep", "report"},
}
# layer -> the only layers (or modules) it may import: the report reads records — through the
# records store, `gancmp.sweep.store` — with the plain helpers; storage is the helper every layer
# may use, so it imports nothing of the package
_ONLY = {"report": {"report", "storage", "sweep.store"}, "storage": {"storage"}}

def module_files(package: str = PACKAGE) -> dict[str, str]:
    """{dotted module name: file path} of every .py file under `package`."""
    top = os.path.dirname(package)
    out = {}
    for folder, _, files in os.walk(package):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                parts = os.path.relpath(path, top)[:-3].split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, source: str, modules: set[str], is_package: bool = False
            ) -> list[tuple[str, int, bool]]:
    """(imported gancmp module, line, at module level) for every import in `source`, the text
    of module `name`. `from A import b` counts as an import of `A.b` when that is a module of
    `modules`, else of `A`; relative imports are resolved. Imports inside a function body are
    not at module level (they run only when the function does)."""
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = name.split(".")[:len(name.split(".")) - child.level + is_package]
                    base = ".".join(pkg + ([child.module] if child.module else []))
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append((sub if sub in modules else base, child.lineno, top))
            visit(child, top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(source), True)
    return [(m, line, top) for m, line, top in found if m == "gancmp" or m.startswith("gancmp.")]


def layer(module: str) -> str:
    """"nets" for gancmp.nets.dcgan, "storage" for gancmp.storage, "gancmp" for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def violation(importer: str, imported: str) -> str | None:
    """The rule that `importer` importing `imported` breaks, or None."""
    src, dst = layer(importer), layer(imported)
    if dst in _NEVER.get(src, ()):
        return f"{src} must not import {', '.join(sorted(_NEVER[src]))}"
    module = imported.removeprefix("gancmp.")
    if src in _ONLY and dst not in _ONLY[src] and module not in _ONLY[src]:
        return f"{src} may import only {', '.join(sorted(_ONLY[src]))}"
    return None


def _graph() -> tuple[dict[str, str], dict[str, list[tuple[str, int, bool]]]]:
    files = module_files()
    edges = {}
    for name, path in files.items():
        with open(path, encoding="utf-8") as f:
            edges[name] = imports(name, f.read(), set(files), path.endswith("__init__.py"))
    return files, edges


def test_imports_follow_the_layers():
    files, edges = _graph()
    broken = []
    for importer, targets in edges.items():
        for imported, line, _ in targets:
            rule = violation(importer, imported)
            if rule:
                where = os.path.relpath(files[importer], ROOT)
                broken.append(f"{where}:{line} imports {imported}: {rule} (DESIGN.md Layout)")
    assert not broken, "\n".join(broken)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _cycle_message(cycle: list[str], edges: dict[str, list[tuple[str, int, bool]]]) -> str:
    steps = [cycle[0]]
    for a, b in zip(cycle, cycle[1:], strict=False):
        line, top = next((line, top) for t, line, top in edges[a] if t == b)
        steps.append(f"{b} (line {line} of {a}{'' if top else ', inside a function'})")
    return "import cycle: " + " -> ".join(steps)


def test_no_import_cycle():
    """Among the imports that run when a module is imported (module level)."""
    _, edges = _graph()
    graph = {m: {t for t, _, top in targets if top and t != m} for m, targets in edges.items()}
    cycle = find_cycle(graph)
    assert cycle is None, _cycle_message(cycle, edges)


def test_no_lazy_import_closes_a_cycle():
    """Counting imports inside functions too: a lazy import must not be what keeps a cycle from
    failing at import time."""
    _, edges = _graph()
    graph = {m: {t for t, _, _ in targets if t != m} for m, targets in edges.items()}
    cycle = find_cycle(graph)
    assert cycle is None, _cycle_message(cycle, edges)


def test_no_module_over_400_lines():
    too_long = []
    for path in module_files().values():
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            too_long.append(f"{os.path.relpath(path, ROOT)}: {n} lines (at most {MAX_LINES})")
    assert not too_long, "\n".join(too_long)


# --- the checker itself finds what it should ----------------------------------------------------

def test_the_checker_sees_lazy_relative_and_from_imports():
    modules = {"gancmp.nets", "gancmp.nets.dcgan", "gancmp.train", "gancmp.train.loop",
               "gancmp.storage"}
    source = ("from gancmp import storage\n"
              "from . import dcgan\n"
              "from ..train.loop import run\n"
              "def f():\n"
              "    import gancmp.train.loop as loop\n"
              "    return loop\n")
    found = imports("gancmp.nets.mlp", source, modules)
    assert found == [("gancmp.storage", 1, True), ("gancmp.nets.dcgan", 2, True),
                     ("gancmp.train.loop", 3, True), ("gancmp.train.loop", 5, False)]
    assert imports("gancmp.nets", "from . import dcgan\n", modules, is_package=True) == [
        ("gancmp.nets.dcgan", 1, True)]
    assert violation("gancmp.nets.mlp", "gancmp.train.loop") == (
        "nets must not import metrics, report, sweep, train")
    assert violation("gancmp.report.build", "gancmp.methods") == (
        "report may import only report, storage, sweep.store")
    assert violation("gancmp.report.records", "gancmp.sweep.store") is None
    assert violation("gancmp.report.build", "gancmp.sweep.runner") is not None
    assert violation("gancmp.train.loop", "gancmp.nets.dcgan") is None
    assert violation("gancmp.report.build", "gancmp.storage") is None


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b", "d"}, "b": set(), "d": {"d2"}, "d2": {"d"}}, ["d", "d2", "d"]),
])
def test_find_cycle(graph, expected):
    assert find_cycle(graph) == expected

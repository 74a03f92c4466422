"""The layering of DESIGN.md, checked on the source: which package may import which, no import
cycle, no module over 500 lines ("a file may reach about 500 lines where it reads top to bottom"),
no function over 60 lines, no module-level dict keyed by `repr(...)` or `id(...)` (a memo table
keyed by a string or an address stands in for an owner and a hashable key), no module-level memo
table at all outside the registries and constant tables (`_MODULE_MEMOS`: caches are owned by an
object whose lifetime is the run's); and README.md and the notes under experiments/ carry no
merge-conflict markers.

Everything is read with `ast` from every module of `gancmp/`, at any depth (imports inside
functions too: a lazy import is still an edge), so the test needs no import of the package.
"""

from __future__ import annotations

import ast
import os

import pytest

from tests.memo_tables import is_dict, module_memos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "gancmp")
MAX_LINES = 500
MAX_FUNCTION_LINES = 60  # `def` line to last line (decorators excluded), at any nesting
# functions allowed to be longer, "path:qualified name", each with its reason
_LONG_FUNCTIONS = {
    "gancmp/config.py:base_config",  # a schema table: one field per line, read as a list
}

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
# layer -> the only layers (or modules) it may import: the report reads records
# (`gancmp.records`) with the plain helpers; records are plain data (a Trial only as a type
# hint), so reading them pulls in no trainer; storage is the helper every layer may use, so it
# imports nothing of the package
_ONLY = {"report": {"report", "storage", "records"}, "records": {"records", "storage", "trial"},
         "storage": {"storage"}}

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


def test_no_module_over_500_lines():
    too_long = []
    for path in module_files().values():
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            too_long.append(f"{os.path.relpath(path, ROOT)}: {n} lines (at most {MAX_LINES})")
    assert not too_long, "\n".join(too_long)


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """(qualified name, line, lines) of every function or method of `source`, at any nesting,
    longer than `limit` lines: from its `def` line (decorators excluded) to its last line."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    n = child.end_lineno - child.lineno + 1
                    if n > limit:
                        found.append((name, child.lineno, n))
                name += "."
            visit(child, name)

    visit(ast.parse(source), "")
    return found


def test_no_function_over_60_lines():
    too_long, excused = [], set()
    for path in module_files().values():
        where = os.path.relpath(path, ROOT).replace(os.sep, "/")
        with open(path, encoding="utf-8") as f:
            for name, line, n in long_functions(f.read()):
                if f"{where}:{name}" in _LONG_FUNCTIONS:
                    excused.add(f"{where}:{name}")
                else:
                    too_long.append(f"{where}:{line} {name}: {n} lines "
                                    f"(at most {MAX_FUNCTION_LINES})")
    assert not too_long, "\n".join(too_long)
    stale = _LONG_FUNCTIONS - excused
    assert not stale, f"no longer over {MAX_FUNCTION_LINES} lines, drop the exception: {stale}"


_KEY_CALLS = {"repr", "id"}


def _module_dicts(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and is_dict(node.value):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              and is_dict(node.value, node.annotation)):
            names.add(node.target.id)
    return names


def _calls_key_function(node: ast.AST, tainted: set[str]) -> bool:
    """Whether `node` calls `repr` or `id`, or reads a name in `tainted`."""
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
                and sub.func.id in _KEY_CALLS):
            return True
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id in tainted:
            return True
    return False


_SCOPES = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


def _own_nodes(scope: ast.AST):
    """The nodes of `scope` (a module or function) outside the functions nested in it."""
    for child in ast.iter_child_nodes(scope):
        if not isinstance(child, _SCOPES):
            yield child
            yield from _own_nodes(child)


def _nested_scopes(scope: ast.AST):
    """The functions directly inside `scope` (not inside another function of it)."""
    for child in ast.iter_child_nodes(scope):
        if isinstance(child, _SCOPES):
            yield child
        else:
            yield from _nested_scopes(child)


def _tainted_names(scope: ast.AST, enclosing: set[str]) -> set[str]:
    """`enclosing` (the tainted names of the scopes around `scope`) and the names `scope`
    assigns from an expression calling `repr` or `id`, or reading a tainted name (to a fixed
    point)."""
    tainted = set(enclosing)
    while True:
        before = len(tainted)
        for node in _own_nodes(scope):
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if node.value is not None and _calls_key_function(node.value, tainted):
                    tainted |= {n.id for t in targets for n in ast.walk(t)
                                if isinstance(n, ast.Name)}
        if len(tainted) == before:
            return tainted


def _dict_keys(node: ast.AST, dicts: set[str]) -> list[tuple[str, ast.AST]]:
    """(dict, key expression) of `node` if it reads or writes a dict of `dicts` by key:
    D[key], D.get(key) (setdefault, pop), key in D, key not in D."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return [(node.value.id, node.slice)] if node.value.id in dicts else []
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id in dicts
            and node.func.attr in {"get", "setdefault", "pop"} and node.args):
        return [(node.func.value.id, node.args[0])]
    if isinstance(node, ast.Compare):
        found, left = [], node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            if (isinstance(op, ast.In | ast.NotIn) and isinstance(right, ast.Name)
                    and right.id in dicts):
                found.append((right.id, left))
            left = right
        return found
    return []


def repr_or_id_keys(source: str) -> list[tuple[str, int]]:
    """(module-level dict, line) wherever `source` uses one of its module-level dicts with a key
    that calls `repr(...)` or `id(...)`, directly or through a name assigned from such a call in
    the same function (or a function around it, or at module level)."""
    tree = ast.parse(source)
    dicts = _module_dicts(tree)
    found = set()

    def visit(scope: ast.AST, enclosing: set[str]) -> None:
        tainted = _tainted_names(scope, enclosing)
        for node in _own_nodes(scope):
            for name, key in _dict_keys(node, dicts):
                if _calls_key_function(key, tainted):
                    found.add((name, node.lineno))
        for inner in _nested_scopes(scope):
            visit(inner, tainted)

    if dicts:
        visit(tree, set())
    return sorted(found, key=lambda f: (f[1], f[0]))


def test_no_module_dict_keyed_by_repr_or_id():
    """A memo table keyed by `repr(x)` or `id(x)`: key by the hashable value itself, or let an
    object own the cache (issue 21)."""
    broken = []
    for path in module_files().values():
        with open(path, encoding="utf-8") as f:
            for name, line in repr_or_id_keys(f.read()):
                broken.append(f"{os.path.relpath(path, ROOT)}:{line} {name} keyed by repr/id")
    assert not broken, "\n".join(broken)


# The module-level memos (`tests/memo_tables.py`: a `functools.cache`/`lru_cache` function, or a
# module dict a function writes) allowed, "path:name" -> why. Anything else that a run fills is
# owned by an object (issue 21; DESIGN.md: "Caches are owned ... keyed by hashable values"):
# `metrics.resources.EvalResources` (extractors, references, real sides, feature programs),
# `train.memory.MemoryProbe` (compiled memory) and `train.step.Programs` (the train programs),
# made once per sweep shard, Ray worker or run.
_MODULE_MEMOS = {
    # registries: names -> specs, filled by `register` (at import, or by a user module)
    "gancmp/losses.py:_REGISTRY": "registry", "gancmp/penalties.py:_REGISTRY": "registry",
    "gancmp/methods.py:_REGISTRY": "registry", "gancmp/nets/__init__.py:_REGISTRY": "registry",
    "gancmp/data/registry.py:_REGISTRY": "registry",
    "gancmp/metrics/networks.py:_NETWORKS": "registry",
    # constant tables: pure functions of a few hashable settings whose value follows from the
    # code alone (shapes, kernel taps, FLOP counts), computed lazily, small and read-only
    "gancmp/nets/inception.py:variable_shapes": "constant table",
    "gancmp/nets/layers.py:subpixel_taps": "constant table",
    "gancmp/nets/layers.py:compact_taps": "constant table",
    "gancmp/metrics/vit_features.py:variable_shapes": "constant table",
    "gancmp/metrics/vit_weights.py:_dinov2_shapes": "constant table",
    "gancmp/metrics/vit_weights.py:_clip_shapes": "constant table",
    "gancmp/sweep/plan.py:inception_flops": "constant table",
    "gancmp/sweep/plan.py:metric_network_flops": "constant table",
    # not a memo: the jax.lax functions `intercept` replaced, held only while a block is open
    "gancmp/emulation.py:_ORIGINALS": "patch state",
    # the process's datasets, as DESIGN.md asks ("data loaded once per process per dataset"):
    # the two loaded last, read-only, shared by a sweep's groups and its evaluators' references
    "gancmp/data/source.py:load": "process data",
}


def test_no_module_level_memo_outside_registries_and_constant_tables():
    """A process-global memo keeps what it holds (device memory of real features, compiled
    programs) for the process's life, and tests must clear it: a run's caches are owned by an
    object made for the run (`_MODULE_MEMOS` says what is allowed, and why)."""
    found = set()
    for path in module_files().values():
        with open(path, encoding="utf-8") as f:
            found |= {f"{os.path.relpath(path, ROOT)}:{name}" for name, _ in module_memos(f.read())}
    assert not found - set(_MODULE_MEMOS), "module-level memo tables (own them instead):\n" + (
        "\n".join(sorted(found - set(_MODULE_MEMOS))))
    stale = set(_MODULE_MEMOS) - found
    assert not stale, f"no longer module-level memos, drop the exceptions: {sorted(stale)}"


def conflict_markers(text: str) -> list[int]:
    """Lines (1-based) of `text` that are git merge-conflict markers."""
    return [i for i, line in enumerate(text.splitlines(), 1)
            if line.startswith(("<<<<<<< ", ">>>>>>> ")) or line.rstrip() == "======="]


def _notes() -> list[str]:
    notes = [os.path.join(ROOT, "README.md")]
    for folder, _, files in os.walk(os.path.join(ROOT, "experiments")):
        notes += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".md")]
    return notes


def test_no_merge_conflict_markers_in_the_notes():
    found = []
    for path in _notes():
        with open(path, encoding="utf-8") as f:
            found += [f"{os.path.relpath(path, ROOT)}:{i}" for i in conflict_markers(f.read())]
    assert not found, "merge-conflict markers at " + ", ".join(found)


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
        "report may import only records, report, storage")
    assert violation("gancmp.report.views", "gancmp.records") is None
    assert violation("gancmp.report.build", "gancmp.sweep.store") is not None
    assert violation("gancmp.records", "gancmp.train.loop") is not None
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


def test_the_function_check_counts_from_the_def_line():
    def body(n: int, indent: str = "    ") -> str:
        return "".join(f"{indent}x{i} = {i}\n" for i in range(n))

    # a decorated function of 61 lines (def + 60), flagged at its def line; 60 lines pass
    assert long_functions("@decorator\ndef f():\n" + body(60)) == [("f", 2, 61)]
    assert long_functions("@decorator\ndef f():\n" + body(59)) == []
    nested = ("class C:\n    def g(self):\n        def inner():\n" + body(61, " " * 12)
              + "        return inner\n")
    assert long_functions(nested) == [("C.g", 2, 64), ("C.g.inner", 3, 62)]


@pytest.mark.parametrize("source, expected", [
    ("_X = {}\ndef f(s):\n    return _X[repr(s)]\n", [("_X", 3)]),
    ("_X: dict[str, int] = {}\ndef f(s):\n    if repr(s) not in _X:\n        _X[repr(s)] = 1\n"
     "    return _X.get(repr(s))\n", [("_X", 3), ("_X", 4), ("_X", 5)]),
    ("_X = dict()\ndef f(e, n):\n    key = (id(e), n)\n    k2 = key\n    return _X[k2]\n",
     [("_X", 5)]),
    ("_X: dict[tuple, int] = {}\ndef f(e, n):\n    def run():\n        key = (str(id(e)), n)\n"
     "        return _X.setdefault(key, 0)\n    return run\n", [("_X", 5)]),
    # a key made in the function around the one that uses it
    ("_X = {}\ndef f(e):\n    key = id(e)\n    def run():\n        return _X[key]\n"
     "    return run\n", [("_X", 5)]),
    # hashable keys, and repr/id used elsewhere, are fine
    ("_X = {}\ndef f(e):\n    key = id(e)\n    return key\ndef g(key):\n    return _X[key]\n",
     []),
    ("_X = {}\ndef f(a: int, b: int):\n    return _X[(a, b)]\n", []),
    ("_X = {}\ndef f(s, e):\n    name = repr(s)\n    return _X[s], _X.get((s, e)), name\n", []),
    ("def f(s):\n    d = {}\n    d[repr(s)] = 1\n    return d\n", []),  # not module level
    ("_Y = []\ndef f(s):\n    return _Y[id(s)]\n", []),  # not a dict
])
def test_the_dict_check(source, expected):
    assert repr_or_id_keys(source) == expected


def test_the_conflict_marker_check():
    text = "a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> main\n==========\n<<<<<<<x\n"
    assert conflict_markers(text) == [2, 4, 6]

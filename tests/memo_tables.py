"""Finds the module-level memo tables of a module's source (`tests/test_layering.py` holds the
rule and what it allows).

A module-level memo is state that lives as long as the process and that a function fills as the
program runs:
  - a function defined at module level (or in a class at module level) decorated with
    `functools.cache` or `functools.lru_cache` (bare or called, by either spelling);
  - a name bound at module level to a dict (a literal, a comprehension, `dict()`,
    `OrderedDict()`, `defaultdict()`, or annotated `dict[...]`) that a function body writes:
    `D[k] = v`, `D[k] += v`, `del D[k]`, or a call of `D.setdefault`, `D.update`, `D.pop`,
    `D.popitem`, `D.clear` or `D.__setitem__`.
A dict filled at module level only (at import: a constant table), a cache a function makes for
its own call, and state an object owns (`self._memo`) are not module-level memos.
"""

from __future__ import annotations

import ast

_CACHE_DECORATORS = {"cache", "lru_cache"}
_DICT_CALLS = {"dict", "OrderedDict", "defaultdict"}
_WRITES = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__"}
_SCOPES = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


def _is_cache(decorator: ast.AST) -> bool:
    """`@cache`, `@functools.cache`, `@lru_cache(...)`, `@functools.lru_cache(maxsize=...)`."""
    if isinstance(decorator, ast.Call):
        decorator = decorator.func
    name = (decorator.id if isinstance(decorator, ast.Name)
            else getattr(decorator, "attr", None))
    return name in _CACHE_DECORATORS


def is_dict(value: ast.AST | None, annotation: ast.AST | None = None) -> bool:
    """Whether a module-level assignment makes a dict: a dict literal or comprehension, a call of
    `dict` (or `OrderedDict`, `defaultdict`), or an annotation `dict[...]`."""
    if isinstance(value, ast.Dict | ast.DictComp):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        if (func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)) in _DICT_CALLS:
            return True
    if isinstance(annotation, ast.Subscript):
        annotation = annotation.value
    return isinstance(annotation, ast.Name) and annotation.id in {"dict", "Dict"}


def _module_dicts(tree: ast.Module) -> dict[str, int]:
    """{name: line} of the module-level names bound to a dict."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and is_dict(node.value):
            names |= {t.id: node.lineno for t in node.targets if isinstance(t, ast.Name)}
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              and is_dict(node.value, node.annotation)):
            names[node.target.id] = node.lineno
    return names


def _written(node: ast.AST) -> str | None:
    """The name of the dict `node` writes by key or by a mutating method, else None."""
    if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del)
            and isinstance(node.value, ast.Name)):
        return node.value.id
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.attr in _WRITES):
        return node.func.value.id
    return None


def _function_bodies(tree: ast.Module):
    """Every node inside a function (at any depth) of the module."""
    for node in ast.walk(tree):
        if isinstance(node, _SCOPES):
            yield from ast.walk(node)


def module_memos(source: str) -> list[tuple[str, int]]:
    """(name, line) of every module-level memo (module docstring) of `source`: a cached
    function at its `def` line ("Class.method" inside a class), a dict at its binding."""
    tree = ast.parse(source)
    found = set()
    for node in tree.body:
        defs = [(node.name, node)] if isinstance(node, ast.FunctionDef) else []
        if isinstance(node, ast.ClassDef):
            defs = [(f"{node.name}.{f.name}", f) for f in node.body
                    if isinstance(f, ast.FunctionDef)]
        found |= {(name, f.lineno) for name, f in defs
                  if any(_is_cache(d) for d in f.decorator_list)}
    dicts = _module_dicts(tree)
    found |= {(name, dicts[name]) for name in map(_written, _function_bodies(tree))
              if name in dicts}
    return sorted(found, key=lambda f: (f[1], f[0]))

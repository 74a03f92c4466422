"""The module-level memo check of `tests/test_layering.py` (`tests/memo_tables.py`) on small
sources: what it flags and what it leaves alone."""

import pytest

from tests.memo_tables import module_memos


@pytest.mark.parametrize("source, expected", [
    ("import functools\n@functools.cache\ndef f(x):\n    return x\n", [("f", 3)]),
    ("from functools import lru_cache\n@lru_cache(maxsize=2)\ndef f(x):\n    return x\n",
     [("f", 3)]),
    ("class C:\n    @functools.lru_cache\n    def f(self):\n        return 1\n", [("C.f", 3)]),
    ("_X: dict[str, int] = {}\ndef f(k):\n    if k not in _X:\n        _X[k] = 1\n"
     "    return _X[k]\n", [("_X", 1)]),
    ("_X = dict()\ndef f(k):\n    return _X.setdefault(k, [])\n", [("_X", 1)]),
    ("_X = {}\ndef f(k):\n    def g():\n        _X.update({k: 1})\n    return g\n", [("_X", 1)]),
    ("_X = {}\ndef f(k):\n    del _X[k]\n", [("_X", 1)]),
    # filled at import only (a constant table), read by functions, or not module level: fine
    ("_X = {}\n_X['a'] = 1\ndef f(k):\n    return _X.get(k), _X[k]\n", []),
    ("def f(k):\n    d = {}\n    d[k] = 1\n    return d\n", []),
    ("class C:\n    def __init__(self):\n        self._m = {}\n    def f(self, k):\n"
     "        self._m[k] = 1\n", []),
    ("_Y = []\ndef f(k):\n    _Y.append(k)\n", []),  # not a dict
    ("def f():\n    @functools.cache\n    def g(x):\n        return x\n    return g\n", []),
])
def test_the_memo_check(source, expected):
    assert module_memos(source) == expected

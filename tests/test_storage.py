"""The shared file helpers: atomic writes, the cache root, config files."""

import os

import numpy as np
import pytest

from gancmp import storage
from gancmp.configfile import load_config_file
from gancmp.train.config import ConfigError
from tests.helpers import ROOT


def test_write_atomic_writes_replaces_and_leaves_nothing_else(tmp_path):
    path = str(tmp_path / "new" / "dir" / "f.txt")  # missing folders are made
    storage.write_atomic(path, "héllo\n")
    assert open(path, "rb").read() == "héllo\n".encode()
    storage.write_atomic(path, b"\x00\x01")
    assert open(path, "rb").read() == b"\x00\x01"
    assert os.listdir(os.path.dirname(path)) == ["f.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "x.npy")
    np.save(path, np.arange(3))
    with pytest.raises(RuntimeError, match="interrupted"):
        with storage.open_atomic(path) as f:
            np.save(f, np.arange(1000))
            raise RuntimeError("interrupted")
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    assert os.listdir(tmp_path) == ["x.npy"]
    with storage.open_atomic(path) as f:  # streamed pieces become the file only at the end
        np.save(f, np.arange(1000))
        np.testing.assert_array_equal(np.load(path), np.arange(3))
    np.testing.assert_array_equal(np.load(path), np.arange(1000))


def test_cache_root_is_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert storage.cache_root() == os.path.join(str(tmp_path), ".cache", "gancmp")
    assert storage.cache_root("xla", "abc") == os.path.join(
        str(tmp_path), ".cache", "gancmp", "xla", "abc")


def test_load_config_file(tmp_path):
    config = load_config_file(os.path.join(ROOT, "configs", "ring8_mlp.py"), batch_size=7)
    assert config.dataset == "ring8" and config.batch_size == 7
    # a config file's own dataclasses work: its module is registered while it runs
    (tmp_path / "with_class.py").write_text(
        "from __future__ import annotations\nimport dataclasses\nimport ml_collections\n\n"
        "@dataclasses.dataclass\nclass Size:\n    n: int\n\n"
        "def get_config():\n    return ml_collections.ConfigDict({'n': Size(3).n})\n")
    assert load_config_file(str(tmp_path / "with_class.py")).n == 3
    missing = str(tmp_path / "nope.py")
    with pytest.raises(FileNotFoundError, match=rf"^config file {missing}: no such file$"):
        load_config_file(missing)
    (tmp_path / "empty.py").write_text("X = 1\n")
    with pytest.raises(ConfigError, match="empty.py: defines no get_config"):
        load_config_file(str(tmp_path / "empty.py"))

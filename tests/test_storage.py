"""The shared file helpers: atomic writes, the cache root, config files."""

import os

import numpy as np
import pytest

from gancmp import storage
from gancmp.config import ConfigError, load_config_file
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


# --- appends, torn lines and locks --------------------------------------------------------------

def test_append_line_starts_on_a_fresh_line_and_syncs(tmp_path, monkeypatch):
    """A killed writer can leave a torn last line without its newline: the next append first
    ends that line, so the new line is never glued to the fragment; each append is fsync'd."""
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    path = str(tmp_path / "sub" / "log.jsonl")  # missing folders are made
    storage.append_line(path, '{"a": 1}')
    storage.append_line(path, '{"b": 2}\n')  # a trailing newline is not doubled
    assert open(path).read() == '{"a": 1}\n{"b": 2}\n'
    with open(path, "a") as f:
        f.write('{"c": ')  # torn
    storage.append_line(path, '{"d": 4}')
    assert open(path).read() == '{"a": 1}\n{"b": 2}\n{"c": \n{"d": 4}\n'
    assert len(synced) == 3


def test_read_jsonl_skips_a_torn_last_line_with_a_warning(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n\n[2, 3]\n{"b": 2, "c"')
    values, bad = storage.read_jsonl(str(path))
    assert values == [{"a": 1}, [2, 3]]
    assert [(b.path, b.line) for b in bad] == [(str(path), 4)]
    err = capsys.readouterr().err
    assert f"gancmp: warning: {path}:4: skipped a torn or corrupt line" in err
    assert err.count("\n") == 1
    # a row the caller rejects is skipped the same way; missing file: nothing
    values, bad = storage.read_jsonl(str(path), check=_needs_a, warn=False)
    assert values == [{"a": 1}] and [b.line for b in bad] == [3, 4]
    assert "not a row" in bad[0].error and capsys.readouterr().err == ""
    assert storage.read_jsonl(str(tmp_path / "none.jsonl")) == ([], [])


def _needs_a(value):
    if not isinstance(value, dict) or "a" not in value:
        raise ValueError("not a row")


def test_lock_is_exclusive_names_its_holder_and_is_released(tmp_path):
    import json
    import socket

    path = str(tmp_path / "w" / "train.lock")
    with storage.lock(path) as me:
        held = json.loads(open(path).read())
        assert held == me
        assert (held["pid"], held["host"]) == (os.getpid(), socket.gethostname())
        assert held["start"].endswith("Z")  # UTC, ISO 8601
        with pytest.raises(storage.LockedError) as e:
            with storage.lock(path):
                pass
        message = str(e.value)
        assert "\n" not in message
        assert f"pid {os.getpid()} on {socket.gethostname()} since {held['start']}" in message
        assert path in message
        assert json.loads(open(path).read()) == me  # the refused attempt left it alone
    assert not os.path.exists(path)
    with storage.lock(path):  # free again
        pass
    assert os.listdir(tmp_path / "w") == []


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, capsys):
    import json
    import socket

    path = str(tmp_path / "results-0.lock")
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "start": "2020-01-01T00:00:00Z",
             "token": "old"}
    open(path, "w").write(json.dumps(stale))
    with storage.lock(path) as me:
        assert me["pid"] == os.getpid() and json.loads(open(path).read()) == me
    err = capsys.readouterr().err
    assert f"gancmp: warning: {path}: took over the lock of pid {stale['pid']}" in err
    assert "no longer running" in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_a_stale_lock_naming_this_very_pid_is_taken_over(tmp_path, capsys):
    """A restarted container: the lock of the process before it names this host and, by
    chance, this process's pid. This process does not hold it, so it is stale (taken over with
    the warning); a lock this process does hold is still refused."""
    import json
    import socket

    path = str(tmp_path / "train.lock")
    stale = {"pid": os.getpid(), "host": socket.gethostname(), "start": "2020-01-01T00:00:00Z",
             "token": "old"}
    open(path, "w").write(json.dumps(stale))
    with storage.lock(path) as me:
        assert json.loads(open(path).read()) == me
        with pytest.raises(storage.LockedError, match="in use by"):
            with storage.lock(path):
                pass
    err = capsys.readouterr().err
    assert (f"gancmp: warning: {path}: took over the lock of pid {os.getpid()} on "
            f"{socket.gethostname()} since 2020-01-01T00:00:00Z, no longer running") in err
    assert err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    import json

    path = str(tmp_path / "train.lock")
    other = {"pid": _dead_pid(), "host": "elsewhere-7", "start": "2020-01-01T00:00:00Z",
             "token": "x"}
    open(path, "w").write(json.dumps(other))
    with pytest.raises(storage.LockedError, match=rf"pid {other['pid']} on elsewhere-7 since "
                                                  r"2020-01-01T00:00:00Z"):
        with storage.lock(path):
            pass
    assert json.loads(open(path).read()) == other


def test_a_held_lock_renews_its_lease(tmp_path):
    """While the block runs, a background thread rewrites `renewed` every quarter lease."""
    import json
    import time

    path = str(tmp_path / "train.lock")
    with storage.lock(path, lease_s=0.4) as me:
        first = json.loads(open(path).read())
        assert first["lease_s"] == 0.4 and first["token"] == me["token"]
        time.sleep(0.5)
        later = json.loads(open(path).read())
        assert later["token"] == me["token"] and later["renewed"] > first["renewed"]
    assert os.listdir(tmp_path) == []


def test_an_expired_lease_of_another_host_is_taken_over(tmp_path, capsys):
    """A hard-killed VM's lock (renewed long ago), found by its replacement with another
    hostname: taken over at once, with a warning saying the lease expired."""
    import json
    import time

    path = str(tmp_path / "results-0.lock")
    other = {"pid": 7, "host": "spot-vm-old", "start": "2020-01-01T00:00:00Z", "token": "x",
             "renewed": time.time() - 100, "lease_s": 10}
    open(path, "w").write(json.dumps(other))
    with storage.lock(path) as me:
        assert json.loads(open(path).read())["token"] == me["token"]
    err = capsys.readouterr().err
    assert "took over the lock of pid 7 on spot-vm-old" in err
    assert "its lease of 10 s expired 90 s ago" in err


def test_a_fresh_lease_of_a_silent_host_is_waited_out_then_taken(tmp_path, capsys):
    """A lock of another host whose lease is still running but never renewed (the VM died a
    moment ago): waited for, and taken only once the lease has run out."""
    import json
    import time

    path = str(tmp_path / "results-0.lock")
    other = {"pid": 7, "host": "spot-vm-old", "start": "2020-01-01T00:00:00Z", "token": "x",
             "renewed": time.time(), "lease_s": 0.8}
    open(path, "w").write(json.dumps(other))
    with storage.lock(path):
        taken_at = time.time()
    assert taken_at - other["renewed"] > other["lease_s"]  # never while fresh
    err = capsys.readouterr().err
    assert "waiting up to 0.8 s" in err and "took over the lock of pid 7 on spot-vm-old" in err


def test_a_fresh_lease_renewed_by_its_holder_is_never_taken(tmp_path, monkeypatch):
    """A live holder on another host renews its lease: the waiting process sees the renewal
    and refuses (`LockedError`), leaving the lock to its holder."""
    import json

    from gancmp.storage import locks

    path = str(tmp_path / "results-0.lock")
    with storage.lock(path, lease_s=0.8) as holder:
        monkeypatch.setattr(locks.socket, "gethostname", lambda: "another-vm")
        with pytest.raises(storage.LockedError, match="in use by pid"):
            with storage.lock(path):
                pass
        assert json.loads(open(path).read())["token"] == holder["token"]


def test_a_holder_whose_lock_was_taken_says_so_and_leaves_it(tmp_path, capsys):
    """A holder stalled past its lease finds its lock taken: its renewal stops with one warning,
    and its release leaves the new holder's lock in place."""
    import json
    import time

    path = str(tmp_path / "results-0.lock")
    other = {"pid": 7, "host": "spot-vm-new", "start": "2020-01-01T00:00:00Z", "token": "new",
             "renewed": time.time(), "lease_s": 300}
    with storage.lock(path, lease_s=0.4):
        open(path, "w").write(json.dumps(other))  # taken over meanwhile
        time.sleep(0.3)
    assert json.loads(open(path).read()) == other
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "this process's lock was taken by pid 7 on spot-vm-new" in err


def test_set_aside_moves_a_path_into_a_folder_under_a_new_name(tmp_path):
    (tmp_path / "ck" / "300" / "default").mkdir(parents=True)
    (tmp_path / "ck" / "300" / "default" / "x").write_text("data")
    first = storage.set_aside(str(tmp_path / "ck" / "300"), str(tmp_path / "ck-damaged"))
    (tmp_path / "ck" / "300").mkdir()
    second = storage.set_aside(str(tmp_path / "ck" / "300"), str(tmp_path / "ck-damaged"))
    assert first != second
    assert os.path.basename(first).startswith("300.damaged-")
    assert open(os.path.join(first, "default", "x")).read() == "data"  # moved, not deleted
    assert os.listdir(tmp_path / "ck") == []
    assert sorted(os.listdir(tmp_path / "ck-damaged")) == sorted(
        [os.path.basename(first), os.path.basename(second)])

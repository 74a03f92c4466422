"""The storage layer against a real GCS API (the session's emulator, `tests/gcs_emulator.py`):
each path operation, atomic writes, JSON lines, locks and setting aside on gs:// as on disk."""

import json
import os

import pytest

from gancmp import storage


@pytest.fixture(scope="module")
def bucket(gcs):
    return gcs.make_bucket("storage-ops")


def test_paths_files_and_folders(gcs, bucket):
    root = storage.join(bucket, "a")
    storage.makedirs(root)  # nothing to create on object storage
    assert not storage.exists(root) and storage.listdir(bucket) == []
    storage.write_atomic(storage.join(root, "x.json"), '{"k": 1}')
    with storage.open_atomic(storage.join(root, "sub", "y.bin")) as f:
        f.write(b"\x00" * 10)
    assert storage.exists(root) and storage.isdir(root) and not storage.isfile(root)
    assert storage.isfile(f"{root}/x.json") and storage.read_text(f"{root}/x.json") == '{"k": 1}'
    assert storage.listdir(root) == ["sub", "x.json"]
    assert storage.glob(f"{root}/*.json") == [f"{root}/x.json"]
    assert storage.glob(f"{bucket}/nothing/*.json") == []
    assert storage.getsize(f"{root}/sub/y.bin") == 10
    storage.copy(f"{root}/x.json", f"{root}/z.json")
    storage.rename(f"{root}/sub", f"{root}/moved")
    assert gcs.objects("storage-ops") == ["a/moved/y.bin", "a/x.json", "a/z.json"]
    storage.remove(f"{root}/z.json")
    storage.rmtree(f"{root}/moved")
    assert gcs.objects("storage-ops") == ["a/x.json"]


def test_a_failed_atomic_write_leaves_no_object(gcs, bucket):
    path = f"{bucket}/atomic/f.bin"
    storage.write_atomic(path, b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with storage.open_atomic(path) as f:
            f.write(b"new")
            raise RuntimeError("interrupted")
    assert gcs.read("storage-ops", "atomic/f.bin") == b"old"


def test_json_lines_append_on_a_fresh_line_and_skip_torn_ones(gcs, bucket):
    path = f"{bucket}/lines/results-0.jsonl"
    storage.append_line(path, json.dumps({"a": 1}))
    with storage.open_file(path, "wb") as f:  # a torn last line, as a killed writer leaves
        f.write(storage.read_bytes(path) + b'{"a": ')
    storage.append_line(path, json.dumps({"a": 2}))
    values, bad = storage.read_jsonl(path, warn=False)
    assert values == [{"a": 1}, {"a": 2}] and [b.line for b in bad] == [2]
    assert storage.read_jsonl(f"{bucket}/lines/none.jsonl") == ([], [])


def test_locks_on_gcs_are_exclusive_and_stale_ones_taken_over(gcs, bucket):
    path = f"{bucket}/locks/train.lock"
    with storage.lock(path) as me:
        assert json.loads(gcs.read("storage-ops", "locks/train.lock")) == me
        with pytest.raises(storage.LockedError, match=f"in use by pid {os.getpid()} on "):
            with storage.lock(path):
                pass
    assert gcs.objects("storage-ops", "locks/") == []
    dead = {"pid": 2 ** 22 + 12345, "host": me["host"], "start": "2020-01-01T00:00:00Z"}
    storage.write_atomic(path, json.dumps(dead))  # a killed holder's lock on this host
    with storage.lock(path) as again:
        assert json.loads(gcs.read("storage-ops", "locks/train.lock")) == again


def test_set_aside_moves_a_folder_whole(gcs, bucket):
    storage.write_atomic(f"{bucket}/ck/checkpoints/7/x", b"1")
    target = storage.set_aside(f"{bucket}/ck/checkpoints/7", f"{bucket}/ck/checkpoints-damaged")
    assert target.startswith(f"{bucket}/ck/checkpoints-damaged/7.damaged-")
    assert gcs.objects("storage-ops", "ck/") == [target.split("storage-ops/", 1)[1] + "/x"]

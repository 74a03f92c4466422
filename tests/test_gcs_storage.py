"""The storage layer against a real GCS API (the session's emulator, `tests/gcs_emulator.py`):
each path operation, atomic writes, JSON lines, locks and setting aside on gs:// as on disk; and
no file call on a user path is left outside gancmp/storage (a grep of the package)."""

import json
import os
import re

import numpy as np
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


def test_json_lines_append_new_objects_after_an_old_whole_file(gcs, bucket):
    """On gs:// an append is one new object under `<file>.parts/` holding just the new lines
    (never a read and rewrite of the file); the reader takes a whole file an earlier gancmp
    wrote (here with a torn last line, skipped) and then the parts in order."""
    path = f"{bucket}/lines/results-0.jsonl"
    storage.write_atomic(path, '{"a": 1}\n{"a": ')  # an earlier gancmp's file, torn
    storage.append_line(path, json.dumps({"a": 2}))
    storage.append_lines(path, [json.dumps({"a": 3}), json.dumps({"a": 4})])
    parts = gcs.objects("storage-ops", "lines/results-0.jsonl.parts/")
    assert len(parts) == 2 and all(p.endswith(".jsonl") for p in parts)
    assert gcs.read("storage-ops", parts[1]) == b'{"a": 3}\n{"a": 4}\n'
    assert gcs.read("storage-ops", "lines/results-0.jsonl") == b'{"a": 1}\n{"a": '
    values, bad = storage.read_jsonl(path, warn=False)
    assert values == [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}] and [b.line for b in bad] == [2]
    storage.append_line(f"{bucket}/lines/results-3.jsonl", "{}")  # parts only: still a file
    assert storage.jsonl_files(f"{bucket}/lines", "results-*.jsonl") == [
        f"{bucket}/lines/results-0.jsonl", f"{bucket}/lines/results-3.jsonl"]
    assert storage.jsonl_exists(f"{bucket}/lines/results-3.jsonl")
    assert storage.read_jsonl(f"{bucket}/lines/none.jsonl") == ([], [])
    assert not storage.jsonl_exists(f"{bucket}/lines/none.jsonl")


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


def test_an_expired_lease_on_gcs_is_taken_over_whatever_the_host(gcs, bucket, capsys):
    import time

    path = f"{bucket}/locks/results-0.lock"
    other = {"pid": 7, "host": "spot-vm-old", "start": "2020-01-01T00:00:00Z", "token": "x",
             "renewed": time.time() - 60, "lease_s": 30}
    storage.write_atomic(path, json.dumps(other))
    with storage.lock(path, lease_s=0.4) as me:
        first = me["renewed"]
        time.sleep(0.5)  # renewed in the bucket meanwhile
        held = json.loads(gcs.read("storage-ops", "locks/results-0.lock"))
        assert held["token"] == me["token"] and held["renewed"] > first
    assert "took over the lock of pid 7 on spot-vm-old" in capsys.readouterr().err
    assert gcs.objects("storage-ops", "locks/") == []


def test_set_aside_moves_a_folder_whole(gcs, bucket):
    storage.write_atomic(f"{bucket}/ck/checkpoints/7/x", b"1")
    target = storage.set_aside(f"{bucket}/ck/checkpoints/7", f"{bucket}/ck/checkpoints-damaged")
    assert target.startswith(f"{bucket}/ck/checkpoints-damaged/7.damaged-")
    assert gcs.objects("storage-ops", "ck/") == [target.split("storage-ops/", 1)[1] + "/x"]


# --- no file call on a user path outside gancmp/storage ---------------------------------------

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gancmp")
# A file call that would write or read a user's path (a workdir, weights, statistics, data,
# report output): every one goes through gancmp.storage, where gs:// works.
FILE_CALL = re.compile(
    r"(?<![\w.])open\(|\bos\.(makedirs|mkdir|listdir|scandir|walk|remove|unlink|rename|replace"
    r"|rmdir|stat|chmod|link|fdopen|open)\(|\bos\.path\.(exists|isfile|isdir|getsize|getmtime"
    r"|abspath|realpath|relpath|lexists)\(|\bshutil\.\w+\(|\bglob\.glob\(|\btempfile\."
    r"|\bnp\.(load|save|savez|savez_compressed)\((?!f\b|raw\b|io\.BytesIO)"
    r"|\bImage\.open\((?!f\b)|\.savefig\((?!f\b)|\.save\((?!f\b)\w*path"
    r"|zipfile\.(ZipFile|is_zipfile)\((?!f\b|raw\b)")
# (file under gancmp/, text of the line) -> why it is not a user path
ALLOWED = {
    ("cli/main.py", "os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())"):
        "/dev/null, for a closed output pipe",
    ("cli/main.py", "if path is not None and not os.path.isfile(path):"):
        "a --config file is Python code, imported from local disk",
    ("cli/main.py", "import_from_argv(args, search=[os.path.dirname(os.path.abspath(path))] "
                    "if path else [])"): "the local folder of the --config file, searched for "
                                         "modules",
    ("config.py", "if not os.path.isfile(path):"): "config files are local Python modules",
    ("config.py", "digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:8]"):
        "config files are local Python modules (the module name of one)",
    ("config.py", "add_module_dirs([os.path.dirname(os.path.abspath(path))])"):
        "config files are local Python modules (their folder joins the import path)",
    ("runtime.py", 'with open("/proc/cpuinfo") as f:'): "the host's CPU flags",
    ("runtime.py", "count = len(os.listdir(driver))"): "the host's GPUs, from the driver's /proc",
    ("cli/help.py", "same = os.path.realpath(err.filename) == os.path.realpath(path)"):
        "a --config file is Python code on local disk: which file an import error names",
    ("cli/help.py", "target, line = os.path.realpath(path), None"):
        "a --config file is Python code on local disk: the line of its traceback",
    ("cli/help.py", "if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:"):
        "a --config file is Python code on local disk: the line of its traceback",
    ("train/checkpoint.py", "_ORBAX = os.path.dirname(os.path.abspath(ocp.__file__))"):
        "orbax's own installed files, to recognise the log records it writes",
    ("bench/suite.py", 'with open("/proc/cpuinfo") as f:'): "the host's CPU model",
    ("sweep/costs.py", 'with open("/proc/cpuinfo", encoding="utf-8") as f:'):
        "the host's CPU model, for the plan's CPU rate",
    ("cli/common.py", 'add_module_dirs([os.path.dirname(os.path.abspath(FLAGS["config"].'
                      'config_filename))])'):
        "the local folder of the --config file, searched for the modules it imports",
    ("cli/tools.py", "if not os.path.isfile(FLAGS.config):"):
        "a sweep config file is Python code, imported from local disk",
    ("bench/suite.py", 'with open("/proc/self/status") as f:'): "this process's peak memory",
    ("bench/suite.py", "ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath("
                       "__file__))))"): "the checkout's own folder (benchmark scripts)",
    ("bench/steps.py", "with tempfile.TemporaryDirectory() as tmp:"):
        "a benchmark's scratch workdir, deleted at its end",
    ("data/tfds.py", 'return np.array(np.load(whole, mmap_mode="r")[start:stop])'):
        "memory-maps a local cache file (a gs:// one is read whole)",
    ("data/preprocess.py", "with Image.open(io.BytesIO(bytes(value))) as im:"):
        "decodes bytes in memory",
    ("data/images.py", '"""`np.load(path)` of an `.npz` (no pickles); ImageSourceError when it '
                       'is not one."""'): "a docstring",
}


def test_no_file_call_on_a_user_path_outside_storage():
    found, seen = [], set()
    for folder, _, names in os.walk(PACKAGE):
        rel_folder = os.path.relpath(folder, PACKAGE)
        if rel_folder.split(os.sep)[0] == "storage":
            continue
        for name in sorted(n for n in names if n.endswith(".py")):
            rel = os.path.normpath(os.path.join(rel_folder, name))
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    text = line.split("  # ")[0].strip()  # without a trailing comment
                    if text.startswith("#") or not FILE_CALL.search(text):
                        continue
                    if (rel, text) in ALLOWED:
                        seen.add((rel, text))
                    else:
                        found.append(f"gancmp/{rel}:{number}: {text}")
    assert not found, ("file calls on user paths outside gancmp/storage (use gancmp.storage, "
                       "or allow-list a local-only one with its reason):\n" + "\n".join(found))
    assert not set(ALLOWED) - seen, f"allow-listed lines no longer there: {set(ALLOWED) - seen}"


def test_the_grep_sees_file_calls():
    for text in ('with open(path) as f:', 'os.makedirs(d, exist_ok=True)', 'np.load(path)',
                 'os.path.exists(p)', 'shutil.copyfile(a, b)', 'fig.savefig(path)',
                 'Image.open(path)', 'glob.glob(pattern)'):
        assert FILE_CALL.search(text), text
    for text in ('storage.open_file(path)', 'zf.open(name)', 'np.load(f)', 'os.path.join(a, b)',
                 'Image.open(f)', 'np.load(io.BytesIO(data))'):
        assert not FILE_CALL.search(text), text


def test_weights_statistics_and_reference_stats_on_gcs(gcs, bucket):
    from gancmp.metrics import fid, pth, stats_file

    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "inception")
    for name in ("tiny_zip.pth", "tiny_legacy.pth"):  # torch's two file formats
        storage.copy(os.path.join(fixtures, name), f"{bucket}/weights/{name}")
        local, remote = pth.load_pth(os.path.join(fixtures, name)), pth.load_pth(
            f"{bucket}/weights/{name}")
        assert sorted(local) == sorted(remote)
        for k in local:
            np.testing.assert_array_equal(local[k], remote[k])
    rng = np.random.default_rng(0)
    stats = stats_file.Statistics(rng.normal(size=3), np.eye(3), None, 5, {"preprocess": "x"},
                                  "test")
    stats_file.save_statistics(f"{bucket}/stats/s.npz", stats)
    back = stats_file.load_statistics(f"{bucket}/stats/s.npz")
    np.testing.assert_array_equal(back.mu, stats.mu)
    assert back.num == 5 and back.source == f"{bucket}/stats/s.npz"
    calls = []

    def features(x):
        calls.append(len(x))
        return np.asarray(x, np.float32).reshape(len(x), -1)[:, :4]

    images = rng.integers(0, 256, (20, 4, 4, 1), dtype=np.uint8)
    first = fid.reference_statistics(images, features, dataset="d", num_real=20,
                                     cache_dir=f"{bucket}/ref")
    again = fid.reference_statistics(images, features, dataset="d", num_real=20,
                                     cache_dir=f"{bucket}/ref")
    assert first.path.startswith(f"{bucket}/ref/") and again.path == first.path
    assert len(calls) == 1 and again.sha256 == first.sha256  # the second came from the bucket


def test_the_dataset_cache_may_live_in_the_bucket(gcs, bucket):
    from gancmp.data import tfds

    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    reads = []

    class Source:  # a prepared split, as TFDS's random-access reader gives it
        dataset_info = None

        def __len__(self):
            return 5

        def __getitem__(self, i):
            reads.append(i)
            return {"image": images[i]}

    def load(**kwargs):
        return tfds.load("cifar10", opener=lambda *a: Source(), cache_dir=f"{bucket}/tfds",
                         **kwargs)

    first, second = load(), load()
    assert len(reads) == 10 and storage.listdir(f"{bucket}/tfds")  # read once, then cached
    np.testing.assert_array_equal(second["train"], images)
    np.testing.assert_array_equal(first["train"], images)
    block = load(process_index=1, process_count=2)  # a block of the cached whole split
    assert len(reads) == 10
    np.testing.assert_array_equal(block["train"], images[2:])

"""`gancmp` with every path in a bucket, against a real GCS API (the session's fake-gcs-server,
`tests/gcs_emulator.py`), reached only through `STORAGE_EMULATOR_HOST`: `gancmp train` writes the
whole trial into the bucket and nothing of it on local disk but caches, a run killed with SIGKILL
resumes from the bucket to the same bits as an uninterrupted one, a tiny `gancmp sweep` (with a
gs:// compilation cache) and `gancmp report gs://… --out gs://…` work, the same sweep killed with
SIGKILL and started again resumes from the bucket to the same records, what that sweep sends per
checkpoint is bounded (counted at the wire: `tests.gcs_emulator.CountingProxy`), and a gs:// path
that cannot be used (no gcsfs, no credentials, no such bucket) is one line and exit code 2.

The bound (issue 22 item 4), per checkpoint of a group of K trials whose stacked state is S
bytes, with one device call per logged step (the worst case: `log_every` = one call):
  - the checkpoint: S once, plus orbax's metadata: ≤ 1.1·S + 64 KiB;
  - TensorBoard: only the events since the previous checkpoint, in one new object uploaded
    once (≤ 1 KiB of request overhead), never the event file so far: every TensorBoard object
    is sent once and all are the same size within 1.5× (they do not grow with the run);
  - the evaluation: one new `evals.jsonl.parts/` object, sent once; the bookkeeping file, a few
    hundred bytes, rewritten: everything but the checkpoint and TensorBoard ≤ 8 KiB;
and once per group, its records: one `results-<i>.jsonl.parts/` object, sent once. The gs://
compilation cache (`xla/`: each program once per sweep, not per checkpoint) is left out.
Before (tensorboardX's GCS writer flushed after each logged call, re-uploading the event
file; each record rewrote the results file) such a sweep sent its ≈ 13 KB of events as 171 KB.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest

from tests.gcs_emulator import NO_METADATA, SET_BY_GANCMP, CountingProxy
from tests.helpers import CPU_COMPILE_FLAGS, ROOT, gancmp_command, tiny_ring_sweep

BUCKET = "gancmp-runs"
TRAIN = ("--config", os.path.join(ROOT, "configs", "ring8_mlp.py"), "--config.num_d_steps=60",
         "--config.checkpoint_every=20", "--config.steps_per_call=5", "--config.batch_size=64",
         "--noprogress", "--compilation_cache", f"gs://{BUCKET}/xla")
# the sweep's group: K trials, 5 D steps per call, every call logged (the bytes test's worst case)
STEPS, EVERY, LOG_EVERY, K = 40, 10, 5, 2
CHECKPOINTS = STEPS // EVERY
SWEEP = tiny_ring_sweep("gcs", "NS_GAN", num_d_steps=STEPS, checkpoint_every=EVERY,
                        max_trials_per_group=K, log_every=LOG_EVERY)


class Local:
    """The local places a run could leave files in: its working directory, $HOME, $TMPDIR."""

    def __init__(self, root):
        self.cwd, self.home, self.tmp = root / "cwd", root / "home", root / "tmp"
        for d in (self.cwd, self.home, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def files(self) -> list[str]:
        """Every file left there, except caches (~/.cache: compiled code, fonts)."""
        out = []
        for base in (self.cwd, self.home, self.tmp):
            for folder, _, names in os.walk(base):
                out += [os.path.join(folder, n) for n in names
                        if not os.path.join(folder, n).startswith(str(self.home / ".cache"))]
        return out


def _env(gcs, local: Local | None, **extra) -> dict[str, str]:
    """The environment of a gancmp process: the emulator named by STORAGE_EMULATOR_HOST only
    (what gancmp sets from it is removed, so gancmp must set it), one CPU device."""
    env = {k: v for k, v in os.environ.items() if k not in SET_BY_GANCMP}
    env.update(gcs.env if gcs is not None else NO_METADATA, XLA_FLAGS=CPU_COMPILE_FLAGS,
               JAX_PLATFORMS="cpu")
    if local is not None:
        env.update(HOME=str(local.home), TMPDIR=str(local.tmp))
    env.update(extra)
    return env


def _command(*args: str) -> list[str]:
    return [*gancmp_command(),
            *args]


def _run(gcs, local, *args, env=None, timeout=300):
    return subprocess.run(_command(*args), cwd=local.cwd, capture_output=True, text=True,
                          timeout=timeout, env=env or _env(gcs, local))


def _kill_at_checkpoint(gcs, proc: subprocess.Popen, prefix: str, step: int) -> list[str]:
    """SIGKILLs `proc` as soon as a checkpoint `step` of its run (objects under `prefix`) is
    committed in the bucket; returns the run's objects at the kill."""
    try:
        deadline = time.time() + 180
        while not any(n.endswith(f"checkpoints/{step}/commit_success.txt")
                      for n in gcs.objects(BUCKET, prefix)):
            assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return gcs.objects(BUCKET, prefix)


@pytest.fixture(scope="module")
def runs(gcs, tmp_path_factory):
    """One uninterrupted `gancmp train` into the bucket and, beside it, one killed with SIGKILL
    after its first checkpoint, then run again to the end: (straight process, killed-and-resumed
    process, the killed run's objects at the kill, Local)."""
    gcs.make_bucket(BUCKET)
    local = Local(tmp_path_factory.mktemp("local"))

    def start(run: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(_command("train", "--workdir", f"gs://{BUCKET}/{run}", *TRAIN),
                                cwd=local.cwd, env=_env(gcs, local), text=True, **kwargs)

    straight = start("straight", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed = start("killed", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    at_kill = _kill_at_checkpoint(gcs, killed, "killed/", 20)
    out, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err
    resumed = _run(gcs, local, "train", "--workdir", f"gs://{BUCKET}/killed", *TRAIN)
    assert resumed.returncode == 0, resumed.stderr
    return out, resumed, at_kill, local


def test_train_writes_the_whole_trial_into_the_bucket_and_nothing_locally(gcs, runs):
    straight_out, _, _, local = runs
    names = gcs.objects(BUCKET, "straight/")
    top = sorted({n.split("/")[1] for n in names})
    assert top == ["bookkeeping.json", "checkpoints", "config.json", "result.json",
                   "samples.png", "tb"], names
    steps = sorted({int(n.split("/")[2]) for n in names if n.startswith("straight/checkpoints/")})
    assert steps == [20, 40, 60]
    assert [n for n in names if n.startswith("straight/tb/events.out.tfevents.")]
    result = json.loads(gcs.read(BUCKET, "straight/result.json"))
    assert result["status"] == "finished" and result["steps"] == 60
    assert result["samples"] == f"gs://{BUCKET}/straight/samples.png"
    assert gcs.read(BUCKET, "straight/samples.png").startswith(b"\x89PNG")
    assert f"result: gs://{BUCKET}/straight/result.json" in straight_out
    assert gcs.objects(BUCKET, "xla/"), "the compilation cache is in the bucket too"
    assert local.files() == [], "a run with a gs:// workdir left files on local disk"


def test_a_killed_train_resumes_from_the_bucket_bit_for_bit(gcs, runs):
    _, resumed, at_kill, _ = runs
    assert "killed/result.json" not in at_kill, "killed too late to test anything"
    assert "killed/train.lock" in at_kill  # the killed process's lock, left in the bucket
    assert "took over the lock of pid" in resumed.stderr
    names = gcs.objects(BUCKET, "killed/")
    assert "killed/train.lock" not in names
    straight = json.loads(gcs.read(BUCKET, "straight/result.json"))
    again = json.loads(gcs.read(BUCKET, "killed/result.json"))
    assert again["status"] == "finished" and again["steps"] == 60
    assert again["steps_this_run"] < 60  # it resumed from a checkpoint in the bucket
    assert again["final_losses"] == straight["final_losses"]
    assert gcs.read(BUCKET, "killed/samples.png") == gcs.read(BUCKET, "straight/samples.png")
    import orbax.checkpoint as ocp

    def final_state(run):
        with ocp.CheckpointManager(f"gs://{BUCKET}/{run}/checkpoints") as manager:
            return manager.restore(60, args=ocp.args.StandardRestore())

    a, b = final_state("straight"), final_state("killed")
    import jax

    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def sweeps(gcs, runs, tmp_path_factory):
    """The tiny sweep into the bucket twice at once: straight, through the counting proxy, and
    killed with SIGKILL after its group's first checkpoint, then run again to the end: (straight
    process, resumed process, the killed sweep's objects at the kill, Local, the straight run's
    uploads {object name: bytes sent}). The straight sweep compiles for itself: the counted
    traffic is the sweep's own; the killed and resumed ones share the gs:// compilation cache."""
    local = Local(tmp_path_factory.mktemp("sweep"))
    config = local.tmp / "sweep.py"  # a config file is Python code: read from local disk
    config.write_text(SWEEP)

    def args(run: str, cache: str = f"gs://{BUCKET}/xla") -> list[str]:
        return ["sweep", "--config", str(config), "--workdir", f"gs://{BUCKET}/{run}",
                "--noprogress", "--noreport", "--compilation_cache", cache]

    proxy = CountingProxy(gcs.url)
    try:
        straight = subprocess.Popen(
            _command(*args("sweep", "none")), cwd=local.cwd, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=_env(gcs, local, STORAGE_EMULATOR_HOST=proxy.url))
        killed = subprocess.Popen(_command(*args("killed-sweep")), cwd=local.cwd,
                                  env=_env(gcs, local), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        at_kill = _kill_at_checkpoint(gcs, killed, "killed-sweep/", EVERY)
        out, err = straight.communicate(timeout=300)
    finally:
        proxy.close()
    assert straight.returncode == 0, err
    resumed = _run(gcs, local, *args("killed-sweep"))
    assert resumed.returncode == 0, resumed.stderr
    config.unlink()
    sent = collections.Counter()
    for name, size in proxy.uploads:
        sent[name] += size
    return out, resumed, at_kill, local, sent


def _records(gcs, run: str) -> dict[str, dict]:
    from gancmp import storage

    records, bad = storage.read_jsonl(f"gs://{BUCKET}/{run}/results-0.jsonl")
    assert not bad and records
    assert len({r["trial_id"] for r in records}) == len(records), "a trial recorded twice"
    return {r["trial_id"]: r for r in records}


def test_a_sweep_and_its_report_live_in_the_bucket(gcs, sweeps):
    out, _, _, local, _ = sweeps
    assert "trials run: 2 (0 diverged)" in out
    report = _run(gcs, local, "report", f"gs://{BUCKET}/sweep", "--out",
                  f"gs://{BUCKET}/sweep/report")
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == f"gs://{BUCKET}/sweep/report/report.md"
    assert local.files() == []
    names = gcs.objects(BUCKET, "sweep/")
    records = list(_records(gcs, "sweep").values())
    assert len(records) == 2 and all(r["status"] == "finished" and r["evals"] for r in records)
    group = f"sweep/{records[0]['group_dir']}"
    for name in ("bookkeeping.json", "samples-0.png", "samples-1.png",
                 f"checkpoints/{STEPS}/commit_success.txt"):
        assert f"{group}/{name}" in names, name
    assert any(n.startswith(f"{group}/evals.jsonl.parts/") for n in names)  # appended parts
    assert any(n.startswith(f"{group}/tb/events.out.tfevents.") for n in names)
    for name in ("report.md", "ring8_budget.png", "ring8_NS_GAN_samples.png"):
        assert f"sweep/report/{name}" in names, name
    assert "| NS_GAN |" in gcs.read(BUCKET, "sweep/report/report.md").decode()
    assert not [n for n in names if n.endswith(".lock")]


def test_a_killed_sweep_resumes_from_the_bucket_to_the_same_records(gcs, sweeps):
    _, resumed, at_kill, local, _ = sweeps
    assert "killed-sweep/results-0.lock" in at_kill  # the killed process's lock, in the bucket
    assert not [n for n in at_kill if n.startswith("killed-sweep/results-0.jsonl")], (
        "killed too late to test a resume")
    assert "took over the lock of pid" in resumed.stderr
    assert "trials run: 2 (0 diverged), already finished: 0" in resumed.stdout
    straight, again = _records(gcs, "sweep"), _records(gcs, "killed-sweep")
    assert sorted(again) == sorted(straight)
    for trial_id, want in straight.items():
        got = again[trial_id]
        assert got["status"] == "finished" and got["steps"] == STEPS
        assert got["steps_this_run"] < STEPS  # resumed from its checkpoint in the bucket
        assert got["final_losses"] == want["final_losses"]  # bit for bit
        assert got["evals"] == want["evals"]
    group = next(iter(again.values()))["group_dir"]
    for i in range(2):
        assert (gcs.read(BUCKET, f"killed-sweep/{group}/samples-{i}.png")
                == gcs.read(BUCKET, f"sweep/{group}/samples-{i}.png"))
    assert not [n for n in gcs.objects(BUCKET, "killed-sweep/") if n.endswith(".lock")]
    assert local.files() == []


def _one_line(out: tuple[int, str], command: str) -> str:
    code, err = out
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"gancmp {command}: error: gs://")
    return err


def test_unusable_gs_paths_are_one_line_saying_what_to_do(gcs, tmp_path):
    """A bucket that does not exist; no credentials ($HOME without gcloud's, no key file, no
    metadata server, no emulator); gcsfs not installed. The three processes run at once."""
    local = Local(tmp_path)
    no_credentials = _env(None, local)
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"):
        no_credentials.pop(name, None)
    without_gcsfs = ("import sys; sys.modules['gcsfs'] = None  # as if not installed\n"
                     "from gancmp.cli import main; main(['gancmp', *sys.argv[1:]])")
    procs = [subprocess.Popen(args, cwd=local.cwd, env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for args, env in [
        (_command("train", "--workdir", "gs://no-such-bucket/run", *TRAIN), _env(gcs, local)),
        (_command("report", f"gs://{BUCKET}/sweep"), no_credentials),
        ([sys.executable, "-c", without_gcsfs, "report", f"gs://{BUCKET}/sweep"],
         _env(gcs, local))]]
    missing, credentials, gcsfs = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert "bucket no-such-bucket does not exist" in _one_line(missing, "train")
    line = _one_line(credentials, "report")
    assert "no Google Cloud credentials found" in line and "GOOGLE_APPLICATION_CREDENTIALS" in line
    assert "need gcsfs, which is not installed" in _one_line(gcsfs, "report")
    assert local.files() == []


def _state_bytes(record: dict) -> int:
    """S: the bytes of the stacked state of a group of K trials like `record`'s."""
    import jax

    from gancmp.train.state import abstract_states
    from gancmp.trial import make_trial

    trial = make_trial(ml_collections.ConfigDict(record["config"]), num_devices=1)
    states = abstract_states(trial.setup, trial.hparams, K)
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(states))


def test_each_checkpoint_sends_its_state_and_only_the_new_events(gcs, sweeps):
    """The straight sweep's uploads against the bound of the module docstring."""
    sent = {n: b for n, b in sweeps[4].items() if not n.startswith("xla/")}
    final = gcs.sizes(BUCKET, "sweep/")
    recs = list(_records(gcs, "sweep").values())
    assert len(recs) == K
    group = f"sweep/{recs[0]['group_dir']}/"
    state = _state_bytes(recs[0])

    def part(prefix: str) -> dict[str, int]:
        return {n: b for n, b in sent.items() if n.startswith(prefix)}

    for step in range(EVERY, STEPS + 1, EVERY):
        ckpt = sum(part(f"{group}checkpoints/{step}/").values())
        assert state / 2 <= ckpt <= 1.1 * state + 64 * 1024, (step, ckpt, state)  # compressed
    tb = part(f"{group}tb/")
    assert len(tb) == CHECKPOINTS  # one object per checkpoint
    for name, size in tb.items():
        assert final[name] <= size <= final[name] + 1024, name  # sent once
    assert max(tb.values()) <= 1.5 * min(tb.values())  # the new events, not the file so far
    once = {**part(f"{group}evals.jsonl.parts/"), **part("sweep/results-0.jsonl.parts/"),
            **part(f"{group}samples-")}
    assert len(part(f"{group}evals.jsonl.parts/")) == CHECKPOINTS
    assert len(part("sweep/results-0.jsonl.parts/")) == 1  # the group's records, one object
    for name, size in once.items():
        assert final[name] <= size <= final[name] + 1024, name
    rest = {n: b for n, b in sent.items()
            if not n.startswith((f"{group}checkpoints/", f"{group}tb/", f"{group}samples-",
                                 "sweep/results-0.jsonl.parts/"))}
    assert sum(rest.values()) <= 8 * 1024 * CHECKPOINTS, rest
    total = sum(sent.values())
    records = sum(part("sweep/results-0.jsonl.parts/").values())
    pictures = sum(part(f"{group}samples-").values())
    per_checkpoint = (total - records - pictures) / CHECKPOINTS
    assert per_checkpoint <= 1.1 * state + 64 * 1024 + max(tb.values()) + 8 * 1024

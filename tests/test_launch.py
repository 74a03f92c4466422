"""The launch recipes as written: `--watch` run against a fake gcloud (failed creates tried
again, a FAILED queued resource said in one line and requested again, a sweep waiting for
other shards started again, one commit shipped to every VM and into the records); `--dry_run`
prints every command (nothing runs: a `gcloud` that records its calls stays unused), with the
runtime image of each TPU generation, Python 3.11 and the lock plus the matching jax[tpu] /
jax[cuda12], the code copied to every worker, one job over all workers (no --shard),
data_dir, the Inception weights and --config.* / --trial overrides passed through, logs to the
bucket and a teardown line. `gancmp sweep --trial` sets fields of every study's trial
config."""

from __future__ import annotations

import os
import subprocess

import pytest

from gancmp.config import ConfigError, load_config_file
from gancmp.sweep import runner
from tests.helpers import ROOT

EXTRA = ["--", "--config.max_trials_per_group=16", "--trial", "num_d_steps=100"]


def _dry(tmp_path, script: str, *args: str) -> list[str]:
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    for tool in ("gcloud", "uv", "nvidia-smi"):
        (stub / tool).write_text(f"#!/bin/sh\necho \"$0 $*\" >> {tmp_path}/ran\nexit 1\n")
        (stub / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "DATA_DIR": "gs://b/tfds",
           "INCEPTION_WEIGHTS": "gs://b/inception.npz"}
    out = subprocess.run(["bash", os.path.join(ROOT, "experiments", script), "--dry_run", *args],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    ran = (tmp_path / "ran").read_text().splitlines() if (tmp_path / "ran").exists() else []
    assert all("uv" in line.split()[0] for line in ran), ran  # only `command -v uv` probes
    return out.stdout.splitlines()


def _one(lines: list[str], *words: str) -> str:
    found = [line for line in lines if all(w in line for w in words)]
    assert len(found) == 1, (words, lines)
    return found[0]


@pytest.mark.parametrize("accel, gcloud_type, image", [
    ("v4-32", "v4-32", "tpu-ubuntu2204-base"),
    ("v5litepod-16", "v5litepod-16", "v2-alpha-tpuv5-lite"),
    ("v5e-8", "v5litepod-8", "v2-alpha-tpuv5-lite"),  # gcloud's name for v5e
    ("v5p-8", "v5p-8", "v2-alpha-tpuv5"), ("v6e-8", "v6e-8", "v2-alpha-tpuv6e")])
def test_tpu_launch_dry_run_prints_every_command(tmp_path, accel, gcloud_type, image):
    lines = _dry(tmp_path, "tpu/launch.sh", "--spot", "pod", "us-central2-b", accel,
                 "gs://b/run/", "configs/sweeps/quick.py", *EXTRA)
    create = _one(lines, "tpu-vm create pod")
    assert f"--accelerator-type {gcloud_type} " in create and f"--version {image}" in create
    assert "--spot" in create
    commit = _head()
    assert "git -C" in _one(lines, "archive") and _one(lines, "archive").endswith(f"{commit} ")
    assert "--worker=all" in _one(lines, "tpu-vm scp")
    setup = _one(lines, "ssh pod", "uv venv")
    assert "--worker=all" in setup and "--python 3.11" in setup
    assert "requirements.lock" in setup and "jax[tpu]==$jaxver" in setup
    start = _one(lines, "ssh pod", "gancmp\\ sweep")
    assert "--worker=all" in start and "worker.sh\\ gs://b/run/logs" in start
    assert f"GANCMP_GIT_COMMIT={commit}" in start  # the records' commit: no .git there
    for part in ("--config\\ configs/sweeps/quick.py", "--workdir\\ gs://b/run\\ ",
                 "data_dir=gs://b/tfds", "fid.inception_weights=gs://b/inception.npz",
                 "--config.max_trials_per_group=16", "--trial\\ num_d_steps=100",
                 "--compilation_cache\\ gs://b/run/xla"):
        assert part in start, part
    assert "--shard" not in start  # one job over every worker
    assert _one(lines, "teardown:") == ("teardown: gcloud compute tpus tpu-vm delete pod "
                                        "--zone us-central2-b --quiet")


def test_tpu_launch_with_a_queued_resource(tmp_path):
    lines = _dry(tmp_path, "tpu/launch.sh", "--queued", "q", "us-east5-a", "v6e-16", "gs://b/r")
    create = _one(lines, "queued-resources create q")
    assert "--node-id q" in create and "--runtime-version v2-alpha-tpuv6e" in create
    assert "configs/sweeps/lucic2018.py" in _one(lines, "ssh q", "gancmp\\ sweep")
    assert "queued-resources delete q" in _one(lines, "teardown:")


def test_tpu_launch_refuses_a_local_workdir_and_an_unknown_accelerator():
    script = os.path.join(ROOT, "experiments", "tpu", "launch.sh")
    for args, said in ((["n", "z", "v4-8", "/tmp/run"], "gs://"),
                       (["n", "z", "v9-8", "gs://b/r"], "unknown ACCELERATOR_TYPE v9-8")):
        out = subprocess.run(["bash", script, "--dry_run", *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2 and said in out.stderr and out.stderr.count("\n") == 1


def test_gpu_launch_dry_run_prints_every_command(tmp_path):
    lines = _dry(tmp_path, "gpu/launch.sh", "gs://b/run", "configs/sweeps/quick.py", *EXTRA)
    assert "--python 3.11" in _one(lines, "uv venv")
    assert _one(lines, "cuda12").endswith("jax\\[cuda12\\]==" + _lock_jax() + " ")
    sweep = _one(lines, "gancmp sweep")
    for part in ("--config configs/sweeps/quick.py", "--workdir gs://b/run ",
                 "--trial data_dir=gs://b/tfds", "--trial fid.inception_weights=gs://b/incep",
                 "--config.max_trials_per_group=16", "--trial num_d_steps=100"):
        assert part in sweep, part
    assert "gs://b/run/logs/" in _one(lines, "gcloud storage cp")
    assert _one(lines, "teardown:")


def _head() -> str:
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def _lock_jax() -> str:
    lock = open(os.path.join(ROOT, "requirements.lock")).read().splitlines()
    return next(line.split("==")[1] for line in lock if line.startswith("jax=="))


def test_sweep_trial_overrides_reach_every_study():
    sweep = load_config_file(os.path.join(ROOT, "configs", "sweeps", "quick.py"))
    runner.override_trials(sweep, ["data_dir=gs://b/tfds", "num_d_steps=7",
                                   "fid.inception_weights=gs://b/w.npz", "eval.num_samples=9"])
    for study in sweep.studies:
        assert study.trial.data_dir == "gs://b/tfds" and study.trial.num_d_steps == 7
        assert study.trial.fid.inception_weights == "gs://b/w.npz"
        assert study.trial.eval.num_samples == 9
    for bad, said in (("num_d_step=3", "did you mean num_d_steps"),
                      ("num_d_steps=many", "expected an integer"), ("data_dir", "FIELD=VALUE")):
        with pytest.raises(ConfigError, match=said):
            runner.override_trials(sweep, [bad])



FAKE_GCLOUD = r"""#!/usr/bin/env bash
# a fake gcloud for launch.sh --watch: the VM's state, creates that fail, workers' exit codes
f=$FAKE
echo "gcloud $*" >> "$f/ran"
count() { local n=$(( $(cat "$f/$1" 2>/dev/null || echo 0) + 1 )); echo $n > "$f/$1"; echo $n; }
case "$*" in
  "compute tpus tpu-vm describe"* | "compute tpus queued-resources describe"*)
    st=$(cat "$f/state" 2>/dev/null || echo MISSING)
    [ "$st" = MISSING ] && exit 1
    echo "$st" ;;
  "compute tpus tpu-vm create"*)
    if [ "$(count creates)" -le "${FAIL_CREATES:-0}" ]; then
      echo "ERROR: no capacity" >&2; exit 1
    fi
    echo READY > "$f/state" ;;
  "compute tpus queued-resources create"*)
    if [ "$(count qcreates)" -le "${FAIL_QUEUED:-0}" ]; then echo FAILED > "$f/state"
    else echo ACTIVE > "$f/state"; fi ;;
  "compute tpus tpu-vm delete"* | "compute tpus queued-resources delete"*)
    echo MISSING > "$f/state" ;;
  "compute tpus tpu-vm scp"*)
    if [ "$(count copies)" -le "${FAIL_SCP:-0}" ]; then echo "ERROR: timeout" >&2; exit 1; fi ;;
  "compute tpus tpu-vm ssh"*)
    case "$*" in *worker.sh*) head -n1 "$f/codes" > "$f/exit"; sed -i 1d "$f/codes" ;; esac ;;
  "storage cat"*) cat "$f/exit" 2>/dev/null ;;
  *) echo "fake gcloud: unexpected $*" >&2; exit 3 ;;
esac
"""


def _watch(tmp_path, codes: list[int], *args: str, **env: str):
    """launch.sh --watch run for real against `FAKE_GCLOUD` (no waits: WATCH_INTERVAL_S and
    WATCH_BACKOFF_S 0); the workers "exit" with `codes` in turn, one per start. Returns (the
    process, the gcloud calls)."""
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "gcloud").write_text(FAKE_GCLOUD)
    (stub / "gcloud").chmod(0o755)
    (tmp_path / "codes").write_text("".join(f"{c}\n" for c in codes))
    name = f"watch-{tmp_path.name}"[:40]
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "FAKE": str(tmp_path),
           "WATCH_INTERVAL_S": "0", "WATCH_BACKOFF_S": "0", **env}
    try:
        out = subprocess.run(["bash", os.path.join(ROOT, "experiments", "tpu", "launch.sh"),
                              "--watch", *args, name, "us-central2-b", "v4-8", "gs://b/run"],
                             capture_output=True, text=True, env=env, timeout=120)
    finally:
        for leftover in [f for f in os.listdir("/tmp") if f.startswith(f"gancmp-{name}-")]:
            os.remove(os.path.join("/tmp", leftover))
    return out, (tmp_path / "ran").read_text().splitlines()


def test_watch_retries_failed_creates_and_restarts_a_waiting_sweep(tmp_path):
    """No Spot capacity twice: the create is tried again (backoff), not the end of --watch; a
    worker stopped by SIGTERM (143) gets a fresh VM running the same commit; a sweep that exits
    75 (a phase waits for other shards) is started again, and only exit 0 is "finished"."""
    out, ran = _watch(tmp_path, [143, 75, 0], "--spot", FAIL_CREATES="2")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("could not create") == 2 and "trying again in 0 s" in out.stderr
    lines = out.stdout.splitlines()
    assert lines.count("sweep finished") == 1
    events = [kind for line in lines for kind, words in (
        ("recreated", "recreating it"), ("restarted", "waits for other shards (exit 75)"),
        ("finished", "sweep finished")) if words in line]
    assert events == ["recreated", "restarted", "finished"]
    creates = [c for c in ran if "tpu-vm create" in c]
    assert len(creates) == 4  # 2 failed, the first VM, the one after the preemption
    starts = [c for c in ran if "worker.sh" in c]
    assert len(starts) == 3 and len({c for c in starts}) == 1  # the same command, same commit
    assert all(f"GANCMP_GIT_COMMIT={_head()}" in c for c in starts)
    copies = {c.split()[5] for c in ran if "tpu-vm scp" in c}
    assert len(copies) == 1 and _head()[:12] in copies.pop()  # one archive of one commit


def test_watch_says_a_failed_queued_resource_in_one_line_and_requests_it_again(tmp_path):
    out, ran = _watch(tmp_path, [0], "--queued", FAIL_QUEUED="1")
    assert out.returncode == 0, out.stderr
    failed = [line for line in out.stderr.splitlines() if "is FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith("launch.sh: queued resource watch-")
    assert len([c for c in ran if "queued-resources delete" in c]) == 1
    assert len([c for c in ran if "queued-resources create" in c]) == 2
    assert out.stdout.splitlines().count("sweep finished") == 1


def test_watch_starts_again_a_sweep_it_could_not_start(tmp_path):
    """The VM answers no ssh/scp at first (lost meanwhile): --watch says so and starts the
    sweep at its next look, rather than ending."""
    out, ran = _watch(tmp_path, [0], FAIL_SCP="1")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("could not start the sweep on watch-") == 1
    assert len([c for c in ran if "tpu-vm scp" in c]) == 2
    assert len([c for c in ran if "worker.sh" in c]) == 1
    assert out.stdout.splitlines().count("sweep finished") == 1


def test_records_carry_the_commit_a_launcher_passes(monkeypatch):
    monkeypatch.setenv(runner.COMMIT_ENV, "0123abcd" * 5)
    assert runner.provenance()["git_commit"] == "0123abcd" * 5
    monkeypatch.delenv(runner.COMMIT_ENV)
    assert runner.provenance()["git_commit"] == _head()  # a checkout: its HEAD

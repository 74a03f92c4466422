"""experiments/gpu/check.sh as written (`--dry_run`: its plan and every command, nothing run),
experiments/gpu/prepare_wheels.sh's pins, and the check's summary (`gancmp.bench.gpu_check`)
against hand-worked utilisations and re-priced hours."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from gancmp.bench import gpu_check
from tests.helpers import ROOT
from tests.test_cli import run

CHECK = os.path.join(ROOT, "experiments", "gpu", "check.sh")
PREPARE = os.path.join(ROOT, "experiments", "gpu", "prepare_wheels.sh")


def _dry(tmp_path, script: str, *args: str, extra_env: dict | None = None
         ) -> tuple[list[str], str]:
    """stdout lines of `script --dry_run args`, with python3 and nvidia-smi stubs that record
    any call (a dry run makes none)."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    for tool in ("python3", "nvidia-smi", "pip"):
        (stub / tool).write_text(f"#!/bin/sh\necho \"$0 $*\" >> {tmp_path}/ran\nexit 1\n")
        (stub / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHON", "CHECK_TOTAL_S", "CHECK_LIMIT_SCALE", "CHECK_ONLY",
                        "CHECK_WHEELS", "CHECK_WORK")}
    env.update(extra_env or {})
    env["PATH"] = f"{stub}:{os.environ['PATH']}"
    out = subprocess.run(["bash", script, "--dry_run", *args], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "ran").exists(), (tmp_path / "ran").read_text()
    return out.stdout.splitlines(), out.stderr


def _one(lines: list[str], *words: str) -> str:
    found = [line for line in lines if all(w in line for w in words)]
    assert len(found) == 1, (words, lines)
    return found[0]


def test_check_dry_run_prints_its_plan_and_every_step(tmp_path):
    out = str(tmp_path / "out")
    lines, _ = _dry(tmp_path, CHECK, out)
    # 450 s + the summary's 20 s + 2 × 5 s of kill grace: 8 minutes
    assert "cut to what is left of 450 s" in lines[0]
    pip = _one(lines, "pip install --no-index")
    assert f"--target {out}.work/site" in pip and "--no-deps" in pip  # never the system
    steps = [line for line in lines if line.startswith("timeout ") and "> " in line]
    names = [re.search(r"> \S+/([^/.]+)\.(json|txt)$", s).group(1) for s in steps]
    assert names == ["versions", "plan", "infogan_k1", "infogan_k16", "infogan_fixed", "fid",
                     "torch_inception", "sweep", "infogan_k64", "summary"]
    limits = {n: int(s.split()[1]) for n, s in zip(names, steps, strict=True)}
    assert limits["summary"] == 20 and all(0 < v <= 150 for v in limits.values())
    # both loop kinds: the same command but the loop count, at 100 iterations per call
    arg, fixed = _one(lines, "--trials 16 ", "infogan_k16.json"), _one(lines, "loop_count=fixed")
    assert "--config.steps_per_call=100 " in arg and "--config.scan_unroll=rolled" in arg
    assert fixed.replace(" --config.loop_count=fixed", "").replace("infogan_fixed",
                                                                   "infogan_k16") == arg
    fid = _one(lines, "--what fid")
    assert "--fid_batch_sizes 50\\,200\\,500 " in fid and "--fid_precision auto" in fid
    assert "--batch_sizes 50\\,200\\,500 " in _one(lines, "torch_inception.py")
    sweep = _one(lines, "gancmp.cli sweep")
    assert "experiments/gpu/tiny_sweep.py" in sweep and "--trial num_d_steps=1000 " in sweep
    plan = _one(lines, "gancmp.cli plan")
    assert "env JAX_PLATFORMS=cpu" in plan and "--accelerator 1xH100 --json" in plan


def test_check_tiny_dry_run_is_small_and_a_bad_flag_is_one_line(tmp_path):
    lines, _ = _dry(tmp_path, CHECK, "--tiny", str(tmp_path / "out"))
    assert "times 4" in lines[0]
    assert [k for k in (1, 2, 16, 64) if any(f"infogan_k{k}.json" in x for x in lines)] == [1, 2]
    assert "--fid_batch_sizes 2\\,4 " in _one(lines, "--what fid")
    assert "--config.width_multiplier=0.25" in _one(lines, "infogan_k1.json")
    assert "--trial eval.num_samples=64" in _one(lines, "gancmp.cli sweep")
    bad = subprocess.run(["bash", CHECK, "--fast"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--fast" in bad.stderr


def test_check_only_reruns_the_named_steps_and_another_wheels_folder(tmp_path):
    out = str(tmp_path / "out")
    lines, _ = _dry(tmp_path, CHECK, out, extra_env={"CHECK_ONLY": "fid sweep",
                                                     "CHECK_WHEELS": "/w/312"})
    assert "--find-links /w/312 " in _one(lines, "pip install")
    steps = [line for line in lines if line.startswith("timeout ") and "> " in line]
    assert [s.rsplit("/", 1)[1] for s in steps] == ["fid.json", "sweep.txt", "summary.txt"]
    assert not any("steps.tsv" in line for line in lines)  # the rerun's rows are appended


def test_prepare_wheels_downloads_the_locked_versions_for_the_gpu_python(tmp_path):
    lines, _ = _dry(tmp_path, PREPARE, str(tmp_path / "w"))
    cmd = _one(lines, "pip download")
    assert "--only-binary=:all: --no-deps" in cmd and "--python-version 3.12 " in cmd
    assert "--platform manylinux2014_x86_64" in cmd and f"--dest {tmp_path}/w " in cmd
    with open(os.path.join(ROOT, "requirements.lock")) as f:
        lock = dict(line.split()[0].split("==") for line in f if "==" in line)
    pins = [w for w in cmd.split() if "==" in w]
    for want in ("ml_collections", "tensorboardX", "matplotlib", "protobuf"):
        assert f"{want}=={lock[want]}" in pins
    assert len(pins) == 15 and all(p.split("==")[1] == lock[p.split("==")[0]] for p in pins)


def _write(out, name: str, value) -> None:
    (out / f"{name}.json").write_text("some log line\n" + json.dumps(value) + "\n")


def _bench(k: int, step_ms: float, gflops: float, per_call: int = 100, loop="argument"):
    return {"trials": k, "step_ms": step_ms, "images_per_sec": 64 * k / step_ms * 1e3,
            "gflops_per_sec": gflops, "trials_per_hour": 1.0, "steps_per_call": per_call,
            "matmul_precision": "tensorfloat32", "loop": loop, "first_call_s": 30.0}


def test_summary_measured_utilisation_and_repriced_hours(tmp_path):
    # H100 TF32 peak 495 TFLOP/s: 49,500 GFLOP/s is 10 %, 24,750 is 5 %
    _write(tmp_path, "infogan_k1", _bench(1, 2.0, 9_900))
    _write(tmp_path, "infogan_k16", _bench(16, 10.0, 49_500))
    _write(tmp_path, "infogan_fixed", _bench(16, 9.8, 50_000, loop="fixed"))
    _write(tmp_path, "fid", {"matmul_precision": "tensorfloat32", "flop_per_image": 11.5e9,
                             "by_batch": {"50": {"images_per_sec": 2152.2,
                                                 "gflops_per_sec": 24_750},
                                          "500": {"images_per_sec": 4304.3,
                                                  "gflops_per_sec": 49_500}}})
    _write(tmp_path, "torch_inception", {"precision": "tensorfloat32",
                                         "by_batch": {"50": {"images_per_sec": 1076.1}}})
    _write(tmp_path, "plan", {"accelerator": "1xH100", "trials": 7200, "programs": 335,
                              "hours_parts": {"train": 40.0, "eval": 8.0, "compile": 0.8},
                              "utilisation": {"train": {"gpu": 0.3}, "eval": {"gpu": 0.5}}})
    md, data = gpu_check.summary(str(tmp_path), plan_k=16)
    u = data["measured_utilisation"]
    assert u["train"] == pytest.approx(0.1) and u["eval"] == pytest.approx(0.05)
    # 40 h × 0.3 / 0.1 + 8 h × 0.5 / 0.05 + 0.8 h
    assert data["repriced_hours"] == pytest.approx({"train": 120.0, "eval": 80.0,
                                                    "compile": 0.8, "total": 200.8})
    assert "| measured (train step at K = 16, Inception at batch 50) | 0.1 | 0.05 | " \
           "120.0 | 80.0 | 0.80 | 200.8 |" in md
    assert "| 50 | 2152 | 24750 | 5.0 % | 1076 | 2.00× |" in md
    assert "10.000 / 9.800 ms = 1.020× the step time (+200 µs per iteration)" in md
    assert "Tiny sweep: no records" in md  # what did not run says so


def test_summary_flags_loop_kinds_at_different_calls_and_survives_missing_files(tmp_path):
    _write(tmp_path, "infogan_k16", _bench(16, 10.0, 49_500, per_call=100))
    _write(tmp_path, "infogan_fixed", _bench(16, 9.0, 55_000, per_call=25, loop="fixed"))
    md, data = gpu_check.summary(str(tmp_path), plan_k=64)  # K = 64 not run: the largest K
    assert "(NOT the same: not comparable)" in md
    assert data["measured_utilisation"]["which"].startswith("train step at K = 16")
    assert data["repriced_hours"] is None and "plan: not run" in md


def test_bench_fid_refuses_bad_batch_sizes_in_one_line():
    out = run("bench", "--what", "fid", "--fid_batch_sizes", "50,0")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "gancmp bench: error: --fid_batch_sizes and --fid_batches: must be positive"]
    out = run("bench", "--what", "fid", "--fid_batch_sizes", "50", "--fid_precision", "bf16")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "gancmp bench: error: --fid_precision: unknown 'bf16' on cpu; allowed on cpu: auto, "
        "float32"]


def test_fid_batches_prices_each_batch_at_the_trials_precision(monkeypatch):
    from gancmp.bench import steps

    calls = []

    def fake(n, batch_size, precision):  # 2 s for any batch: images/s = n / 2
        calls.append((n, batch_size, precision))
        return {"images_per_sec": n / 2.0, "precision": precision}

    monkeypatch.setattr(steps, "fid_features", fake)
    seen = []
    out = steps.fid_batches([50, 200], batches=3, precision="auto",
                            on_batch=lambda so_far: seen.append(list(so_far["by_batch"])))
    assert seen == [["50"], ["50", "200"]]  # each size reported as soon as it is measured
    assert out["matmul_precision"] == "float32"  # "auto" on CPU, as a trial's FID
    assert calls == [(150, 50, "float32"), (600, 200, "float32")]
    # the FID Inception at 299×299: 5.71 GMAC per image, torchvision's published figure for
    # Inception-v3 (whose last blocks differ only in pooling)
    assert 2 * 5.6e9 < out["flop_per_image"] < 2 * 5.8e9
    r = out["by_batch"]["200"]
    assert r["gflops_per_sec"] == pytest.approx(300.0 * out["flop_per_image"] / 1e9)
    with pytest.raises(ValueError, match="allowed on cpu: auto, float32"):
        steps.fid_batches([50], precision="bfloat16")

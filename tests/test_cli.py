"""The command line end to end: the README's first command on a tiny budget, and bad input."""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers import CPU_COMPILE_FLAGS, ROOT, gancmp_command


def run(*args, timeout=300, devices=1, **kwargs):
    flags = CPU_COMPILE_FLAGS + (f" --xla_force_host_platform_device_count={devices}"
                                 if devices > 1 else "")
    env = {"GANCMP_COMPILATION_CACHE": "none", **os.environ, "XLA_FLAGS": flags,
           "JAX_PLATFORMS": "cpu", **kwargs.pop("env", {})}
    return subprocess.run(gancmp_command(*args), cwd=kwargs.pop("cwd", ROOT), capture_output=True,
                          text=True, timeout=timeout, env=env, **kwargs)


def test_train_ring8_end_to_end(tmp_path):
    workdir = tmp_path / "r"
    out = run("train", "--config", "configs/ring8_mlp.py", "--workdir", str(workdir),
              "--config.num_d_steps=300", "--config.checkpoint_every=100", "--noprogress")
    assert out.returncode == 0, out.stderr
    result = json.loads((workdir / "result.json").read_text())
    assert result["status"] == "finished" and result["steps"] == 300
    assert result["method"] == "NS_GAN" and result["config"]["num_d_steps"] == 300
    assert (workdir / "samples.png").stat().st_size > 1000
    assert sorted(os.listdir(workdir / "checkpoints")) == ["100", "200", "300"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir / "tb"))
    # idempotent: a second run reports the finished trial, trains nothing, rewrites nothing
    recorded = (workdir / "result.json").read_bytes()
    again = run("train", "--config", "configs/ring8_mlp.py", "--workdir", str(workdir),
                "--config.num_d_steps=300", "--config.checkpoint_every=100", "--noprogress")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already finished: 300/300 D steps of NS_GAN on ring8 in ")
    assert again.stdout.count("\n") == 1 and "left as recorded in" in again.stdout
    assert (workdir / "result.json").read_bytes() == recorded
    # gancmp eval scores every checkpoint into result.json, once
    ev = run("eval", "--workdir", str(workdir), "--num_samples", "2000")
    assert ev.returncode == 0, ev.stderr
    result = json.loads((workdir / "result.json").read_text())
    assert [e["step"] for e in result["evals"]] == [100, 200, 300]
    assert result["metric"] == "modes_covered" and result["metric_setup"]["num_samples"] == 2000
    assert all(0 <= e["modes_covered"] <= 8 and e["status"] == "ok" for e in result["evals"])
    assert result["best"]["value"] == max(e["modes_covered"] for e in result["evals"])
    assert result["status"] == "finished"  # the training record is kept
    again = run("eval", "--workdir", str(workdir), "--num_samples", "2000")
    assert again.returncode == 0 and "step 100:" not in again.stdout  # nothing re-evaluated
    assert len((workdir / "evals.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--config.method=NOPE"], "config.method: unknown 'NOPE'; allowed: MM_GAN, NS_GAN"),
        (["--config.num_d_steps=0"], "config.num_d_steps: must be a positive integer"),
        (["--config.batch_size=6", "--config.num_devices=4"], "not divisible"),
        (["--config.dataset=triangles"], "config.arch: 'mlp' cannot take examples"),
        (["--config.lr=abc"], "lr"),
        (["--config.nonexistent=1"], "nonexistent"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, expected):
    out = run("train", "--config", "configs/ring8_mlp.py", "--workdir", str(tmp_path), *args,
              timeout=120, devices=4)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    assert expected in out.stderr


def test_unknown_command_and_missing_workdir():
    out = run("fly", timeout=60)
    assert out.returncode == 2 and "allowed: sweep, report, train" in out.stderr
    out = run("train", "--config", "configs/ring8_mlp.py", timeout=60)
    assert out.returncode == 2 and "--workdir" in out.stderr and "Traceback" not in out.stderr
    out = run("eval", "--workdir", "/nonexistent/trial", timeout=60)
    assert out.returncode == 2 and "holds no trial" in out.stderr and "Traceback" not in out.stderr
    out = run("convert-inception", "--src", "/nonexistent.pth", "--dst", "/tmp/x.npz", timeout=60)
    assert out.returncode == 2 and "convert-inception" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("signum, code, by", [(signal.SIGTERM, 143, "SIGTERM"),
                                               (signal.SIGINT, 130, "Ctrl-C")])
def test_sigterm_checkpoints_and_resume_finishes(tmp_path, signum, code, by):
    """SIGTERM (a preemption) and Ctrl-C stop at a call boundary with a checkpoint, exit code
    128 + the signal."""
    workdir = tmp_path / "p"
    args = ("train", "--config", "configs/ring8_mlp.py", "--workdir", str(workdir),
            "--config.num_d_steps=200000", "--config.checkpoint_every=100000",
            "--config.steps_per_call=10", "--noprogress")
    proc = subprocess.Popen(gancmp_command(*args), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "XLA_FLAGS": CPU_COMPILE_FLAGS})
    deadline = time.time() + 120
    while not (workdir / "tb").exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # training is under way
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err  # not finished: 128 + the signal, as a shell reports it
    assert f"interrupted ({by}) at " in err and "Traceback" not in err
    result = json.loads((workdir / "result.json").read_text())
    assert result["status"] == "interrupted"
    saved = [int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit()]
    assert saved == [result["steps"]] and 0 < result["steps"] < 200000
    assert result["steps"] % 10 == 0  # a call boundary


def test_main_job_sweep_end_to_end(tmp_path):
    """`gancmp sweep` on the README's quick sweep, shrunk to a few steps and trials: both studies
    (ring8 with tuned + seeds phases, triangles with one shared setting and two seeds), ending
    with report.md."""
    config = tmp_path / "tiny_quick.py"
    config.write_text(
        "import importlib.util, os\n"
        f"spec = importlib.util.spec_from_file_location('q', {ROOT!r} + "
        "'/configs/sweeps/quick.py')\n"
        "quick = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(quick)\n\n\n"
        "def get_config():\n"
        "    c = quick.get_config()\n"
        "    ring, polygons = c.studies\n"
        "    ring.methods, polygons.methods = 'NS_GAN,LSGAN', 'NS_GAN'\n"
        "    ring.trial.update(num_d_steps=100, checkpoint_every=50)\n"
        "    ring.trial.eval.num_samples = 500\n"
        "    ring.phases[0].num_settings = 2\n"
        "    ring.phases[1].num_seeds = 2\n"
        "    polygons.trial.update(num_d_steps=4, checkpoint_every=4, batch_size=16)\n"
        "    polygons.trial.eval.update(num_samples=64, bank_size=512, calibration_size=64,\n"
        "                               recall_size=4, restarts=1, steps=5)\n"
        "    return c\n")
    workdir = tmp_path / "quick"
    cache = tmp_path / "xla_cache"
    out = run("sweep", "--config", str(config), "--workdir", str(workdir), "--noprogress",
              timeout=600, env={"GANCMP_COMPILATION_CACHE": str(cache)})
    assert out.returncode == 0, out.stderr[-3000:]
    report = workdir / "report" / "report.md"
    assert f"report: {report}" in out.stdout
    text = report.read_text()
    for heading in ("## ring8", "## triangles", "| NS_GAN |", "| LSGAN |", "ring8_budget.png"):
        assert heading in text
    records = [json.loads(line) for line in (workdir / "results-0.jsonl").read_text().splitlines()]
    # ring tuned + ring seeds + triangles shared (one method, one setting, seeds 0 and 1)
    assert len(records) == 2 * 2 + 2 * 2 + 2
    assert {r["seed"] for r in records if r["study"] == "triangles"} == {0, 1}
    assert "(2) |" in text.split("## triangles")[1]  # its seeds column: the one setting's 2 seeds
    assert {r["status"] for r in records} == {"finished"}
    # on a CPU the sweep splits it into one device per core and spreads each group of at least
    # that many trials over them (ring8: groups of 2); a single trial runs on one device
    cores = len(os.sched_getaffinity(0))
    layouts = {r["study"]: (r["parallelism"], r["num_devices"]) for r in records}
    assert layouts["ring8"] == (("trials", cores) if cores == 2 else ("data", 1))
    assert layouts["triangles"] == layouts["ring8"]  # a pair of trials per method
    assert len(list(cache.iterdir())) > 5  # compiled programs kept for the next group or run

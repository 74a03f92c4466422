"""A pod slice is one job: two CPU processes on localhost (2 + 2 devices, gloo collectives) run a
tiny sweep as one `jax.distributed` job under the accelerator layout policy (`sweep.layout =
"accelerator"`: the memory probe, K per chip from compiled memory, padding, compile-ahead), each
group trial-parallel over all 4 devices, and process 0 writes the records of every trial — the
same records, to float rounding, as one process over 4 devices under the same policy (groups of
2 padded to 4, one trial per device), each process compiling the next group's program in a
thread as on a TPU pod. The one process is this test process (4 simulated devices and the
CLI's XLA flags: tests/conftest.py), running the `runner.run_sweep` that `gancmp sweep` runs.
No process of the job ever compiles a program for devices it cannot address
(`tests/addressable_guard.py` checks every compilation). A process killed mid-sweep
stops the other within a bounded time with one line; both started again, the job resumes and runs
nothing that had finished."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from gancmp.config import load_config_file
from gancmp.sweep import runner
from tests.addressable_guard import CHECKED, FOREIGN
from tests.helpers import CPU_COMPILE_FLAGS, ROOT, tiny_ring_sweep

GUARDED = [sys.executable, "-c", "import tests.addressable_guard as g; g.main()"]

# as on a TPU pod (compile_ahead "auto" is on under this policy: WGAN's group compiles while
# NS_GAN's trains); a CPU device reports no memory, so the sweep names a chip's
SWEEP = tiny_ring_sweep("pod", "NS_GAN,WGAN", num_d_steps=20, checkpoint_every=10,
                        num_samples=200,
                        sweep="    c.layout = 'accelerator'\n    c.device_memory_gib = 1.0\n")
LOST_WITHIN_S = 60  # a killed process's partner stops by itself within this
HANG_S = float(os.environ.get("POD_DEADLINE", 240))  # a job still running after this hangs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _sweep(tmp_path, workdir, devices: int, process: tuple[int, int, int] | None = None
           ) -> subprocess.Popen:
    config = tmp_path / "sweep.py"
    if not config.exists():
        config.write_text(SWEEP)
    args = GUARDED + ["sweep", "--config", str(config), "--workdir", str(workdir),
                          "--noprogress", "--noreport", "--compilation_cache",
                          str(tmp_path / f"xla{devices}")]
    if process is not None:
        port, count, index = process
        args += ["--coordinator_address", f"localhost:{port}", "--num_processes", str(count),
                 "--process_id", str(index)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONFAULTHANDLER": "1",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {CPU_COMPILE_FLAGS}"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _job(tmp_path, workdir) -> list[subprocess.Popen]:
    port = _free_port()
    return [_sweep(tmp_path, workdir, 2, (port, 2, i)) for i in range(2)]


def _abort(procs: list[subprocess.Popen], why: str) -> AssertionError:
    """Stops a job that went wrong and returns an error with what each process printed: Python's
    faulthandler (PYTHONFAULTHANDLER) prints every thread's stack on SIGABRT, so a hang shows
    where each process waits."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGABRT)
    outs = [p.communicate() for p in procs]
    return AssertionError(f"{why}; return codes {[p.returncode for p in procs]}" + "".join(
        f"\n--- process {i}:\n{out[-1500:]}\n{err[-6000:]}" for i, (out, err) in enumerate(outs)))


def _finish(procs: list[subprocess.Popen], timeout: float = HANG_S) -> list[str]:
    deadline = time.time() + timeout
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=max(deadline - time.time(), 1)))
        except subprocess.TimeoutExpired:
            raise _abort(procs, f"not finished within {timeout} s") from None
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert FOREIGN not in err, err[-3000:]  # compile-ahead's failures are only logged
        checked = [line for line in err.splitlines() if line.startswith(CHECKED)]
        assert checked and int(checked[-1].split()[-1]) > 0, err[-3000:]
    return [out for out, _ in outs]


def _records(workdir) -> dict[str, dict]:
    lines = [json.loads(line) for line in open(workdir / "results-0.jsonl")]
    ids = [r["trial_id"] for r in lines]
    assert len(ids) == len(set(ids)), "a trial recorded twice"
    return {r["trial_id"]: r for r in lines}


def test_two_processes_run_one_sweep_as_one_process_does_and_resume_after_a_kill(tmp_path):
    single = tmp_path / "single"
    (tmp_path / "sweep.py").write_text(SWEEP)
    assert jax.device_count() == 4
    runner.run_sweep(load_config_file(str(tmp_path / "sweep.py")), str(single), progress=False,
                     log=lambda *a: None)
    reference = _records(single)
    assert len(reference) == 4

    pod = tmp_path / "pod"
    procs = _job(tmp_path, pod)
    results = pod / "results-0.jsonl"
    deadline = time.time() + HANG_S
    while not (results.exists() and results.stat().st_size):
        if any(p.poll() is not None for p in procs) or time.time() > deadline:
            raise _abort(procs, "no record appeared")
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)  # a worker loses the job (its VM is gone)
    procs[1].wait()
    try:
        _, err = procs[0].communicate(timeout=LOST_WITHIN_S)
    finally:
        procs[0].kill()
    assert procs[0].returncode == 1, err[-3000:]
    message = [line for line in err.splitlines() if line.startswith("gancmp sweep: error:")]
    assert len(message) == 1 and "process 0 of the job lost contact" in message[0], err[-3000:]
    assert "start the same command again on every host" in message[0]
    done_before = set(_records(pod))
    assert 0 < len(done_before) < 4, "killed too late to test a resume"

    outs = _finish(_job(tmp_path, pod))
    for out in outs:  # both processes skip the same finished trials
        assert f"already finished: {len(done_before)}" in out, out
        assert f"trials run: {4 - len(done_before)} " in out, out
    resumed = _records(pod)
    assert sorted(resumed) == sorted(reference)
    for trial_id, want in reference.items():
        got = resumed[trial_id]
        assert got["num_devices"] == want["num_devices"] == 4
        assert got["parallelism"] == want["parallelism"] == "trials"
        assert [e["step"] for e in got["evals"]] == [e["step"] for e in want["evals"]] == [10, 20]
        for name, value in want["final_losses"].items():
            np.testing.assert_allclose(got["final_losses"][name], value, rtol=1e-5, atol=1e-6)
        for mine, theirs in zip(got["evals"], want["evals"], strict=True):
            for key, value in theirs.items():
                if isinstance(value, float):
                    np.testing.assert_allclose(mine[key], value, rtol=1e-5, atol=1e-6)
                else:
                    assert mine[key] == value, (trial_id, key)
    for r in resumed.values():  # process 0 drew every trial, wherever it trained
        assert (pod / r["group_dir"] / f"samples-{r['group_index']}.png").exists()

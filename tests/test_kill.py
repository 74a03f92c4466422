"""Processes killed for real, and two processes on one workdir: `gancmp sweep` killed with
kill -9 and restarted records exactly what an uninterrupted run records, once each; a second
`gancmp sweep` or `gancmp train` on a workdir in use refuses in one line; a preemption notice
(SIGTERM) during an evaluation or between device calls stops the run with its checkpoint saved."""

import json
import os
import random
import signal
import subprocess
import sys
import time

from gancmp import records
from gancmp.train import workdir as workdir_lib
from gancmp.trial import make_trial
from tests.helpers import CPU_COMPILE_FLAGS, ROOT, gancmp_command, group_of, tiny_ring_sweep

SWEEP = tiny_ring_sweep("kill", "NS_GAN,WGAN", num_d_steps=40, checkpoint_every=20)


def _env():
    return {**os.environ, "XLA_FLAGS": CPU_COMPILE_FLAGS, "JAX_PLATFORMS": "cpu"}


def _sweep_args(tmp_path, workdir):
    config = tmp_path / "sweep.py"
    if not config.exists():
        config.write_text(SWEEP)
    return gancmp_command("sweep", "--config", str(config), "--workdir", str(workdir),
                          "--noprogress", "--noreport", "--compilation_cache",
                          str(tmp_path / "xla"))


def _sweep(tmp_path, workdir):
    out = subprocess.run(_sweep_args(tmp_path, workdir), cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=_env())
    assert out.returncode == 0, out.stderr
    return out


def _recorded(workdir):
    """Each trial id's record (the raw lines, torn ones aside: each id exactly once)."""
    path = records.results_path(str(workdir), 0)
    lines = []
    for line in open(path).read().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # the torn line of the killed process
    ids = [r["trial_id"] for r in lines]
    assert len(ids) == len(set(ids)), ids
    return {r["trial_id"]: r for r in lines}


def test_a_sweep_killed_with_sigkill_and_restarted_records_each_trial_once(tmp_path):
    _sweep(tmp_path, tmp_path / "straight")
    straight = _recorded(tmp_path / "straight")
    assert len(straight) == 4

    killed = tmp_path / "killed"
    results = records.results_path(str(killed), 0)
    delay = random.uniform(0.0, 0.3)
    proc = subprocess.Popen(_sweep_args(tmp_path, killed), cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (os.path.exists(results) and os.path.getsize(results)):
            assert proc.poll() is None and time.time() < deadline, "no record appeared"
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(_recorded(killed)) < 4, "killed too late to test anything"
    again = _sweep(tmp_path, killed)
    assert "took over the lock of pid" in again.stderr
    restarted = _recorded(killed)
    assert sorted(restarted) == sorted(straight), f"killed {delay:.2f} s after the first record"
    for trial_id, r in straight.items():
        mine = restarted[trial_id]
        for key in ("status", "steps", "evals", "best", "final_losses", "hparams", "seed"):
            assert mine[key] == r[key], (trial_id, key, delay)


def _hold(path):
    """A process that holds the lock `path` until killed."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom gancmp import storage\n"
         "with storage.lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n",
         path], stdout=subprocess.PIPE, text=True)


def test_a_second_process_on_a_workdir_in_use_refuses_in_one_line(tmp_path):
    holder = _hold(records.lock_path(str(tmp_path / "s"), 0))
    trainer = _hold(os.path.join(str(tmp_path / "t"), workdir_lib.LOCK_FILE))
    try:
        assert holder.stdout.readline() == "held\n" and trainer.stdout.readline() == "held\n"
        out = subprocess.run(_sweep_args(tmp_path, tmp_path / "s"), cwd=ROOT,
                             capture_output=True, text=True, timeout=300, env=_env())
        assert out.returncode == 2, out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
        assert out.stderr.startswith("gancmp sweep: error: ")
        assert f"in use by pid {holder.pid} on " in out.stderr and " since 20" in out.stderr
        out = subprocess.run(
            gancmp_command("train", "--config", "configs/ring8_mlp.py", "--workdir",
                     str(tmp_path / "t"), "--noprogress"), cwd=ROOT, capture_output=True,
            text=True, timeout=300, env=_env())
        assert out.returncode == 2, out.stderr
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("gancmp train: error: ")
        assert f"in use by pid {trainer.pid} on " in out.stderr
        assert os.listdir(tmp_path / "t") == [workdir_lib.LOCK_FILE]
    finally:
        for p in (holder, trainer):
            p.kill()
            p.wait()


def test_sigterm_between_calls_or_during_an_evaluation_stops_with_the_checkpoint_saved(
        tmp_path, monkeypatch):
    """A preemption notice (SIGTERM) between device calls: the checkpoint of the stop is saved
    and not evaluated (off the schedule; the notice is short). One that arrives while a
    checkpoint is being evaluated (which can outlast the ~30 s notice) stops the evaluation at
    once, with the checkpoint on disk (the asynchronous save waited for). Either way the trial
    is `interrupted`, and the resumed run evaluates exactly the scheduled checkpoints, the
    interrupted evaluation's first."""
    from gancmp.train import loop
    from gancmp.train.checkpoint import Checkpoints
    from tests.helpers import load_config

    config = load_config("ring8_mlp", num_d_steps=40, checkpoint_every=20, batch_size=32,
                         steps_per_call=5, num_devices=1)
    setup = make_trial(config).setup
    workdir = str(tmp_path / "trial")

    def run(on_checkpoint):
        (outcome,) = loop.train_group(group_of(config, [config.seed], like=setup), workdir,
                                      on_checkpoint=on_checkpoint, progress=False)
        return outcome

    def saved():
        ckpts = Checkpoints(os.path.join(workdir, "checkpoints"))
        try:
            return ckpts.steps()
        finally:
            ckpts.close()

    seen, calls = [], []
    original = loop.runtime.to_host

    def notice_in_second_call(tree):  # the metrics of each call come through here
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(tree)

    monkeypatch.setattr(loop.runtime, "to_host", notice_in_second_call)
    outcome = run(lambda step, _: seen.append(step))
    monkeypatch.undo()
    assert outcome["status"] == "interrupted" and outcome["steps"] == 10 and seen == []
    assert saved() == [10]

    finished = []

    def slow_evaluation(step, states):
        seen.append(step)
        os.kill(os.getpid(), signal.SIGTERM)  # the notice, mid-evaluation
        time.sleep(60)  # an evaluation longer than the notice
        finished.append(step)

    started = time.time()
    outcome = run(slow_evaluation)
    assert time.time() - started < 45, "the evaluation was not stopped"
    assert outcome["status"] == "interrupted" and outcome["steps"] == 20
    assert seen == [20] and finished == [] and saved() == [10, 20]

    outcome = run(lambda step, _: seen.append(step))
    assert outcome["status"] == "finished" and outcome["steps"] == 40
    assert seen == [20, 20, 40]  # the interrupted evaluation again, then the next checkpoint

"""The Ray engine (`gancmp sweep --engine ray`) on a real local Ray cluster: a head that runs no
actor and two worker nodes offering `gancmp_host` (CPU actors), all processes of this machine
(Ray insists on the machine's own address, not loopback), one cluster for the module, stopped by
the module alone (`Cluster.shutdown`: the processes it started, by pid; never `ray stop`).

What runs for real: a two-phase sweep (tuned, then seeds released by the driver once the tuned
phase is recorded) through Ray with one worker node SIGKILLed in the middle of a group (its
raylet and the actor's process, by pid): the group resumes on the other node from its checkpoint
(`steps_this_run` < `steps`) and the records equal the in-process engine's number for number,
each once (issue 23 tests 1 and 2 in one run). A driver (`gancmp sweep --engine ray`) on a
`gs://` workdir (the GCS emulator) SIGKILLed after its first records and started again: nothing
recorded is trained again (tests 3 and 4). Bad input is one line: an address where nothing
answers, Ray missing (CLI, exit 2), a node without the project (the probe on the cluster, with
a module no node has: the same code path as a node without gancmp; test 5). The queue's failure
counting is tested without Ray.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from gancmp import records, storage
from gancmp.config import ConfigError, load_config_file
from gancmp.sweep import ray_engine, ray_worker, runner
from tests.helpers import CPU_COMPILE_FLAGS, ROOT, gancmp_command

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

SAME = ("status", "steps", "evals", "best", "final_losses", "hparams", "seed", "setting",
        "phase", "diverged_at", "group_seeds", "group_hparams", "num_devices", "parallelism",
        "trials_computed", "method", "config")
FAST_HEALTH_CHECK = {"health_check_period_ms": 500, "health_check_timeout_ms": 500,
                     "health_check_failure_threshold": 2, "health_check_initial_delay_ms": 0}


def _sweep_text(name: str) -> str:
    ring = os.path.join(ROOT, "configs", "ring8_mlp.py")
    return (
        "import ml_collections\n\nfrom gancmp.config import load_config_file\n\n\n"
        "def get_config():\n"
        "    c = ml_collections.ConfigDict()\n"
        f"    c.name, c.seed, c.max_trials_per_group, c.imports = {name!r}, 0, 2, ''\n"
        "    s = ml_collections.ConfigDict()\n"
        "    s.name, s.methods = 'ring8', 'NS_GAN'\n"
        f"    s.trial = load_config_file({ring!r}, num_d_steps=60, checkpoint_every=20, "
        "batch_size=32, steps_per_call=5)\n"
        "    s.trial.eval = ml_collections.ConfigDict({'num_samples': 300})\n"
        "    s.phases = [ml_collections.ConfigDict(dict(name='tuned', mode='tuned', "
        "range='narrow', num_settings=2, seeds=[0], fixed=dict(disc_iters=1, "
        "d_batch_norm=False))), ml_collections.ConfigDict(dict(name='seeds', mode='seeds', "
        "source='tuned', num_seeds=2))]\n"
        "    c.studies = [s]\n"
        "    return c\n")


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ray_sweep") / "sweep.py"
    path.write_text(_sweep_text("ray"))
    return str(path)


@pytest.fixture(scope="module")
def cluster():
    """A head (no actor) and two worker nodes offering `gancmp_host`, in a temp dir of their
    own ($RAY_TMPDIR); a node's death is seen within about a second."""
    tmp = tempfile.mkdtemp(prefix="gray", dir="/tmp")  # short: Ray's socket paths
    os.makedirs(os.path.join(tmp, "ray"))
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp
    c = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=0, include_dashboard=False, object_store_memory=80 << 20,
        _system_config=FAST_HEALTH_CHECK))
    workers = [c.add_node(num_cpus=1, object_store_memory=80 << 20,
                          resources={ray_engine.HOST_RESOURCE: 1}) for _ in range(2)]
    ray.init(address=c.address, logging_level="WARNING")
    try:
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def straight(sweep_file, tmp_path_factory):
    """The in-process engine's records of the sweep, by trial id."""
    workdir = str(tmp_path_factory.mktemp("straight"))
    runner.run_sweep(load_config_file(sweep_file), workdir, progress=False, log=lambda m: None)
    return _records(workdir)


def _records(workdir: str) -> dict[str, dict]:
    """The raw record lines of the workdir, each trial id exactly once."""
    lines = []
    for path in records.result_files(workdir):
        lines.extend(storage.read_jsonl(path)[0])
    ids = [r["trial_id"] for r in lines]
    assert len(ids) == len(set(ids)), ids
    return {r["trial_id"]: r for r in lines}


def _assert_same(mine: dict[str, dict], straight: dict[str, dict]) -> None:
    assert sorted(mine) == sorted(straight)
    for trial_id, r in straight.items():
        for key in SAME:
            assert mine[trial_id].get(key) == r.get(key), (trial_id, key)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return out


def _kill_node(c: Cluster, node) -> None:
    """SIGKILL of a worker node this module started: its raylet's children (the actor's
    process) and its own processes, by pid."""
    kids = [k for p in node.all_processes.get("raylet", []) for k in _children(p.process.pid)]
    c.remove_node(node, allow_graceful=False)
    for pid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _checkpointed(workdir: str, task) -> bool:
    folder = os.path.join(runner.group_dir_of(workdir, task.trials, task.layout), "checkpoints")
    return os.path.isdir(folder) and any(n.isdigit() for n in os.listdir(folder))


def test_a_node_killed_mid_group_resumes_elsewhere_and_ray_records_what_in_process_does(
        cluster, sweep_file, straight, tmp_path):
    c, workers = cluster
    workdir, killed = str(tmp_path / "ray"), []

    def tick(driver):
        if killed:
            return
        for slot in driver.slots.values():
            if isinstance(slot.item, ray_worker.GroupTask) and _checkpointed(workdir, slot.item):
                node = next(n for n in workers if n.node_id == slot.node)
                _kill_node(c, node)
                killed.append(slot.item)
                return

    lines = []
    counts = ray_engine.run_sweep(load_config_file(sweep_file), workdir,
                                  settings=ray_engine.Settings(poll_s=0.1), log=lines.append,
                                  tick=tick)
    assert killed, "no group was checkpointed while running: nothing killed"
    assert counts["groups"] == counts["groups_done"] == 2 and counts["failed"] == 0
    assert any("lost while on ring8/" in line for line in lines), lines
    mine = _records(workdir)
    _assert_same(mine, straight)
    resumed = [mine[t.trial_id] for t in killed[0].trials]
    assert all(r["steps_this_run"] < r["steps"] == 60 for r in resumed), resumed
    assert {r["phase"] for r in mine.values()} == {"tuned", "seeds"}


def test_a_driver_killed_and_restarted_on_a_bucket_trains_nothing_recorded_again(
        cluster, gcs, sweep_file, straight, tmp_path):
    bucket = gcs.make_bucket("ray-driver")
    workdir = f"{bucket}/w"
    env = {**os.environ, "XLA_FLAGS": CPU_COMPILE_FLAGS + " "
           "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    driver = subprocess.Popen(
        gancmp_command("sweep", "--engine", "ray", "--ray_address", cluster[0].address,
                       "--config", sweep_file, "--workdir", workdir, "--noprogress",
                       "--noreport"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not gcs.objects("ray-driver", "w/results-0.jsonl"):
            assert driver.poll() is None and time.time() < deadline, "no record appeared"
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    before = _records(workdir)
    assert 0 < len(before) < 4, "killed too late to test anything"
    counts = ray_engine.run_sweep(load_config_file(sweep_file), workdir,
                                  settings=ray_engine.Settings(poll_s=0.1), log=lambda m: None)
    assert counts["skipped"] == len(before) and counts["run"] == 4 - len(before)
    after = _records(workdir)
    _assert_same(after, straight)
    assert all(after[t] == r for t, r in before.items())  # never written again


def _cli(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"import sys\n{prelude}\nfrom gancmp.cli import main\nmain(['gancmp', *sys.argv[1:]])"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "XLA_FLAGS": CPU_COMPILE_FLAGS})


@pytest.mark.parametrize("case", ["unreachable", "no_ray"])
def test_bad_input_is_one_line_and_exit_code_2(case, sweep_file, tmp_path):
    args = ["sweep", "--engine", "ray", "--config", sweep_file, "--workdir", str(tmp_path)]
    if case == "unreachable":  # nothing listens on port 9 of loopback
        out = _cli(*args, "--ray_address", "127.0.0.1:9")
        said = "--ray_address 127.0.0.1:9: nothing answers there"
    else:
        out = _cli(*args, prelude="sys.modules['ray'] = None  # as if not installed")
        said = "Ray is not installed; install it with `pip install 'gancmp[cluster]'`"
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("gancmp sweep: error: ") and said in out.stderr


def test_a_node_without_the_project_is_refused_in_one_line(cluster, sweep_file, tmp_path,
                                                            monkeypatch):
    node = ray_engine.host_nodes(ray)[0]["NodeID"]
    assert ray_engine.check_node(ray, node) is None  # gancmp is there
    monkeypatch.setattr(ray_engine, "PROJECT", "gancmp_not_installed_anywhere")
    with pytest.raises(ConfigError) as e:
        ray_engine.run_sweep(load_config_file(sweep_file), str(tmp_path))
    assert str(e.value).startswith("node ")
    assert ("`gancmp_not_installed_anywhere` is not installed there; install the project on "
            "every node (pip install 'gancmp[cluster]')") in str(e.value)
    assert "\n" not in str(e.value)
    assert not os.path.exists(records.results_path(str(tmp_path), 0))


def _task(key: str):
    return ray_worker.GroupTask(key, 0, 1, (), None, 1, "tuned")


def test_the_queue_gives_a_group_up_after_the_same_failure_n_times_and_delays_put_backs():
    q = ray_engine.GroupQueue(max_failures=3)
    a, b = _task("a"), _task("b")
    assert [q.failed(a, "boom"), q.failed(a, "other"), q.failed(a, "boom")] == [False] * 3
    assert q.failed(a, "boom") is True  # the third "boom"
    assert q.failed(b, "boom") is False  # counted per group
    q.push(a, delay_s=60.0)
    q.push(b)
    assert len(q) == 2 and q.pop() is b and q.pop() is None and len(q) == 1


def test_a_given_up_group_is_recorded_failed_with_its_error(sweep_file):
    sweep = load_config_file(sweep_file)
    study = sweep.studies[0]
    trials = runner.expand_phase(sweep, study, study.phases[0], [])
    task = ray_worker.GroupTask("ring8/tuned", 0, 1, tuple(trials), None, len(trials), "tuned")
    recs = ray_worker.failed_records(task, "ray", "ValueError: boom",
                                     frozenset({trials[0].trial_id}))
    assert [r.trial_id for r in recs] == [t.trial_id for t in trials[1:]]
    r = recs[0].to_json()
    assert r["status"] == "failed" and r["error"] == "ValueError: boom" and r["sweep"] == "ray"
    assert (r["method"], r["seed"], r["setting"]) == ("NS_GAN", trials[1].seed, 1)
    assert runner.finished_ids([recs[0]]) == set()  # a later sweep trains it again


def test_the_actor_environment_is_gancmps_and_the_emulators_only():
    env = {"GANCMP_LOCK_LEASE_S": "30", "STORAGE_EMULATOR_HOST": "http://h:1", "HOME": "/x",
           "XLA_FLAGS": "--y", "GCE_METADATA_HOST": "127.0.0.1:9"}
    assert ray_worker.forwarded_env(env) == {
        "GANCMP_LOCK_LEASE_S": "30", "STORAGE_EMULATOR_HOST": "http://h:1",
        "GCE_METADATA_HOST": "127.0.0.1:9"}


def test_actors_that_cannot_start_end_the_sweep_in_one_line_naming_why(cluster, sweep_file,
                                                                       tmp_path):
    """Every host node's actor raises in its start (more CPU devices than cores): after
    `max_failures` starts per node, one line with the actor's own error; nothing recorded."""
    with pytest.raises(ConfigError) as e:
        ray_engine.run_sweep(load_config_file(sweep_file), str(tmp_path),
                             settings=ray_engine.Settings(cpu_devices=999, max_failures=2,
                                                          poll_s=0.1), log=lambda m: None)
    said = str(e.value)
    assert said.startswith("no actor could start on any of the ") and "\n" not in said
    assert "--cpu_devices: 999; allowed: 0 (one device per core) up to" in said, said
    assert not os.path.exists(records.results_path(str(tmp_path), 0))


def test_a_group_failing_the_same_way_n_times_is_recorded_failed_and_the_sweep_ends(
        cluster, sweep_file, tmp_path):
    """The tuned group's directory is a file: every try fails the same way; after
    `max_failures` tries its trials go to failed-0.jsonl with the error, the seeds phase is
    released with no measured trial to re-run, and the sweep ends."""
    sweep, workdir = load_config_file(sweep_file), str(tmp_path)
    study = sweep.studies[0]
    trials = runner.expand_phase(sweep, study, study.phases[0], [])
    ((group, layout),) = runner.phase_groups(sweep, study, study.phases[0], trials,
                                             runner.class_sizes(sweep, study))
    blocker = runner.group_dir_of(workdir, group, layout)
    os.makedirs(os.path.dirname(blocker))
    open(blocker, "w").close()
    lines = []
    counts = ray_engine.run_sweep(sweep, workdir, settings=ray_engine.Settings(
        max_failures=2, poll_s=0.1), log=lines.append)
    assert counts["failed"] == 2 and counts["run"] == 0 and counts["waiting"] == 0
    failed = storage.read_jsonl(ray_engine.failed_path(workdir))[0]
    assert sorted(r["trial_id"] for r in failed) == sorted(t.trial_id for t in trials)
    assert all(r["status"] == "failed" and "Error" in r["error"] for r in failed)
    assert any("ring8/tuned group 1/1: failed 2 times" in line for line in lines), lines
    assert not os.path.exists(records.results_path(workdir, 0))

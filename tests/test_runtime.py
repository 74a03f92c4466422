"""Process-wide JAX settings: CPU cores as devices, the compilation cache's place."""

import os
import subprocess
import sys

import jax
import pytest

from gancmp import runtime

CORES = len(os.sched_getaffinity(0))


@pytest.mark.skipif(CORES < 2, reason="needs 2 CPU cores to split")
@pytest.mark.parametrize("xla_flags, expected", [("", f"{CORES} {CORES}"), (
    "--xla_force_host_platform_device_count=2", "1 2")])
def test_cpu_cores_as_devices(xla_flags, expected):
    code = ("from gancmp import runtime\n"
            f"n = runtime.use_cpu_cores_as_devices({CORES})\n"
            "import jax\n"
            "print(n, jax.device_count())")
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == expected


def test_negative_cpu_devices_is_refused():
    with pytest.raises(ValueError, match="--cpu_devices"):
        runtime.use_cpu_cores_as_devices(-1)


def test_more_cpu_devices_than_cores_is_refused():
    """Even when XLA_FLAGS fixes the device count (as here), a count above the cores is a
    mistake said in one line, not a batch size the device count does not divide."""
    with pytest.raises(ValueError, match=rf"--cpu_devices: 99; allowed: 0 .* up to {CORES}, "
                                         "the CPU cores"):
        runtime.use_cpu_cores_as_devices(99)
    assert runtime.use_cpu_cores_as_devices(CORES) == 1  # XLA_FLAGS set: backend left alone


def test_cache_dir_per_machine_kind_unless_set(monkeypatch, tmp_path):
    monkeypatch.delenv(runtime.CACHE_ENV, raising=False)
    path = runtime.default_cache_dir()
    tag = os.path.basename(path)
    assert path.startswith(os.path.expanduser("~")) and len(tag) == 12
    assert tag == os.path.basename(runtime.default_cache_dir())  # stable
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path))
    assert runtime.default_cache_dir() == str(tmp_path)
    for off in (None, "", "none"):
        assert runtime.enable_compilation_cache(off) is None


def test_multihost_launch_is_what_jax_detects_never_tpu_worker_hostnames_alone(monkeypatch):
    """`gancmp sweep` joins a job where `jax.distributed.initialize()` with no arguments would
    (JAX's cluster detection: SLURM here), and not on the strength of TPU_WORKER_HOSTNAMES
    alone (a GKE variable; on a plain TPU VM the metadata server tells, not the environment)."""
    for var in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                "SLURM_LOCALID", "OMPI_MCA_orte_hnp_uri", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "host-a,host-b")
    assert runtime.detected_launch() is None
    assert runtime.initialize() is False  # stays one process
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[1-2]")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    assert runtime.detected_launch() == ("slurm", 2)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert runtime.detected_launch() is None  # one task: nothing to join


def test_one_process_helpers_are_plain():
    import numpy as np

    assert runtime.gather_json({"a": np.float32(1.5)}) == [{"a": 1.5}]
    assert runtime.broadcast_json([1, "x"]) == [1, "x"]
    assert runtime.any_process(True) and not runtime.any_process(False)
    rows = runtime.map_trials(lambda s: [float(v) for v in s["x"]], {"x": np.arange(3.0)})
    assert rows == [0.0, 1.0, 2.0]


def test_a_remote_compilation_cache_keeps_xla_s_own_caches_off():
    """JAX puts XLA:GPU's autotune cache under the compilation cache directory, and XLA's C++
    file layer cannot open gs:// (issue 22, item 1): with a remote cache that cache is off,
    with a local one it stays where JAX puts it. (The compile options are read, nothing runs.)"""
    from jax._src import compiler

    def autotune_dir() -> str:
        options = compiler.get_compile_options(num_replicas=1, num_partitions=1)
        return options.executable_build_options.debug_options.xla_gpu_per_fusion_autotune_cache_dir

    saved = (jax.config.jax_compilation_cache_dir,
             jax.config.jax_persistent_cache_enable_xla_caches)
    try:
        runtime.enable_compilation_cache("/tmp/gancmp-local-xla")
        assert autotune_dir() == "/tmp/gancmp-local-xla/xla_gpu_per_fusion_autotune_cache_dir"
        runtime.enable_compilation_cache("gs://bucket/xla")
        assert autotune_dir() == ""
    finally:
        jax.config.update("jax_compilation_cache_dir", saved[0])
        jax.config.update("jax_persistent_cache_enable_xla_caches", saved[1])


@pytest.mark.parametrize("env, one", [
    ({"SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "2"}, True),  # srun --ntasks-per-node=1
    ({"SLURM_NTASKS": "16", "SLURM_JOB_NUM_NODES": "2"}, False),  # a task per GPU
    ({"SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS_PER_NODE": "8"}, False),
    ({"SLURM_STEP_NUM_TASKS": "3", "SLURM_STEP_NUM_NODES": "3", "SLURM_NTASKS": "9"}, True),
    ({"OMPI_COMM_WORLD_LOCAL_SIZE": "1", "SLURM_NTASKS_PER_NODE": "8"}, True),
    ({"OMPI_COMM_WORLD_LOCAL_SIZE": "8"}, False),
    ({}, False),
])
def test_one_process_per_host_gets_every_gpu_of_its_host(env, one):
    """JAX's SLURM/Open MPI detection gives each process the GPU of its local rank; a launch of
    one process per host is recognized, and `initialize` passes all the host's GPUs."""
    assert runtime.one_task_per_node(env) is one


def test_visible_gpus_without_starting_a_backend(tmp_path):
    assert runtime.visible_gpus({"CUDA_VISIBLE_DEVICES": "4,5,6"}) == [0, 1, 2]
    assert runtime.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) is None
    driver = tmp_path / "gpus"
    driver.mkdir()
    for bus in ("0000:18:00.0", "0000:2a:00.0"):
        (driver / bus).mkdir()
    assert runtime.visible_gpus({}, str(driver)) == [0, 1]
    assert runtime.visible_gpus({}, str(tmp_path / "none")) is None


def test_seconds_from_the_environment_are_positive_numbers_or_one_line(monkeypatch):
    from gancmp.config import ConfigError, env_seconds

    monkeypatch.delenv("GANCMP_TEST_S", raising=False)
    assert env_seconds("GANCMP_TEST_S", 60.0, "a wait") == 60.0
    monkeypatch.setenv("GANCMP_TEST_S", "2.5")
    assert env_seconds("GANCMP_TEST_S", 60.0, "a wait") == 2.5
    for bad in ("x", "0", "-3", "nan"):
        monkeypatch.setenv("GANCMP_TEST_S", bad)
        with pytest.raises(ConfigError, match=rf"^\$GANCMP_TEST_S: a wait, a positive number; "
                                              rf"got '{bad}'$"):
            env_seconds("GANCMP_TEST_S", 60.0, "a wait")

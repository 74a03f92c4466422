"""Process setup a command makes before its first computation: how many devices the CPU shows,
where compiled programs are cached between groups, runs and restarts, and whether this process
joins a multi-process JAX job (a TPU pod slice, several GPU hosts, or CPU processes on one machine
for testing).

Multi-process: every process runs the same program on its own devices; the device-mapped train
step spans all global devices. Each process calls every orbax save (a save is collective); result
records, sample grids, TensorBoard logs and evaluation files are written by the main process
(`is_main_process`) only. `initialize()` joins the job: with an explicit coordinator
(`--coordinator_address host:port --num_processes N --process_id i`), or, with no flags, when the
environment shows a multi-host launch that `jax.distributed.initialize()` detects by itself (a
multi-worker TPU VM, SLURM with more than one task, Open MPI with more than one rank). Otherwise
the run stays single-process.
"""

from __future__ import annotations

import hashlib
import os
import platform
from typing import Any

import jax
import numpy as np
from jax.sharding import Sharding

from gancmp import storage

CACHE_ENV = "GANCMP_COMPILATION_CACHE"


def use_cpu_cores_as_devices(count: int = 0) -> int:
    """Makes the CPU backend show `count` devices (0: one per core this process may use), so that
    a sweep on a CPU-only machine can run one trial per core (trial parallelism); more devices
    than cores would only share them, so a larger `count` is a ValueError. Returns the
    device count it set, or 1 when it left the backend alone: `count` = 1, or XLA_FLAGS already
    fixes the count (`--xla_force_host_platform_device_count`, as the tests do).

    Must run before JAX starts its backends. TPU and GPU devices are not affected.
    """
    cores = len(os.sched_getaffinity(0))
    if not 0 <= count <= cores:
        raise ValueError(f"--cpu_devices: {count}; allowed: 0 (one device per core) up to "
                         f"{cores}, the CPU cores this process may use")
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 1
    n = count or cores
    if n > 1:
        jax.config.update("jax_num_cpu_devices", n)
    return n


def _host_tag() -> str:
    """Names the instruction set compiled CPU code may use: XLA:CPU compiles for the host's CPU
    features, so a cache in a home directory shared by different machines keeps one folder per
    kind of machine."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:12]


def default_cache_dir() -> str:
    """$GANCMP_COMPILATION_CACHE, else ~/.cache/gancmp/xla/<machine kind>."""
    return os.environ.get(CACHE_ENV) or storage.cache_root("xla", _host_tag())


def enable_compilation_cache(path: str | None) -> str | None:
    """Keeps every compiled program in JAX's persistent compilation cache at `path` (local or
    gs://; None or "" or "none": off), so that a group with the same program as an earlier one
    (same method, group size and shapes: the usual case in a sweep) and a restarted run load it
    instead of compiling again. Returns the path in use."""
    if not path or path == "none":
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


# --- multi-process jobs ----------------------------------------------------------------------

def _multihost_environment() -> bool:
    """Whether the environment is a multi-host launch JAX's own auto-detection understands."""
    tpu_hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    counts = (os.environ.get("SLURM_NTASKS", "1"), os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    return "," in tpu_hosts or any(c.isdigit() and int(c) > 1 for c in counts)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = True) -> bool:
    """Joins the multi-process job if there is one; returns whether it did.

    `auto=False` skips the environment detection (a sweep run as independent `--shard i/N` jobs,
    one per host, must not join the hosts into one job). On CPU the cross-process collectives go
    through gloo, which must be chosen before the backend starts."""
    explicit = coordinator_address is not None
    if explicit and (num_processes is None or process_id is None):
        raise ValueError("--coordinator_address needs --num_processes and --process_id")
    if not explicit and not (auto and _multihost_environment()):
        return False
    if (os.environ.get("JAX_PLATFORMS", "") or "cpu").split(",")[0] == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
    else:
        jax.distributed.initialize()
    return True


def put_replicated(tree: Any, sharding: Sharding) -> Any:
    """Host arrays (the same on every process) → global arrays replicated over `sharding`.

    Unlike `jax.device_put`, this also works when the mesh spans devices of other processes:
    each process fills only its own devices."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
    return jax.tree.map(put, jax.device_get(tree))


def is_main_process() -> bool:
    """Whether this process writes the job's files (records, evals, logs, pictures): process 0."""
    return jax.process_index() == 0

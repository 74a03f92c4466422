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

import base64
import hashlib
import json
import os
import platform
from collections.abc import Mapping
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


XLA_CACHES_DEFAULT = "xla_gpu_per_fusion_autotune_cache_dir"  # JAX's default XLA caches


def enable_compilation_cache(path: str | None) -> str | None:
    """Keeps every compiled program in JAX's persistent compilation cache at `path` (local or
    gs://; None or "" or "none": off), so that a group with the same program as an earlier one
    (same method, group size and shapes: the usual case in a sweep) and a restarted run load it
    instead of compiling again. Returns the path in use."""
    if not path or path == "none":
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    # JAX also points XLA:GPU's own caches (per-fusion autotuning, kernels) into the cache
    # directory, and XLA's C++ file layer cannot open gs:// ("File system scheme 'gs' not
    # implemented"): they stay off when the cache is remote; local, they stay JAX's default.
    jax.config.update("jax_persistent_cache_enable_xla_caches",
                      "none" if storage.is_remote(path) else XLA_CACHES_DEFAULT)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


# --- multi-process jobs ----------------------------------------------------------------------

HEARTBEAT_TIMEOUT_S = 60  # a process silent for this long is lost: the others stop (`initialize`)


def detected_launch() -> tuple[str, int] | None:
    """(cluster kind, processes) of the multi-process launch that `jax.distributed.initialize()`
    with no arguments would join, or None when there is none or it has one process.

    Asks JAX's own cluster detection (the environments `jax.distributed.initialize()` knows: a
    Cloud TPU VM slice through its metadata server, GKE TPU, SLURM, Open MPI, Kubernetes), so a
    multi-worker TPU VM is recognized by what its metadata says, never by an environment variable
    such as TPU_WORKER_HOSTNAMES alone. Opt-in methods (mpi4py) are left out, as JAX does."""
    try:
        from jax._src import clusters
        kinds = [c for c in clusters.ClusterEnv._cluster_types if not c.opt_in_only_method]
    except (ImportError, AttributeError):  # another JAX layout: the documented variables
        kinds = []
    for kind in kinds:
        try:
            if kind.is_env_present():
                count = int(kind.get_process_count())
                return (kind.name if hasattr(kind, "name") else kind.__name__, count) \
                    if count > 1 else None
        except Exception:  # a metadata server that does not answer: not this environment
            continue
    if not kinds:
        for name, var in (("slurm", "SLURM_NTASKS"), ("ompi", "OMPI_COMM_WORLD_SIZE")):
            value = os.environ.get(var, "1")
            if value.isdigit() and int(value) > 1:
                return name, int(value)
    return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = True,
               heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S) -> bool:
    """Joins the multi-process job if there is one; returns whether it did.

    `auto=False` skips the environment detection (a sweep run as independent `--shard i/N` jobs,
    one per host, must not join the hosts into one job). On CPU the cross-process collectives go
    through gloo, which must be chosen before the backend starts. A process that stops sending
    heartbeats for `heartbeat_timeout_s` (killed, its VM preempted, its network gone) is lost:
    the coordination service then stops every other process of the job, so none waits forever
    in a collective."""
    explicit = coordinator_address is not None
    _check_job(explicit, num_processes, process_id)
    if not explicit and not (auto and detected_launch()):
        return False
    if (os.environ.get("JAX_PLATFORMS", "") or "cpu").split(",")[0] == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timeouts = {"heartbeat_timeout_seconds": int(heartbeat_timeout_s)}
    if explicit:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id,
                                   **timeouts)
    else:
        gpus = visible_gpus() if one_task_per_node() else None
        jax.distributed.initialize(local_device_ids=gpus, **timeouts)
    return True


def one_task_per_node(env: Mapping[str, str] = os.environ) -> bool:
    """Whether a SLURM or Open MPI launch runs one process per host (`srun
    --ntasks-per-node=1`, `mpirun --map-by ppr:1:node`). JAX's cluster detection then still
    gives each process one GPU, the one of its local rank (it assumes a process per GPU), so
    `initialize` hands it every GPU of its host instead."""
    if "OMPI_COMM_WORLD_LOCAL_SIZE" in env:
        return env["OMPI_COMM_WORLD_LOCAL_SIZE"] == "1"
    if "SLURM_NTASKS_PER_NODE" in env:
        return env["SLURM_NTASKS_PER_NODE"] == "1"
    nodes = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES")
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    return bool(nodes and tasks and nodes == tasks)


def visible_gpus(env: Mapping[str, str] = os.environ,
                 driver: str = "/proc/driver/nvidia/gpus") -> list[int] | None:
    """The local ids of this host's NVIDIA GPUs, read without starting a JAX backend:
    `CUDA_VISIBLE_DEVICES`'s count when set, else the driver's list; None without GPUs."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = len([v for v in visible.split(",") if v.strip()])
    else:
        try:  # a local-only read: the NVIDIA driver's /proc list of this host's GPUs
            count = len(os.listdir(driver))
        except OSError:
            return None
    return list(range(count)) or None


def _check_job(explicit: bool, num_processes: int | None, process_id: int | None) -> None:
    """ValueError naming the flags unless --num_processes and --process_id are both given with
    --coordinator_address (a job of num_processes >= 1, a process_id in [0, num_processes)), or
    neither without it (the job is detected, or there is one process)."""
    if not explicit:
        if num_processes is not None or process_id is not None:
            raise ValueError("--num_processes, --process_id: only with --coordinator_address "
                             "(host:port of process 0); without it the job is detected (a Cloud "
                             "TPU slice, SLURM, Open MPI) or runs as one process")
        return
    if num_processes is None or process_id is None:
        raise ValueError("--coordinator_address needs --num_processes and --process_id")
    if num_processes < 1:
        raise ValueError(f"--num_processes: must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process_id: must be 0 to {num_processes - 1} (--num_processes="
                         f"{num_processes}), got {process_id}")


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


# --- one job's processes: what each holds, what all of them see ------------------------------

def multiprocess() -> bool:
    """Whether this process is one of several of a `jax.distributed` job."""
    return jax.process_count() > 1


def to_host(tree: Any) -> Any:
    """Every array of `tree` as a whole numpy array on this process: arrays that span other
    processes' devices (a trial-sharded group's metrics) are gathered from every process
    (`process_allgather`, a collective: every process must call it, in the same order)."""
    from jax.experimental import multihost_utils

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))
    return jax.tree.map(get, tree)


def owned_rows(x: jax.Array) -> list[int]:
    """The indices along axis 0 of global array `x` (a stacked group: its trials) that this
    process works on: each index by exactly one process, the lowest-numbered one whose devices
    hold it, so replicated rows are not done twice."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return list(range(np.shape(x)[0])) if is_main_process() or not multiprocess() else []
    owner: dict[int, int] = {}
    for device, index in x.sharding.devices_indices_map(x.shape).items():
        for i in range(*index[0].indices(x.shape[0])):
            owner[i] = min(owner.get(i, device.process_index), device.process_index)
    return sorted(i for i, p in owner.items() if p == jax.process_index())


def local_rows(tree: Any, rows: list[int]) -> Any:
    """The rows `rows` (axis 0) of every array of `tree` as numpy, read from this process's own
    devices only (no communication)."""
    def take(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(jax.device_get(x))[rows]
        out: dict[int, np.ndarray] = {}
        for shard in x.addressable_shards:
            start, stop, _ = shard.index[0].indices(x.shape[0])
            wanted = [i for i in rows if start <= i < stop and i not in out]
            if wanted:
                data = np.asarray(shard.data)
                out.update({i: data[i - start] for i in wanted})
        missing = sorted(set(rows) - set(out))
        if missing:
            raise ValueError(f"rows {missing} are not on this process's devices")
        return np.stack([out[i] for i in rows]) if rows else np.zeros((0, *x.shape[1:]), x.dtype)
    return jax.tree.map(take, tree)


def _json_bytes(value: Any) -> np.ndarray:
    def plain(v: Any) -> Any:
        return v.item() if hasattr(v, "item") else v.tolist() if hasattr(v, "tolist") else str(v)
    return np.frombuffer(json.dumps(value, default=plain).encode(), np.uint8)


def gather_json(value: Any) -> list[Any]:
    """Every process's JSON-able `value`, in process order (a collective; one process: [value])."""
    if not multiprocess():
        return [json.loads(_json_bytes(value).tobytes())]
    from jax.experimental import multihost_utils

    data = _json_bytes(value)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([data.size], np.int64)))
    sizes = sizes.reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    every = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [json.loads(every[p, :sizes[p]].tobytes()) for p in range(len(sizes))]


def broadcast_json(value: Any) -> Any:
    """Process 0's JSON-able `value` on every process (a collective), so that every process of
    a job decides from the same view of the files (records, evaluations) however its own view
    of the storage lags."""
    if not multiprocess():
        return value
    return gather_json(value if is_main_process() else None)[0]


def any_process(flag: bool) -> bool:
    """Whether `flag` is true on any process of the job (a collective; one process: `flag`)."""
    if not multiprocess():
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.asarray([int(flag)]))).any())


def map_trials(fn: Any, states: Any, count: int | None = None) -> list[Any]:
    """`fn` applied to the trials [0, `count`) of a stacked state (default: all of them; a
    padded group passes its size, so its padding trials are never computed), each trial by the
    one process that holds it (`owned_rows`), results gathered in trial order on every process:
    `fn(host states [n]) -> n results` (JSON-able values, or numpy arrays; a list, or an array
    whose rows are the results). One process: `fn` of those trials, as a list. A collective in a
    multi-process job; the rows are read from each process's own devices, so no device program
    runs across processes (an eager one, e.g. slicing the global state, could interleave with
    the collectives of other programs)."""
    first = jax.tree.leaves(states)[0]
    count = np.shape(first)[0] if count is None else count
    if not multiprocess():
        return list(fn(jax.tree.map(lambda x: x[:count], to_host(states))))
    rows = [i for i in owned_rows(first) if i < count]
    mine = list(fn(local_rows(states, rows))) if rows else []
    out: dict[int, Any] = {}
    for indices, results in gather_json([rows, [_plain_result(r) for r in mine]]):
        out.update(zip(indices, (_array_result(r) for r in results), strict=True))
    return [out[i] for i in range(count)]


def _plain_result(value: Any) -> Any:
    """An array result as {"__array__": dtype, "shape", "data": base64 of its bytes}."""
    if isinstance(value, np.ndarray):
        return {"__array__": value.dtype.str, "shape": list(value.shape),
                "data": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()}
    return value


def _array_result(value: Any) -> Any:
    """A gathered result back as what `fn` gave (`_plain_result` undone)."""
    if isinstance(value, dict) and "__array__" in value:
        data = np.frombuffer(base64.b64decode(value["data"]), np.dtype(value["__array__"]))
        return data.reshape(value["shape"])
    return value

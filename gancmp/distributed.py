"""Multi-process runs: one JAX job over several hosts (a TPU pod slice, several GPU hosts, or
CPU processes on one machine for testing).

Every process runs the same program on its own devices; the device-mapped train step spans all
global devices. Each process calls every orbax save (a save is collective); result records,
sample grids, TensorBoard logs and evaluation files are written by process 0 only.

`initialize()` joins the job: with an explicit coordinator (`--coordinator_address host:port
--num_processes N --process_id i`), or, with no flags, when the environment shows a multi-host
launch that `jax.distributed.initialize()` detects by itself (a multi-worker TPU VM, SLURM with
more than one task, Open MPI with more than one rank). Otherwise the run stays single-process.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Sharding


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
    return jax.process_index() == 0

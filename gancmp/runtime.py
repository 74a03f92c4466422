"""Process-wide JAX settings a command makes before its first computation: how many devices the
CPU shows, and where compiled programs are cached between groups, runs and restarts."""

from __future__ import annotations

import hashlib
import os
import platform

import jax

CACHE_ENV = "GANCMP_COMPILATION_CACHE"


def use_cpu_cores_as_devices(count: int = 0) -> int:
    """Makes the CPU backend show `count` devices (0: one per core this process may use), so that
    a sweep on a CPU-only machine can run one trial per core (trial parallelism). Returns the
    device count it set, or 1 when it left the backend alone: `count` = 1, or XLA_FLAGS already
    fixes the count (`--xla_force_host_platform_device_count`, as the tests do).

    Must run before JAX starts its backends. TPU and GPU devices are not affected.
    """
    if count < 0:
        raise ValueError(f"--cpu_devices: {count}; allowed: 0 (one per core) or a positive count")
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 1
    n = count or len(os.sched_getaffinity(0))
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
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "gancmp", "xla", _host_tag())


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

"""Where a train step's time goes on XLA:CPU: per-op times from JAX's profiler, grouped by kind,
and how busy each of XLA's compute threads was (issue 28).

    .venv/bin/python experiments/bench/profile_step.py --config configs/mnist_infogan.py

Prints the step's wall time, each XLA thread's busy time (its `ThunkExecutor::Execute` spans),
the summed op time by kind (`ynn_fusion`: XLA's YNNPACK convolutions and matmuls with their
fused elementwise ops; `transpose_copy_fusion`: layout copies; `convolution-base-dilated`: a
convolution XLA leaves to Eigen; `all-reduce`: the device axis' means) and the slowest ops. A
busy share below 100 % on each thread is time the step's dependency chain left a core idle.
Timings are of this machine and moment: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time

import jax
from jax.profiler import ProfileData

from gancmp.bench.steps import _bench_arrays
from gancmp.config import load_config_file
from gancmp.train import group as group_lib
from gancmp.trial import make_trial


def _profile(config_path: str, steps: int, trace_dir: str) -> float:
    """Runs `steps` calls of the config's train program under the profiler; ms per call."""
    config = load_config_file(config_path)
    trial = make_trial(config)
    group = group_lib.create_group([trial], _bench_arrays(trial.setup, config))
    fn, states, arrays = group.train_fn, group.states, group.arrays
    for _ in range(3):  # compile and warm up
        states, metrics = fn(states, arrays)
        jax.block_until_ready(metrics)
    jax.profiler.start_trace(trace_dir)
    t0 = time.perf_counter()
    for _ in range(steps):
        states, metrics = fn(states, arrays)
        jax.block_until_ready((states, metrics))
    wall_ms = (time.perf_counter() - t0) / steps * 1e3
    jax.profiler.stop_trace()
    return wall_ms


def _op_times(trace_dir: str) -> tuple[dict[str, int], dict[str, int]]:
    """(busy ns per XLA compute thread, ns per op name) summed over the trace."""
    path = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0]
    busy: dict[str, int] = collections.Counter()
    ops: dict[str, int] = collections.Counter()
    for plane in ProfileData.from_file(path).planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLAEigen"):
                continue
            for event in line.events:
                if event.name == "ThunkExecutor::Execute":
                    busy[line.name] += event.duration_ns
                elif not event.name.startswith(("ThunkExecutor", "Slinky")):
                    ops[event.name] += event.duration_ns
    return busy, ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/mnist_infogan.py")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as trace_dir:
        wall_ms = _profile(args.config, args.steps, trace_dir)
        busy, ops = _op_times(trace_dir)
    print_tables(f"{args.config}: {wall_ms:.1f} ms per call", busy, ops, args.steps, wall_ms,
                 args.top, "ms")


def print_tables(title: str, busy: dict[str, int], ops: dict[str, int], units: int,
                 wall_ms: float, top: int, unit: str, digits: int = 1) -> None:
    """Prints the profile per unit of work (`units` calls or images, `wall_ms` each): each XLA
    thread's busy time and share, the `top` largest op times by kind (op names without their
    `.N`) and the `top` slowest ops."""
    per_unit = {name: ns / units / 1e6 for name, ns in ops.items()}
    threads = ", ".join(f"{ns / units / 1e6:.1f} ms ({ns / units / 1e4 / wall_ms:.0f} %)"
                        for ns in busy.values())
    print(f"{title}; XLA threads busy: {threads}; ops summed: {sum(per_unit.values()):.1f} ms")
    kinds: dict[str, float] = collections.Counter()
    for name, ms in per_unit.items():
        kinds[re.sub(r"\.\d+$", "", name)] += ms
    print(f"by kind ({unit}):")
    for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {ms:8.{digits}f} ms  {kind}")
    print(f"slowest {top} ops ({unit}):")
    for name, ms in sorted(per_unit.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {ms:8.{digits}f} ms  {name}")

if __name__ == "__main__":
    main()

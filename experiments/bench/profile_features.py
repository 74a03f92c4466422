"""Where a metric network's feature pass spends its time on XLA:CPU (the FID Inception by default,
`--network dinov2|clip` the ViTs): per-op times from JAX's profiler, grouped by kind, and how busy
each of XLA's compute threads was (issues 25, 28).

    PYTHONPATH=. .venv/bin/python experiments/bench/profile_features.py --batch_size 8

Times the extractor's network program with random weights (preprocessed inputs already on the
device) over `--calls` calls of `--batch_size` images, `--micro_batch` images per loop step
(default: the extractor's; on CPU each image of a step is its own pass, the `lanes`), and
prints the same tables as `profile_step.py`: wall time, each XLA thread's busy share, op time
by kind, the slowest ops. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import numpy as np

from experiments.bench.profile_step import _op_times, print_tables
from gancmp.metrics import features, vit_features


def _extractor(network: str, batch_size: int, micro_batch: int | None):
    """The network's extractor with random weights (the full-size network)."""
    if network == "inception":
        return features.FeatureExtractor.random(0, batch_size=batch_size, micro_batch=micro_batch)
    return vit_features.ViTExtractor.random(network, seed=0, batch_size=batch_size,
                                            micro_batch=micro_batch)


def _profile(network: str, batch_size: int, micro_batch: int | None, calls: int,
             trace_dir: str) -> float:
    """Runs `calls` feature-network calls under the profiler; ms per image."""
    extractor = _extractor(network, batch_size, micro_batch)
    images = np.random.default_rng(0).uniform(0, 1, (extractor.batch_size, 32, 32, 3))
    x = extractor._prepare(jax.numpy.asarray(images, jax.numpy.float32))
    fn, variables = extractor._net, extractor.variables
    jax.block_until_ready(fn(variables, x))  # compile and warm up
    jax.profiler.start_trace(trace_dir)
    t0 = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn(variables, x))
    wall_ms = (time.perf_counter() - t0) / calls / extractor.batch_size * 1e3
    jax.profiler.stop_trace()
    print(f"{network}: micro_batch {extractor.micro_batch}, lanes {extractor.lanes}, "
          f"cpu_ops {getattr(extractor, 'cpu_ops', None)}")
    return wall_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="inception", choices=("inception", "dinov2", "clip"))
    parser.add_argument("--batch_size", type=int, default=10)
    parser.add_argument("--micro_batch", type=int, default=None)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as trace_dir:
        wall_ms = _profile(args.network, args.batch_size, args.micro_batch, args.calls,
                           trace_dir)
        busy, ops = _op_times(trace_dir)
    print_tables(f"batch {args.batch_size}, micro_batch {args.micro_batch}: {wall_ms:.1f} ms "
                 f"per image ({1e3 / wall_ms:.1f} images/s)", busy, ops,
                 args.calls * args.batch_size, wall_ms, args.top, "ms per image", digits=2)

if __name__ == "__main__":
    main()

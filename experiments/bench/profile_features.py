"""Where a metric network's feature pass spends its time on XLA:CPU (the FID Inception by default,
`--network dinov2|clip` the ViTs): per-op times from JAX's profiler, grouped by kind, and how busy
each of XLA's compute threads was (issues 25, 28).

    PYTHONPATH=. .venv/bin/python experiments/bench/profile_features.py --batch_size 8

Times the extractor's network program with random weights (preprocessed inputs already on the
device) over `--calls` calls of `--batch_size` images, `--micro_batch` images per loop step
(default: the extractor's; on CPU each image of a step is its own pass, the `lanes`), and
prints the same tables as `profile_step.py`: wall time, each XLA thread's busy share, op time
by kind, the slowest ops. `--layers` adds op time per layer (the compiled program's fusions
grouped by the layer their dot or root comes from, with the dots' GFLOP/s): run it with
`--micro_batch 1`, where no two ops overlap in time, so that op time is wall time. Run it on a
quiet machine.

    PYTHONPATH=. .venv/bin/python experiments/bench/profile_features.py --network dinov2 \
        --batch_size 4 --micro_batch 1 --layers
"""

from __future__ import annotations

import argparse
import collections
import math
import re
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
             trace_dir: str) -> tuple[float, str, int]:
    """Runs `calls` feature-network calls under the profiler: (ms per image, the compiled
    program's HLO text, images per network pass)."""
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
    hlo = fn.lower(variables, x).compile().as_text()
    return wall_ms, hlo, (extractor.micro_batch or extractor.batch_size) // extractor.lanes


def _computations(hlo: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The HLO text's computations (name → lines) and each fusion op's called computation."""
    bodies: dict[str, list[str]] = {}
    calls: dict[str, str] = {}
    current = None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{\s*$", line)
        if head:
            current = bodies.setdefault(head.group(1), [])
            continue
        if current is not None:
            current.append(line)
        call = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = .*?calls=%([\w.\-]+)", line)
        if call:
            calls[call.group(1)] = call.group(2)
    return bodies, calls


def _layer(line: str) -> str:
    """The layer an HLO instruction comes from (its op_name, block index dropped)."""
    name = re.search(r'op_name="([^"]*)"', line)
    if not name:
        return "?"
    path = re.sub(r"^.*?/ViT/|blocks_\d+/", "", name.group(1))
    return re.sub(r"/(dot_general|[a-z_]+)$", "", path) or path


def _fusion_layer(body: list[str]) -> tuple[str, int]:
    """(layer, FLOPs) of one fusion: its dots' layer and 2·|out|·|contracted|, else its root's."""
    shapes = {m.group(1): [int(v) for v in m.group(2).split(",") if v]
              for m in (re.search(r"%([\w.\-]+) = f32\[([\d,]*)\]", line) for line in body)
              if m}
    named = next((line for line in body if "op_name=" in line), "")
    flops, layers = 0, []
    for line in body:
        if " dot(" not in line:
            continue
        out = [int(v) for v in re.search(r"= f32\[([\d,]*)\]", line).group(1).split(",") if v]
        lhs = re.search(r"dot\(%([\w.\-]+)", line).group(1)
        dims = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line).group(1).split(",")
        contracted = math.prod(shapes[lhs][int(i)] for i in dims) if lhs in shapes else 0
        flops += 2 * math.prod(out) * contracted
        layers.append(f"{_layer(line if 'op_name=' in line else named)} dot {out}")
    if layers:
        return ", ".join(layers), flops
    root = next((line for line in body if "ROOT" in line), "")
    return _layer(root), 0


def print_layers(hlo: str, ops: dict[str, int], images: int, per_pass: int) -> None:
    """Op time per image by layer (fusions grouped by where their dot or root comes from), the
    dots' GFLOP/s; `per_pass` images per network pass (the dots' FLOPs are per pass)."""
    bodies, calls = _computations(hlo)
    rows: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for op, ns in ops.items():
        kind = op.split(".")[0]
        layer, flops = _fusion_layer(bodies.get(calls.get(op, ""), []))
        rows[f"{kind}: {layer}"][0] += ns / images / 1e6
        rows[f"{kind}: {layer}"][1] += flops / per_pass
    total = sum(ms for ms, _ in rows.values())
    print(f"by layer (ms per image; {total:.1f} ms of op time):")
    for name, (ms, flops) in sorted(rows.items(), key=lambda kv: -kv[1][0])[:30]:
        rate = f"{flops / ms / 1e6:6.1f} GFLOP/s" if flops else " " * 13
        print(f"  {ms:8.2f} ms {100 * ms / total:5.1f} %  {rate}  {name[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="inception", choices=("inception", "dinov2", "clip"))
    parser.add_argument("--batch_size", type=int, default=10)
    parser.add_argument("--micro_batch", type=int, default=None)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--layers", action="store_true",
                        help="also op time per layer with the dots' GFLOP/s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as trace_dir:
        wall_ms, hlo, per_pass = _profile(args.network, args.batch_size, args.micro_batch,
                                          args.calls, trace_dir)
        busy, ops = _op_times(trace_dir)
    images = args.calls * args.batch_size
    print_tables(f"batch {args.batch_size}, micro_batch {args.micro_batch}: {wall_ms:.1f} ms "
                 f"per image ({1e3 / wall_ms:.1f} images/s)", busy, ops,
                 images, wall_ms, args.top, "ms per image", digits=2)
    if args.layers:
        print_layers(hlo, ops, images, per_pass)


if __name__ == "__main__":
    main()

"""Train-step throughput: images/s and achieved GFLOP/s, FLOPs counted from the reference layers.

An image dataset that is not available offline is replaced by random uint8 data of its example
shape and train-split size: the step shuffles and gathers its batches on device either way, and
the cost of both depends on the size, not on the pixels.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from gancmp.data import source as data_source
from gancmp.data import tfds
from gancmp.nets.flops import train_step_flops
from gancmp.train import group as group_lib
from gancmp.trial import make_trial


def _bench_arrays(setup, config) -> dict[str, np.ndarray]:
    if setup.dataset in tfds.SPECS:
        n = tfds.SPECS[setup.dataset].train_size
        rng = np.random.default_rng(0)
        return {"train": rng.integers(0, 256, (n, *setup.example_shape), dtype=np.uint8)}
    return dict(data_source.load(setup.dataset, config.get("data_dir")).arrays)


def train_step(config: ml_collections.ConfigDict, batch_size: int | None = None,
               calls: int = 10, warmup: int = 2, trials: int = 1) -> dict[str, Any]:
    """Times `calls` device calls (after `warmup`) of `trials` vmapped trials, each call as many
    iterations as training makes per call (`step.plan_calls`: one on CPU for conv nets, a rolled
    scan for the MLPs). With `config.parallelism = "trials"` the trials are spread over the
    devices (padded to a multiple of their count; only `trials` are counted).

    Returns step_ms (median time per iteration of all trials: `disc_iters` D updates + one G
    update), images_per_sec (real images consumed by D per second, all trials), gflops_per_sec,
    trials_per_hour (at the config's budget), first_call_s (the first call: compilation, or a
    compilation-cache hit, and one call) and the trial's resolved matmul_precision, compute_dtype
    and loop ("unrolled", or rolled with its count an "argument" or "fixed")."""
    config = ml_collections.ConfigDict(config.to_dict())
    first_call_s = float("nan")
    if batch_size:
        config.batch_size = batch_size
    trial = make_trial(config)
    setup = trial.setup
    group = group_lib.create_group([trial.variant(seed=i) for i in range(trials)],
                                   _bench_arrays(setup, config))
    fn, states, arrays, steps_per_call = (group.train_fn, group.states, group.arrays,
                                          group.steps_per_call)
    t0 = time.perf_counter()
    for i in range(warmup):
        states, metrics = fn(states, arrays)
        jax.block_until_ready(metrics)
        if i == 0:
            first_call_s = time.perf_counter() - t0  # compilation (or a cache hit) + one call
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        states, metrics = fn(states, arrays)
        jax.block_until_ready((states, metrics))
        times.append((time.perf_counter() - t0) / steps_per_call)
    step_s = statistics.median(times)
    g, d = setup.networks()
    one = jax.tree.map(lambda x: x[0], states)
    z = np.zeros((setup.batch_size, setup.z_dim), np.float32)
    x = np.zeros((setup.batch_size, *setup.example_shape), np.float32)
    flops = train_step_flops(g, {"params": one.g_params, **one.g_state}, d,
                             {"params": one.d_params, **one.d_state}, z, x, setup.disc_iters)
    return {
        "config": f"{setup.method.name} {setup.arch} {setup.dataset}",
        "batch_size": setup.batch_size, "disc_iters": setup.disc_iters, "trials": trials,
        "devices": setup.num_devices, "parallelism": setup.parallelism,
        "steps_per_call": steps_per_call, "device_kind": jax.devices()[0].device_kind,
        "matmul_precision": setup.matmul_precision, "compute_dtype": setup.compute_dtype,
        "loop": ("unrolled" if group.plan.unroll else
                 "argument" if group.plan.count_argument else "fixed"),
        "first_call_s": first_call_s, "step_ms": 1e3 * step_s,
        "images_per_sec": trials * setup.batch_size * setup.disc_iters / step_s,
        "gflop_per_step": trials * flops / 1e9,
        "gflops_per_sec": trials * flops / 1e9 / step_s,
        "step_ms_all": [1e3 * t for t in times],
        # trials finished per hour at the config's budget, all K trials of the group together
        "trials_per_hour": trials * 3600.0 / (config.num_d_steps / setup.disc_iters * step_s),
        "peak_rss_mb": _peak_rss_mb(),
    }


def sweep_run(config_path: str, group_size: int, trials: int = 16, method: str = "NS_GAN",
              overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trials/hour of the sweep runner itself: `trials` settings of `method` on the trial config
    at `config_path` (its budget), trained by `runner.run_sweep` in groups of `group_size`, timed
    from the start to the last record: compilation, initialisation, checkpoints, evaluation and
    sample grids included. Compiled programs are cached within this run only (a fresh cache
    directory), as in a sweep's first run. Run it in a fresh process (it enables the cache)."""
    import tempfile

    from gancmp import runtime
    from gancmp.config import load_config_file
    from gancmp.sweep import runner

    with tempfile.TemporaryDirectory() as tmp:
        runtime.enable_compilation_cache(f"{tmp}/xla")
        sweep = ml_collections.ConfigDict()
        sweep.name, sweep.seed, sweep.imports = "bench", 0, ""
        sweep.max_trials_per_group = sweep.cpu_conv_trials_per_device = group_size
        study = ml_collections.ConfigDict()
        study.name = "bench"
        study.trial = load_config_file(config_path, **(overrides or {}))
        study.methods = method
        study.phases = [ml_collections.ConfigDict(dict(
            name="tuned", mode="tuned", range="narrow", num_settings=trials, seeds=[0],
            fixed=dict(disc_iters=1)))]
        sweep.studies = [study]
        start = time.perf_counter()
        counts = runner.run_sweep(sweep, f"{tmp}/sweep", progress=False, log=lambda *a: None)
        wall = time.perf_counter() - start
    trial = make_trial(study.trial)
    size = runner.max_group_size(sweep, trial)
    setup = runner.laid_out(trial, size).setup
    return {"config": f"{method} {setup.arch} {setup.dataset}", "trials": counts["run"],
            "group_size": size,
            "devices": setup.num_devices, "parallelism": setup.parallelism,
            "num_d_steps": study.trial.num_d_steps, "wall_s": wall,
            "trials_per_hour": 3600.0 * counts["run"] / wall, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    from gancmp.bench.suite import peak_rss_mb

    return peak_rss_mb()


def describe(result: dict[str, Any]) -> str:
    """One readable line per figure."""
    return (f"{result['config']}: batch {result['batch_size']}, {result['trials']} trial(s), "
            f"{result['devices']} device(s) [{result['device_kind']}]\n"
            f"  step {result['step_ms']:.1f} ms (median of {len(result['step_ms_all'])}), "
            f"{result['images_per_sec']:.0f} images/s, {result['gflop_per_step']:.2f} GFLOP/step, "
            f"{result['gflops_per_sec']:.1f} GFLOP/s")


def fid_features(torch_python: str | None = None, n: int = 200, batch_size: int = 50,
                 precision: str = "highest") -> dict:
    """Images/s of FID feature extraction (32×32 inputs, resized to 299×299 inside), with random
    weights of the real network's shapes (the speed does not depend on the values), its
    convolutions at matmul `precision` (a `features.PRECISIONS` name)."""
    from gancmp.metrics import features

    extractor = features.FeatureExtractor.random(0, batch_size=batch_size, precision=precision)
    result = dict(features.benchmark_features(extractor, n, (32, 32, 3)))
    result["precision"] = extractor.precision
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def fid_batches(batch_sizes: Sequence[int], batches: int = 10, precision: str = "auto",
                on_batch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """`fid_features` at each of `batch_sizes` (images per device call), `batches` calls of
    each timed, at the matmul precision the FID Inception of a trial computes in here
    (`precision`: "auto", as a trial's `matmul_precision` resolves on this backend, or a name
    of `gancmp.precision`). Each entry adds gflops_per_sec, from the network's FLOPs per
    299×299 image (`gancmp.sweep.plan.inception_flops`, what the plan prices). Returns
    {"matmul_precision", "flop_per_image", "by_batch": {str(batch size): result}}, and hands
    `on_batch` the same, so far, after each batch size (a caller killed by a time limit keeps
    the sizes done)."""
    from gancmp import precision as precision_lib
    from gancmp.sweep.plan import inception_flops

    name = precision_lib.resolve(precision, jax.default_backend())
    flop = inception_flops()
    out: dict[str, Any] = {"matmul_precision": name, "flop_per_image": flop, "by_batch": {}}
    for b in batch_sizes:
        r = fid_features(n=b * batches, batch_size=b, precision=name)
        out["by_batch"][str(b)] = {**r, "gflops_per_sec": r["images_per_sec"] * flop / 1e9}
        if on_batch is not None:
            on_batch(out)
    return out

"""The tool commands of `gancmp`: list | bench | plan | convert-inception | prepare-data.

Flag definitions and runners only; `gancmp.cli.main` dispatches to them and reports their errors
in one line.
"""

from __future__ import annotations

import difflib
import json
import os

from absl import flags
from ml_collections import config_flags

from gancmp.cli.common import FLAGS, UsageError, start_runtime, trial_config


def define_convert() -> None:
    """Flags of `gancmp convert-inception`."""
    flags.DEFINE_string("src", None, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth.")
    flags.DEFINE_string("dst", None, "The converted weights file to write (.npz).")


def run_convert() -> int:
    """Converts pytorch-fid's Inception weights (--src) to an .npz (--dst), without torch."""
    from gancmp.metrics import inception

    if not FLAGS.src or not FLAGS.dst:
        raise UsageError("--src and --dst: required")
    meta = inception.convert_inception(FLAGS.src, FLAGS.dst)
    note = "" if meta["official"] else " (not the published file: its sha256 differs)"
    print(f"converted {FLAGS.src} (sha256 {meta['source_sha256'][:12]}…){note} → {FLAGS.dst}")
    return 0


def define_prepare() -> None:
    """Flags of `gancmp prepare-data NAME`."""
    flags.DEFINE_string("data_dir", None, "TFDS data directory (local path or gs://).")


def run_prepare(names: list[str]) -> int:
    """Prepares the TFDS datasets `names` once (needs gancmp[prepare])."""
    from gancmp.data import tfds

    if not names:
        raise UsageError(f"give a dataset: gancmp prepare-data NAME --data_dir DIR; NAME one of "
                         f"{', '.join(tfds.SPECS)}")
    for name in names:
        if name not in tfds.SPECS:
            raise UsageError(f"NAME: unknown dataset {name!r}; allowed: "
                             f"{', '.join(tfds.SPECS)} (the synthetic sets need no "
                             "preparation)")
    for name in names:
        print(f"{name}: prepared in {tfds.prepare(name, FLAGS.data_dir)}")
    return 0


def define_bench() -> None:
    """Flags of `gancmp bench`."""
    config_flags.DEFINE_config_file("config", "configs/mnist_infogan.py", "Trial config file.",
                                    lock_config=True)
    flags.DEFINE_integer("batch_size", None, "Batch size (default: the config's).")
    flags.DEFINE_integer("calls", 10, "Timed device calls (the median is reported).")
    flags.DEFINE_integer("trials", 1, "Trials vmapped together in the timed program.")
    flags.DEFINE_enum("what", "train", ["train", "sweep", "sweep_run", "fid", "features",
                                        "feature_net", "all"],
                      "train: one train step; sweep: train-step trials/hour for K = 1, 4, 16 "
                      "vmapped trials; sweep_run: trials/hour of the sweep runner end to end, "
                      "--sweep_trials trials in groups of --trials; fid: FID feature extraction; "
                      "features: every metric feature network beside its torch reference, "
                      "written to experiments/bench/RESULTS.md; feature_net: one network's "
                      "images/s (--feature_network); "
                      "all: the suite, written to experiments/bench/RESULTS.md")
    flags.DEFINE_enum("feature_network", "dinov2", ["inception", "dinov2", "clip"],
                      "--what feature_net: the network to time.")
    flags.DEFINE_integer("feature_rounds", 3, "--what features: ours and torch's alternate "
                         "this many times per network (medians reported).")
    flags.DEFINE_string("dinov2_repo", None, "--what features: a checkout of "
                        "facebookresearch/dinov2 for the torch reference's DINOv2.")
    flags.DEFINE_integer("sweep_trials", 16, "Trials of a --what sweep_run measurement.")
    flags.DEFINE_string("config_path", None, "Trial config file of --what sweep_run "
                        "(default: --config's file); overrides as --config.* flags do not apply.")
    flags.DEFINE_string("torch_python", None, "A python with torch, for the PyTorch comparison.")
    flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
    flags.DEFINE_list("fid_batch_sizes", None, "--what fid: images per call to time, e.g. "
                      "50,200,500 (then --fid_batches calls of each, at --fid_precision); "
                      "unset: 200 images at batch 50 in float32")
    flags.DEFINE_integer("fid_batches", 10, "--what fid: timed calls per batch size.")
    flags.DEFINE_string("fid_precision", "auto", "--what fid with --fid_batch_sizes: the "
                        "Inception's matmul precision (auto: a trial's on this backend; or "
                        "float32, tensorfloat32, bfloat16_3x, bfloat16).")
    flags.DEFINE_integer("cpu_devices", 1, "On a CPU backend: devices to split the CPU into "
                         "(0: one per core); with --config.parallelism=trials as `gancmp sweep`.")


def run_bench() -> int:
    """Measures the train step, the sweep runner or FID features (--what)."""
    from gancmp.bench import steps as bench
    from gancmp.bench import suite as bench_suite

    start_runtime()

    if FLAGS.what == "all":
        results = bench_suite.run(FLAGS.torch_python, calls=FLAGS.calls)
        path = bench_suite.write(results, os.path.join(bench_suite.ROOT, "experiments", "bench",
                                                       "RESULTS.md"))
        print(bench_suite.table(results))
        print(f"written: {path}")
        return 0
    if FLAGS.what == "fid":
        return _bench_fid(bench)
    if FLAGS.what in ("features", "feature_net"):
        return _bench_features()
    if FLAGS.what == "sweep_run":
        path = FLAGS.config_path or config_flags.get_config_filename(FLAGS["config"])
        result = bench.sweep_run(path, FLAGS.trials, FLAGS.sweep_trials)
        print(json.dumps(result) if FLAGS.json else
              f"{result['config']}: {result['trials']} trials in groups of {result['group_size']}"
              f" on {result['devices']} device(s) ({result['parallelism']}): "
              f"{result['wall_s']:.0f} s, {result['trials_per_hour']:.0f} trials/hour")
        return 0
    if FLAGS.what == "sweep":
        rows = [bench.train_step(trial_config(), FLAGS.batch_size, FLAGS.calls, trials=k)
                for k in (1, 4, 16)]
        for r in rows:
            print(json.dumps(r) if FLAGS.json else
                  f"K={r['trials']:2d}: {r['trials_per_hour']:.0f} trials/hour "
                  f"({r['step_ms']:.1f} ms per step of all K)")
        if not FLAGS.json:
            print(f"K=16 / K=1: {rows[2]['trials_per_hour'] / rows[0]['trials_per_hour']:.1f}×")
        return 0
    result = bench.train_step(trial_config(), batch_size=FLAGS.batch_size, calls=FLAGS.calls,
                              trials=FLAGS.trials)
    print(json.dumps(result) if FLAGS.json else bench.describe(result))
    return 0


def _bench_features() -> int:
    """`gancmp bench --what features` (every network, ours and torch's, into RESULTS.md) or
    `--what feature_net` (ours, one network)."""
    from gancmp.bench import features as bench_features
    from gancmp.bench import suite as bench_suite

    if FLAGS.what == "feature_net":
        result = bench_features.ours(FLAGS.feature_network)
        print(json.dumps(result) if FLAGS.json else
              f"{FLAGS.feature_network}: {result['images_per_sec']:.2f} images/s")
        return 0
    results = bench_features.run(FLAGS.torch_python, FLAGS.dinov2_repo,
                                 rounds=FLAGS.feature_rounds)
    text = bench_features.section(results)
    path = bench_suite.write_section(text, os.path.join(
        bench_suite.ROOT, "experiments", "bench", "RESULTS.md"))
    print(text.split("<details>")[0])
    print(f"written: {path}")
    return 0


def _bench_fid(bench) -> int:
    """`gancmp bench --what fid`: one batch size (the suite's figure), or each of
    --fid_batch_sizes at --fid_precision, one line as each is measured (with --json, the results
    so far: the last line holds every size measured)."""
    import jax

    from gancmp import precision

    if not FLAGS.fid_batch_sizes:
        result = bench.fid_features(FLAGS.torch_python)
        print(json.dumps(result) if FLAGS.json else
              f"FID features: {result['images_per_sec']:.1f} images/s")
        return 0
    try:
        sizes = [int(b) for b in FLAGS.fid_batch_sizes]
    except ValueError:
        raise UsageError(f"--fid_batch_sizes: expected positive integers, got "
                         f"{','.join(FLAGS.fid_batch_sizes)}") from None
    if min(sizes) < 1 or FLAGS.fid_batches < 1:
        raise UsageError("--fid_batch_sizes and --fid_batches: must be positive")
    try:
        precision.resolve(FLAGS.fid_precision, jax.default_backend())
    except ValueError as e:
        raise UsageError(f"--fid_precision: {e}") from None

    def report(so_far: dict) -> None:  # one line per batch size as it is measured
        b, r = list(so_far["by_batch"].items())[-1]
        print(json.dumps(so_far) if FLAGS.json else
              f"FID features, batch {b}: {r['images_per_sec']:.1f} images/s", flush=True)

    bench.fid_batches(sizes, FLAGS.fid_batches, FLAGS.fid_precision, on_batch=report)
    return 0


def define_list() -> None:
    """Flags of `gancmp list KIND`."""
    flags.DEFINE_string("imports", None, "Comma-separated modules to import first, so that the "
                        "losses and methods they register are listed (as --config.imports).")


def run_list(kinds: list[str]) -> int:
    """Prints every name of each of `kinds` (`gancmp.cli.catalog.LISTS`), one per line with a
    short description."""
    from gancmp.cli import catalog
    from gancmp.config import import_user_modules

    allowed = ", ".join(catalog.LISTS)
    if not kinds:
        raise UsageError(f"give what to list: gancmp list KIND; KIND one of {allowed}")
    for kind in kinds:
        if kind not in catalog.LISTS:
            close = difflib.get_close_matches(kind, catalog.LISTS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"KIND: unknown {kind!r}{hint} (allowed: {allowed})")
    import_user_modules({"imports": FLAGS.imports or ""})
    for kind in kinds:
        print("\n".join(catalog.LISTS[kind]()))
    return 0


def define_plan() -> None:
    """Flags of `gancmp plan`."""
    flags.DEFINE_string("config", None, "Sweep config file (configs/sweeps/*.py).")
    flags.DEFINE_string("accelerator", "v4-8", "Where the groups are laid out: v4-8, v5e-8, "
                        "v5p-8, v6e-8, 8xH100, 1xH100 or cpu (this machine).")
    flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
    flags.DEFINE_integer("workers", 1, "Also the wall hours on this many single-host workers "
                         "of --accelerator (gancmp sweep --engine ray).")
    flags.DEFINE_bool("memory", True, "Compile each kind of train program (on this CPU, abstract "
                      "shapes, no training) for the device memory per chip.")


def run_plan() -> int:
    """Prints the cost of a sweep before it is launched (`gancmp.sweep.plan`)."""
    from gancmp.config import load_config_file
    from gancmp.sweep import plan

    if not FLAGS.config:
        raise UsageError("--config: required (a sweep config file, configs/sweeps/*.py)")
    plan.check_accelerator(FLAGS.accelerator)
    if not os.path.isfile(FLAGS.config):
        raise UsageError(f"--config: no such file: {FLAGS.config}")
    if FLAGS.workers < 1:
        raise UsageError(f"--workers: a number of single-host workers, at least 1; got "
                         f"{FLAGS.workers}")
    result = plan.plan(load_config_file(FLAGS.config), FLAGS.accelerator,
                       measure_memory=FLAGS.memory, workers=FLAGS.workers)
    print(json.dumps(result) if FLAGS.json else plan.summary(result))
    return 0

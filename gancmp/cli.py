"""`gancmp <command> [flags]`: sweep | report | train | eval | sample | bench |
convert-inception | prepare-data.

Flags are absl flags; trial configs are ml_collections config files with command-line overrides,
e.g. `gancmp train --config configs/ring8_mlp.py --workdir /tmp/r --config.method=WGAN_GP`.
Bad input (an unknown name, a bad number, a bad override) prints one line naming the field and
the allowed values, and exits with code 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from absl import app, flags
from ml_collections import config_flags

from gancmp import score_cli

FLAGS = flags.FLAGS
USAGE = """usage: gancmp <command> [flags]

commands:
  sweep   run a study:      gancmp sweep --config configs/sweeps/quick.py --workdir DIR
                            [--shard i/N]
  report  compare losses:   gancmp report DIR [DIR ...] [--out OUT]
  train   train one trial:  gancmp train --config configs/ring8_mlp.py --workdir DIR
  eval    score checkpoints: gancmp eval --workdir DIR [--inception_weights FILE]
  sample  sample a trial:   gancmp sample --workdir DIR [--trial ID] --num 64 --out grid.png
  bench   throughput:       gancmp bench --config configs/mnist_infogan.py [--json]
  convert-inception         gancmp convert-inception --src pt_inception-2015-12-05-6726825d.pth
                            --dst FILE   (FID weights, read without torch)
  prepare-data              gancmp prepare-data NAME --data_dir DIR   (needs gancmp[prepare])
  fid | kid | pr A B        score images: gancmp fid A B [--preprocess clean] [--json]; A, B:
                            image folders, .npz (images or `gancmp stats`), or NAME:SPLIT
  is SOURCE                 Inception Score: gancmp is samples/ --inception_weights FILE.pth
  stats SOURCE              reference statistics: gancmp stats cifar10:train --out FILE.npz

`gancmp <command> --help` lists a command's flags.
"""


class UsageError(Exception):
    """Bad command-line input; reported in one line, exit code 2."""


def _define_distributed() -> None:
    flags.DEFINE_string("coordinator_address", None,
                        "host:port of process 0 of a multi-process job (default: detected on a "
                        "multi-worker TPU VM, SLURM or Open MPI; else one process).")
    flags.DEFINE_integer("num_processes", None, "Processes in the job (with "
                         "--coordinator_address).")
    flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def _define_runtime(cpu_devices: int | None = None) -> None:
    flags.DEFINE_string("compilation_cache", None,
                        "JAX's persistent compilation cache: a directory (local or gs://) or "
                        "'none' (default: $GANCMP_COMPILATION_CACHE, else ~/.cache/gancmp/xla/…).")
    if cpu_devices is not None:
        flags.DEFINE_integer("cpu_devices", cpu_devices, "On a CPU backend: devices to split the "
                             "CPU into, one trial group per device (0: one per core; 1: one "
                             "device whose kernels use all cores). TPU/GPU: ignored.")


def _start_runtime() -> None:
    """Process-wide JAX settings; before anything computes."""
    from gancmp import runtime

    if "cpu_devices" in FLAGS:
        try:
            runtime.use_cpu_cores_as_devices(FLAGS.cpu_devices)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if "compilation_cache" in FLAGS:
        cache = FLAGS.compilation_cache
        runtime.enable_compilation_cache(runtime.default_cache_dir() if cache is None else cache)


def _initialize_distributed(auto: bool = True) -> None:
    from gancmp import runtime

    try:
        runtime.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                               auto=auto)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _define_train() -> None:
    config_flags.DEFINE_config_file("config", None, "Trial config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, samples and result.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    _define_distributed()
    _define_runtime()


def _run_train() -> int:
    from gancmp.train import loop, workdir

    _start_runtime()
    _initialize_distributed()
    if not FLAGS.workdir:
        raise UsageError("--workdir: required (a directory for checkpoints, logs and results)")
    record, done = loop.train_trial(_config(), FLAGS.workdir, progress=FLAGS.progress)
    losses = ", ".join(f"{k} {v:.4g}" for k, v in record["final_losses"].items())
    print(f"{'already ' * done}{record['status']}: {record['steps']}/{record['num_d_steps']} D "
          f"steps of {record['method']} on {record['dataset']} in {record['wall_time_s']:.1f} s "
          f"({losses}){f'; left as recorded in {workdir.result_path(FLAGS.workdir)}' * done}")
    if done:
        return 0
    if record.get("samples"):
        print(f"samples: {record['samples']}")
    print(f"result: {workdir.result_path(FLAGS.workdir)}")
    return 0


def _define_eval() -> None:
    flags.DEFINE_string("workdir", None, "The workdir of a `gancmp train` run.")
    flags.DEFINE_list("steps", None, "Checkpoint steps to evaluate (default: all).")
    flags.DEFINE_string("inception_weights", None,
                        "FID weights: a converted .npz or pytorch-fid's .pth (default: the "
                        "trial's config.fid.inception_weights, else the cached download).")
    flags.DEFINE_integer("num_samples", None, "Generated samples per evaluation.")


def _run_eval() -> int:
    from gancmp.train import evaluation, workdir

    if not FLAGS.workdir:
        raise UsageError("--workdir: required (the workdir of a `gancmp train` run)")
    try:
        steps = [int(s) for s in FLAGS.steps or ()]
    except ValueError:
        raise UsageError(f"--steps: integers expected, got {FLAGS.steps}") from None
    overrides = {}
    if FLAGS.inception_weights:
        overrides["fid.inception_weights"] = FLAGS.inception_weights
    if FLAGS.num_samples:
        overrides["eval.num_samples"] = FLAGS.num_samples
    summary = evaluation.evaluate_trial(FLAGS.workdir, overrides, steps or None)
    best = summary["best"]
    if best:
        print(f"best {best['metric']}: {best['value']:.4g} at step {best['step']}")
    print(f"result: {workdir.result_path(FLAGS.workdir)}")
    return 0


def _define_convert() -> None:
    flags.DEFINE_string("src", None, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth.")
    flags.DEFINE_string("dst", None, "The converted weights file to write (.npz).")


def _run_convert() -> int:
    from gancmp.metrics import inception

    if not FLAGS.src or not FLAGS.dst:
        raise UsageError("--src and --dst: required")
    meta = inception.convert_inception(FLAGS.src, FLAGS.dst)
    note = "" if meta["official"] else " (not the published file: its sha256 differs)"
    print(f"converted {FLAGS.src} (sha256 {meta['source_sha256'][:12]}…){note} → {FLAGS.dst}")
    return 0


def _define_prepare() -> None:
    flags.DEFINE_string("data_dir", None, "TFDS data directory (local path or gs://).")


def _run_prepare(names: list[str]) -> int:
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


def _define_bench() -> None:
    config_flags.DEFINE_config_file("config", "configs/mnist_infogan.py", "Trial config file.",
                                    lock_config=True)
    flags.DEFINE_integer("batch_size", None, "Batch size (default: the config's).")
    flags.DEFINE_integer("calls", 10, "Timed device calls (the median is reported).")
    flags.DEFINE_integer("trials", 1, "Trials vmapped together in the timed program.")
    flags.DEFINE_enum("what", "train", ["train", "sweep", "sweep_run", "fid", "all"],
                      "train: one train step; sweep: train-step trials/hour for K = 1, 4, 16 "
                      "vmapped trials; sweep_run: trials/hour of the sweep runner end to end, "
                      "--sweep_trials trials in groups of --trials; fid: FID feature extraction; "
                      "all: the suite, written to experiments/bench/RESULTS.md")
    flags.DEFINE_integer("sweep_trials", 16, "Trials of a --what sweep_run measurement.")
    flags.DEFINE_string("config_path", None, "Trial config file of --what sweep_run "
                        "(default: --config's file); overrides as --config.* flags do not apply.")
    flags.DEFINE_string("torch_python", None, "A python with torch, for the PyTorch comparison.")
    flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
    flags.DEFINE_integer("cpu_devices", 1, "On a CPU backend: devices to split the CPU into "
                         "(0: one per core); with --config.parallelism=trials as `gancmp sweep`.")


def _run_bench() -> int:
    from gancmp.bench import steps as bench
    from gancmp.bench import suite as bench_suite

    _start_runtime()

    if FLAGS.what == "all":
        results = bench_suite.run(FLAGS.torch_python, calls=FLAGS.calls)
        path = bench_suite.write(results, os.path.join(bench_suite.ROOT, "experiments", "bench",
                                                       "RESULTS.md"))
        print(bench_suite.table(results))
        print(f"written: {path}")
        return 0
    if FLAGS.what == "fid":
        result = bench.fid_features(FLAGS.torch_python)
        print(json.dumps(result) if FLAGS.json else
              f"FID features: {result['images_per_sec']:.1f} images/s")
        return 0
    if FLAGS.what == "sweep_run":
        path = FLAGS.config_path or config_flags.get_config_filename(FLAGS["config"])
        result = bench.sweep_run(path, FLAGS.trials, FLAGS.sweep_trials)
        print(json.dumps(result) if FLAGS.json else
              f"{result['config']}: {result['trials']} trials in groups of {result['group_size']}"
              f" on {result['devices']} device(s) ({result['parallelism']}): "
              f"{result['wall_s']:.0f} s, {result['trials_per_hour']:.0f} trials/hour")
        return 0
    if FLAGS.what == "sweep":
        rows = [bench.train_step(_config(), FLAGS.batch_size, FLAGS.calls, trials=k)
                for k in (1, 4, 16)]
        for r in rows:
            print(json.dumps(r) if FLAGS.json else
                  f"K={r['trials']:2d}: {r['trials_per_hour']:.0f} trials/hour "
                  f"({r['step_ms']:.1f} ms per step of all K)")
        if not FLAGS.json:
            print(f"K=16 / K=1: {rows[2]['trials_per_hour'] / rows[0]['trials_per_hour']:.1f}×")
        return 0
    result = bench.train_step(_config(), batch_size=FLAGS.batch_size, calls=FLAGS.calls,
                              trials=FLAGS.trials)
    print(json.dumps(result) if FLAGS.json else bench.describe(result))
    return 0


def _define_sweep() -> None:
    flags.DEFINE_string("config", None, "Sweep config file (configs/sweeps/*.py).")
    flags.DEFINE_string("workdir", None, "Sweep directory (local or gs://): results, groups.")
    flags.DEFINE_string("shard", "0/1", "This process's share of the trials: i/N.")
    flags.DEFINE_bool("progress", True, "Show progress bars.")
    flags.DEFINE_bool("report", True, "Write the report when the sweep is complete.")
    _define_distributed()
    _define_runtime(cpu_devices=0)


def _run_sweep() -> int:
    from gancmp.report import build
    from gancmp.sweep import runner

    if not FLAGS.config or not FLAGS.workdir:
        raise UsageError("--config and --workdir: required")
    shard = runner.parse_shard(FLAGS.shard)
    if shard[1] > 1 and FLAGS.coordinator_address:
        raise UsageError("--shard i/N (independent jobs, one per host) and --coordinator_address "
                         "(one job over all hosts) exclude each other; choose one")
    _start_runtime()
    # With --shard i/N every host is its own job: never join them by auto-detection.
    _initialize_distributed(auto=shard[1] == 1)
    counts = runner.run_sweep(runner.load_sweep_config(FLAGS.config), FLAGS.workdir, shard,
                              progress=FLAGS.progress)
    print(f"trials run: {counts['run']} ({counts['diverged']} diverged), already finished: "
          f"{counts['skipped']}, phases waiting for other shards: {counts['waiting']}")
    from gancmp.runtime import is_main_process

    if FLAGS.report and shard[1] == 1 and not counts["waiting"] and is_main_process():
        print(f"report: {build.build([FLAGS.workdir], FLAGS.workdir + '/report')}")
    return 0


def _define_report() -> None:
    flags.DEFINE_string("out", None, "Output directory (default: FIRST_DIR/report).")


def _run_report(dirs: list[str]) -> int:
    from gancmp.report import build

    if not dirs:
        raise UsageError("give one or more sweep directories: gancmp report DIR [DIR ...]")
    print(build.build(dirs, FLAGS.out or dirs[0].rstrip("/") + "/report"))
    return 0


def _define_sample() -> None:
    flags.DEFINE_string("workdir", None, "A trial workdir (gancmp train) or a sweep workdir.")
    flags.DEFINE_string("trial", None, "Trial id, for a sweep workdir.")
    flags.DEFINE_integer("num", 64, "Number of samples.")
    flags.DEFINE_integer("seed", 0, "Seed of the latent noise.")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
    flags.DEFINE_string("out", "samples.png", "PNG to write.")


def _run_sample() -> int:
    from gancmp.generator import load_generator
    from gancmp.train.samples import save_samples

    if not FLAGS.workdir:
        raise UsageError("--workdir: required")
    g = load_generator(FLAGS.workdir, FLAGS.trial, FLAGS.step)
    path = save_samples(g.sample(FLAGS.num, FLAGS.seed), FLAGS.out,
                        title=f"{g.setup.method.name} on {g.setup.dataset}, step {g.step}")
    print(f"{FLAGS.num} samples of step {g.step}: {path}")
    return 0


def _config():
    if FLAGS.config is None:
        raise UsageError("--config: required (a config file, e.g. configs/ring8_mlp.py)")
    return FLAGS.config


COMMANDS: dict[str, tuple[Callable[[], None], Callable[..., int]]] = {
    "sweep": (_define_sweep, _run_sweep),
    "report": (_define_report, _run_report),
    "train": (_define_train, _run_train),
    "eval": (_define_eval, _run_eval),
    "sample": (_define_sample, _run_sample),
    "bench": (_define_bench, _run_bench),
    "convert-inception": (_define_convert, _run_convert),
    "prepare-data": (_define_prepare, _run_prepare),
    "fid": (score_cli.define_fid, score_cli.run_fid),
    "kid": (score_cli.define_kid, score_cli.run_kid),
    "pr": (score_cli.define_pr, score_cli.run_pr),
    "is": (score_cli.define_is, score_cli.run_is),
    "stats": (score_cli.define_stats, score_cli.run_stats),
}
TAKES_ARGS = ("report", "prepare-data", *score_cli.SOURCES)


def _fail(command: str, message: str) -> None:
    print(f"gancmp {command}: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command = argv[1]
    if command not in COMMANDS:
        _fail(command, f"unknown command; allowed: {', '.join(COMMANDS)}")
    define, run = COMMANDS[command]
    define()

    def parse(args: list[str]) -> list[str]:
        _import_config_modules(command, args)
        try:
            return FLAGS(args)
        except (flags.Error, ValueError, KeyError, AttributeError, TypeError) as e:
            _fail(command, str(e).splitlines()[0] if str(e) else type(e).__name__)

    def run_main(rest: list[str]) -> int:
        from absl import logging

        from gancmp.train.config import ConfigError

        if not FLAGS["verbosity"].present:  # orbax logs every save at INFO
            logging.set_verbosity(logging.WARNING)

        if len(rest) > 1 and command not in TAKES_ARGS:
            _fail(command, f"unexpected arguments: {' '.join(rest[1:])}")
        try:
            return run(rest[1:]) if command in TAKES_ARGS else run()
        except (ConfigError, UsageError) as e:
            _fail(command, str(e))
        except _input_errors() as e:
            _fail(command, str(e))

    app.run(run_main, argv=[f"gancmp {command}", *argv[2:]], flags_parser=parse)


def _import_config_modules(command: str, args: list[str]) -> None:
    """Imports the modules of `--config.imports=…` before the config file is loaded, so that the
    hyperparameters they register are config fields (`gancmp.train.config.base_config`) and
    `--config.<name>=…` can set them."""
    if not any(".imports" in a for a in args):
        return
    from gancmp.train.config import ConfigError, import_from_argv

    try:
        import_from_argv(args)
    except ConfigError as e:
        _fail(command, str(e))


def _input_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's input, not a bug: reported in one line."""
    from gancmp.data.images import ImageSourceError
    from gancmp.data.tfds import DatasetUnavailableError
    from gancmp.metrics.inception import InceptionWeightsError
    from gancmp.metrics.pth import UnsafePickleError
    from gancmp.metrics.stats_file import ScoreError
    from gancmp.report.records import MixedSetupError
    from gancmp.storage import LockedError

    return (DatasetUnavailableError, MixedSetupError, FileNotFoundError, KeyError,
            InceptionWeightsError, UnsafePickleError, ImageSourceError, ScoreError, LockedError)


if __name__ == "__main__":
    main()

"""`gancmp <command> [flags]`: sweep | report | train | eval | sample | list | bench | plan |
convert-inception | prepare-data | fid | kid | pr | is | stats.

Flags are absl flags; trial configs are ml_collections config files with command-line overrides,
e.g. `gancmp train --config configs/ring8_mlp.py --workdir /tmp/r --config.method=WGAN_GP`.
Bad input (an unknown name, a bad number, a bad override) prints one line naming the field and
the allowed values, and exits with code 2, never a traceback; a place that cannot be written
(a full disk, a read-only or foreign directory) is one line naming the path and the errno, exit
code 1. `gancmp <command> --help` prints the command's own flags. A run stopped by SIGTERM saves
a checkpoint, writes no report and exits with 143 (128 + SIGTERM, what a shell shows for a killed
process), so that a job scheduler sees it did not finish.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from absl import app, flags
from ml_collections import config_flags

from gancmp import cli_help, cli_tools, score_cli
from gancmp.cli_common import (
    FLAGS,
    INTERRUPTED,
    UsageError,
    define_distributed,
    define_runtime,
    initialize_distributed,
    start_runtime,
    trial_config,
)

USAGE = """usage: gancmp <command> [flags]

commands:
  sweep   run a study:      gancmp sweep --config configs/sweeps/quick.py --workdir DIR
                            [--shard i/N] [--config.FIELD=V] [--trial FIELD=V ...]
  report  compare losses:   gancmp report DIR [DIR ...] [--out OUT]
  train   train one trial:  gancmp train --config configs/ring8_mlp.py --workdir DIR
  eval    score checkpoints: gancmp eval --workdir DIR [--inception_weights FILE]
  sample  sample a trial:   gancmp sample --workdir DIR [--trial ID] --num 64 --out grid.png
  list    what to name:     gancmp list methods|losses|penalties|datasets|archs|metrics
  bench   throughput:       gancmp bench --config configs/mnist_infogan.py [--json]
  plan    cost of a sweep:  gancmp plan --config configs/sweeps/lucic2018.py
                            [--accelerator v4-8] [--json]   (nothing is trained)
  convert-inception         gancmp convert-inception --src pt_inception-2015-12-05-6726825d.pth
                            --dst FILE   (FID weights, read without torch)
  prepare-data              gancmp prepare-data NAME --data_dir DIR   (needs gancmp[prepare])
  fid | kid | pr A B        score images: gancmp fid A B [--preprocess clean] [--json]; A, B:
                            image folders, .npz (images or `gancmp stats`), or NAME:SPLIT
  is SOURCE                 Inception Score: gancmp is samples/ --inception_weights FILE.pth
  stats SOURCE              reference statistics: gancmp stats cifar10:train --out FILE.npz

`gancmp <command> --help` lists a command's flags.
Progress: a bar on a terminal; otherwise (a log file, a pipe) one line every
$GANCMP_PROGRESS_EVERY seconds (default 30).
"""
PROGRESS_HELP = ("Show progress: a bar on a terminal, else one line every $GANCMP_PROGRESS_EVERY "
                 "seconds (default 30).")


def _define_train() -> None:
    config_flags.DEFINE_config_file("config", None, "Trial config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, samples and result.")
    flags.DEFINE_bool("progress", True, PROGRESS_HELP)
    define_distributed()
    define_runtime()


def _run_train() -> int:
    from gancmp.train import loop, workdir
    from gancmp.trial import make_trial

    start_runtime()
    initialize_distributed()
    if not FLAGS.workdir:
        raise UsageError("--workdir: required (a directory for checkpoints, logs and results)")
    trial = make_trial(trial_config())
    record, done = loop.train_trial(trial, FLAGS.workdir, progress=FLAGS.progress)
    if record["status"] == "interrupted":
        print(f"interrupted (SIGTERM) at {record['steps']}/{record['num_d_steps']} D steps: "
              "checkpoint saved; run the same command to resume", file=sys.stderr)
        return INTERRUPTED
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


def _define_sweep() -> None:
    config_flags.DEFINE_config_file("config", None, "Sweep config file (configs/sweeps/*.py); "
                                    "--config.FIELD=VALUE sets a sweep field.", lock_config=True)
    flags.DEFINE_multi_string("trial", [], "FIELD=VALUE: sets a field of every study's trial "
                              "config (repeatable), e.g. --trial data_dir=gs://B/tfds --trial "
                              "fid.inception_weights=gs://B/inception.npz.")
    flags.DEFINE_string("workdir", None, "Sweep directory (local or gs://): results, groups.")
    flags.DEFINE_string("shard", "0/1", "This process's share of the trials: i/N.")
    flags.DEFINE_bool("progress", True, PROGRESS_HELP)
    flags.DEFINE_bool("report", True, "Write the report when the sweep is complete.")
    define_distributed()
    define_runtime(cpu_devices=0)


def _run_sweep() -> int:
    from gancmp.report import build
    from gancmp.sweep import runner

    if FLAGS["config"].value is None or not FLAGS.workdir:
        raise UsageError("--config and --workdir: required")
    shard = runner.parse_shard(FLAGS.shard)
    if shard[1] > 1 and FLAGS.coordinator_address:
        raise UsageError("--shard i/N (independent jobs, one per host) and --coordinator_address "
                         "(one job over all hosts) exclude each other; choose one")
    start_runtime()
    # With --shard i/N every host is its own job: never join them by auto-detection.
    initialize_distributed(auto=shard[1] == 1)
    sweep = trial_config("configs/sweeps/quick.py")
    runner.override_trials(sweep, FLAGS.trial)
    counts = runner.run_sweep(sweep, FLAGS.workdir, shard, progress=FLAGS.progress)
    if counts["interrupted"]:
        print(f"interrupted (SIGTERM) after {counts['run']} trials: checkpoints saved, no "
              "report; run the same command to resume", file=sys.stderr)
        return INTERRUPTED
    print(f"trials run: {counts['run']} ({counts['diverged']} diverged), already finished: "
          f"{counts['skipped']}, reused from their source phase: {counts['reused']}, phases "
          f"waiting for other shards: {counts['waiting']}")
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


COMMANDS: dict[str, tuple[Callable[[], None], Callable[..., int]]] = {
    "sweep": (_define_sweep, _run_sweep),
    "report": (_define_report, _run_report),
    "train": (_define_train, _run_train),
    "eval": (_define_eval, _run_eval),
    "sample": (_define_sample, _run_sample),
    "list": (cli_tools.define_list, cli_tools.run_list),
    "bench": (cli_tools.define_bench, cli_tools.run_bench),
    "plan": (cli_tools.define_plan, cli_tools.run_plan),
    "convert-inception": (cli_tools.define_convert, cli_tools.run_convert),
    "prepare-data": (cli_tools.define_prepare, cli_tools.run_prepare),
    "fid": (score_cli.define_fid, score_cli.run_fid),
    "kid": (score_cli.define_kid, score_cli.run_kid),
    "pr": (score_cli.define_pr, score_cli.run_pr),
    "is": (score_cli.define_is, score_cli.run_is),
    "stats": (score_cli.define_stats, score_cli.run_stats),
}
TAKES_ARGS = ("report", "list", "prepare-data", *score_cli.SOURCES)
CONFIG_FILE_COMMANDS = ("train", "bench", "sweep")  # --config is a trial config file (config_flags)


def _fail(command: str, message: str, code: int = 2) -> None:
    print(f"gancmp {command}: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """`gancmp <command> [flags] [args]` (`USAGE`); `argv` as `sys.argv`. Output into a pipe
    that closes early (`gancmp list methods | head`) ends the command quietly."""
    try:
        _main(list(sys.argv if argv is None else argv))
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        sys.exit(1)


def _main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command = argv[1]
    if command not in COMMANDS:
        _fail(command, f"unknown command; allowed: {', '.join(COMMANDS)}")
    define, run = COMMANDS[command]
    before = set(FLAGS)
    define()
    if cli_help.wants_help(argv[2:]):
        print(cli_help.command_help(command, USAGE, set(FLAGS) - before))
        return

    def parse(args: list[str]) -> list[str]:
        if command in CONFIG_FILE_COMMANDS:
            _check_config_file(command, args)
        _import_config_modules(command, args)
        try:
            return FLAGS(args)
        except (flags.Error, ValueError, KeyError, AttributeError, TypeError) as e:
            _fail(command, cli_help.flag_error(e, args))

    def run_main(rest: list[str]) -> int:
        from absl import logging

        from gancmp.config import ConfigError
        from gancmp.storage import describe_write_error, write_error

        if not FLAGS["verbosity"].present:  # orbax logs every save at INFO
            logging.set_verbosity(logging.WARNING)

        if len(rest) > 1 and command not in TAKES_ARGS:
            _fail(command, f"unexpected arguments: {' '.join(rest[1:])}")
        try:
            return run(rest[1:]) if command in TAKES_ARGS else run()
        except (ConfigError, UsageError) as e:
            _fail(command, str(e))
        except _input_errors() as e:
            _fail(command, cli_help.message(e))
        except OSError as e:
            error = write_error(e)
            if error is None:
                raise
            _fail(command, describe_write_error(error), code=1)
        except Exception as e:
            _lost_job(command, e)
            raise

    app.run(run_main, argv=[f"gancmp {command}", *argv[2:]], flags_parser=parse)


def _lost_job(command: str, error: Exception) -> None:
    """In a multi-process job, a runtime error of a collective (a process was killed, its host
    preempted or cut off: "Connection closed by peer", a heartbeat timeout) ends this process at
    once with one line, exit code 1, instead of a traceback and a wait for the job's shutdown
    barrier, which the lost process never reaches. Anything else: returns."""
    import jax

    if not isinstance(error, jax.errors.JaxRuntimeError) or jax.process_count() == 1:
        return
    reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
    print(f"gancmp {command}: error: process {jax.process_index()} of the job lost contact with "
          f"the others ({reason}); checkpoints and records so far are kept: start the same "
          "command again on every host to resume", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)  # the job's shutdown would wait for the lost process


def _flag_value(args: list[str], name: str) -> str | None:
    """The value of `--name=V` or `--name V` in `args`, or None."""
    for i, arg in enumerate(args):
        if arg in (f"--{name}", f"-{name}") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith((f"--{name}=", f"-{name}=")):
            return arg.split("=", 1)[1]
    return None


def _check_config_file(command: str, args: list[str]) -> None:
    """A --config file that does not exist is one line (ml_collections reports it only when the
    config is first read, as a traceback)."""
    path = _flag_value(args, "config")
    if path is not None and not os.path.isfile(path):
        _fail(command, f"--config: no such file: {path}")


def _import_config_modules(command: str, args: list[str]) -> None:
    """Imports the modules of `--config.imports=…` before the config file is loaded, so that the
    hyperparameters they register are config fields (`gancmp.config.base_config`) and
    `--config.<name>=…` can set them. Modules are found on PYTHONPATH, next to the --config file
    and in the current directory."""
    if not any(".imports" in a for a in args):
        return
    from gancmp.config import ConfigError, import_from_argv

    path = _flag_value(args, "config")
    try:
        # local only: a --config file is Python code, imported from local disk
        import_from_argv(args, search=[os.path.dirname(os.path.abspath(path))] if path else [])
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
    from gancmp.storage import LockedError, RemoteStorageError

    return (DatasetUnavailableError, MixedSetupError, FileNotFoundError, KeyError,
            InceptionWeightsError, UnsafePickleError, ImageSourceError, ScoreError, LockedError,
            RemoteStorageError)


if __name__ == "__main__":
    main()

"""`gancmp <command> [flags]`: sweep | report | train | eval | sample | list | bench | plan |
convert-inception | prepare-data | fid | kid | pr | is | stats | prdc | prd | cmmd | fdinf.

Flags are absl flags; trial configs are ml_collections config files with command-line overrides,
e.g. `gancmp train --config configs/ring8_mlp.py --workdir /tmp/r --config.method=WGAN_GP`.
Bad input (an unknown name, a bad number, a bad override) prints one line naming the field and
the allowed values, and exits with code 2, never a traceback; a place that cannot be written
(a full disk, a read-only or foreign directory) is one line naming the path and the errno, exit
code 1. `gancmp <command> --help` prints the command's own flags. A run stopped by SIGTERM saves
a checkpoint, writes no report and exits with 143 (128 + SIGTERM, what a shell shows for a killed
process), so that a job scheduler sees it did not finish; Ctrl-C during `train` or `sweep` does the
same with exit code 130 (128 + SIGINT), and a second Ctrl-C stops at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from absl import app, flags

from gancmp.cli import help as cli_help  # not `help`: the builtin
from gancmp.cli import more_metrics, runs, score, tools
from gancmp.cli.common import CTRL_C, FLAGS, UsageError

USAGE = """usage: gancmp <command> [flags]

commands:
  sweep   run a study:      gancmp sweep --config configs/sweeps/quick.py --workdir DIR
                            [--shard i/N | --engine ray [--ray_address HOST:PORT]]
                            [--config.FIELD=V] [--trial FIELD=V ...]
  report  compare losses:   gancmp report DIR [DIR ...] [--out OUT] [--margin METRIC=M]
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
                            image folders, .npz (images or `gancmp stats`), or NAME:SPLIT;
                            --features inception|dinov2|clip [--feature_weights FILE]
  prdc | prd | fdinf R F    density/coverage, PRD, FD∞ of F against R: gancmp prdc REAL FAKE
  cmmd A B                  CMMD on CLIP features: gancmp cmmd A B [--feature_weights FILE]
  is SOURCE                 Inception Score: gancmp is samples/ --inception_weights FILE.pth
  stats SOURCE              reference statistics: gancmp stats cifar10:train --out FILE.npz

`gancmp <command> --help` lists a command's flags.
Where to start: sweeps on TPU VMs or GPU hosts: experiments/tpu/README.md; the paper's tables:
experiments/lucic2018/README.md; your own loss: README.md, "Adding a loss".
Progress: a bar on a terminal; otherwise (a log file, a pipe) one line every
$GANCMP_PROGRESS_EVERY seconds (default 30).
"""

COMMANDS: dict[str, tuple[Callable[[], None], Callable[..., int]]] = {
    "sweep": (runs.define_sweep, runs.run_sweep),
    "report": (runs.define_report, runs.run_report),
    "train": (runs.define_train, runs.run_train),
    "eval": (runs.define_eval, runs.run_eval),
    "sample": (runs.define_sample, runs.run_sample),
    "list": (tools.define_list, tools.run_list),
    "bench": (tools.define_bench, tools.run_bench),
    "plan": (tools.define_plan, tools.run_plan),
    "convert-inception": (tools.define_convert, tools.run_convert),
    "prepare-data": (tools.define_prepare, tools.run_prepare),
    "fid": (score.define_fid, score.run_fid),
    "kid": (score.define_kid, score.run_kid),
    "pr": (score.define_pr, score.run_pr),
    "is": (score.define_is, score.run_is),
    "stats": (score.define_stats, score.run_stats),
    "prdc": (more_metrics.define_prdc, more_metrics.run_prdc),
    "prd": (more_metrics.define_prd, more_metrics.run_prd),
    "cmmd": (more_metrics.define_cmmd, more_metrics.run_cmmd),
    "fdinf": (more_metrics.define_fdinf, more_metrics.run_fdinf),
}
TAKES_ARGS = ("report", "list", "prepare-data", *score.SOURCES)
CONFIG_FILE_COMMANDS = ("train", "bench", "sweep")  # --config is a trial config file (config_flags)


def _fail(command: str, message: str, code: int = 2) -> None:
    print(f"gancmp {command}: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """`gancmp <command> [flags] [args]` (`USAGE`); `argv` as `sys.argv`. Output into a pipe
    that closes early (`gancmp list methods | head`) ends the command quietly."""
    args = list(sys.argv if argv is None else argv)
    try:
        _main(args)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        sys.exit(1)
    except KeyboardInterrupt:  # train and sweep checkpoint on the first Ctrl-C (`CtrlC`)
        command = f"gancmp {args[1]}" if len(args) > 1 else "gancmp"
        print(f"{command}: interrupted (Ctrl-C): stopped at once; what was saved before "
              "(checkpoints, records) is kept: run the same command to resume", file=sys.stderr)
        sys.exit(CTRL_C)


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
        except Exception as e:  # noqa: BLE001  (the config file is the user's Python code)
            path = _flag_value(args, "config") if command in CONFIG_FILE_COMMANDS else None
            line = cli_help.config_file_error(e, path)
            if line is None and not isinstance(e, (flags.Error, ValueError, KeyError,
                                                   AttributeError, TypeError)):
                raise
            _fail(command, line or cli_help.flag_error(e, args))

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
            _plan_config_error(command, e, argv)
            _lost_job(command, e)
            raise

    app.run(run_main, argv=[f"gancmp {command}", *argv[2:]], flags_parser=parse)


def _plan_config_error(command: str, error: Exception, argv: list[str]) -> None:
    """`gancmp plan` loads its --config file as it runs (`load_config_file`): an error the file
    raised (`cli_help.config_file_error`) ends it with one line, exit code 2. Else: returns."""
    if command == "plan":
        line = cli_help.config_file_error(error, _flag_value(argv, "config"))
        if line is not None:
            _fail(command, line)


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
    from gancmp.records import MixedSetupError
    from gancmp.storage import LockedError, RemoteStorageError

    return (DatasetUnavailableError, MixedSetupError, FileNotFoundError, KeyError,
            InceptionWeightsError, UnsafePickleError, ImageSourceError, ScoreError, LockedError,
            RemoteStorageError)

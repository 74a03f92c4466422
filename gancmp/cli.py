"""`gancmp <command> [flags]`: train | bench (more commands join as they land).

Flags are absl flags; trial configs are ml_collections config files with command-line overrides,
e.g. `gancmp train --config configs/ring8_mlp.py --workdir /tmp/r --config.method=WGAN_GP`.
Bad input (an unknown name, a bad number, a bad override) prints one line naming the field and
the allowed values, and exits with code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
USAGE = """usage: gancmp <command> [flags]

commands:
  train   train one trial:  gancmp train --config configs/ring8_mlp.py --workdir DIR
  bench   train-step throughput:  gancmp bench --config configs/mnist_infogan.py [--json]

`gancmp <command> --help` lists a command's flags.
"""


class UsageError(Exception):
    """Bad command-line input; reported in one line, exit code 2."""


def _define_train() -> None:
    config_flags.DEFINE_config_file("config", None, "Trial config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, samples and result.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")


def _run_train() -> int:
    from gancmp.train import loop

    if not FLAGS.workdir:
        raise UsageError("--workdir: required (a directory for checkpoints, logs and results)")
    record = loop.train(_config(), FLAGS.workdir, progress=FLAGS.progress)
    losses = ", ".join(f"{k} {v:.4g}" for k, v in record["final_losses"].items())
    print(f"{record['status']}: {record['steps']}/{record['num_d_steps']} D steps of "
          f"{record['method']} on {record['dataset']} in {record['wall_time_s']:.1f} s ({losses})")
    if record.get("samples"):
        print(f"samples: {record['samples']}")
    print(f"result: {FLAGS.workdir}/{loop.RESULT_FILE}")
    return 0


def _define_bench() -> None:
    config_flags.DEFINE_config_file("config", "configs/mnist_infogan.py", "Trial config file.",
                                    lock_config=True)
    flags.DEFINE_integer("batch_size", None, "Batch size (default: the config's).")
    flags.DEFINE_integer("calls", 10, "Timed device calls (the median is reported).")
    flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")


def _run_bench() -> int:
    from gancmp import bench

    result = bench.train_step(_config(), batch_size=FLAGS.batch_size, calls=FLAGS.calls)
    print(json.dumps(result) if FLAGS.json else bench.describe(result))
    return 0


def _config():
    if FLAGS.config is None:
        raise UsageError("--config: required (a config file, e.g. configs/ring8_mlp.py)")
    return FLAGS.config


COMMANDS: dict[str, tuple[Callable[[], None], Callable[[], int]]] = {
    "train": (_define_train, _run_train),
    "bench": (_define_bench, _run_bench),
}


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
        try:
            return FLAGS(args)
        except (flags.Error, ValueError, KeyError, AttributeError, TypeError) as e:
            _fail(command, str(e).splitlines()[0] if str(e) else type(e).__name__)

    def run_main(_: list[str]) -> int:
        from gancmp.train.setup import ConfigError

        try:
            return run()
        except (ConfigError, UsageError) as e:
            _fail(command, str(e))
        except _unavailable_errors() as e:
            _fail(command, str(e))

    app.run(run_main, argv=[f"gancmp {command}", *argv[2:]], flags_parser=parse)


def _unavailable_errors() -> tuple[type[Exception], ...]:
    from gancmp.data.tfds import DatasetUnavailableError

    return (DatasetUnavailableError,)


if __name__ == "__main__":
    main()

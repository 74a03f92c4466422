"""What the `gancmp` commands share: the usage error, the process-setup flags (runtime,
multi-process job) and the trial config flag's value. `gancmp.cli.main` dispatches; the command
modules define flags and run."""

from __future__ import annotations

import contextlib
import os
import signal

from absl import flags

FLAGS = flags.FLAGS
INTERRUPTED = 143  # the exit status of a run stopped by SIGTERM (128 + 15), as a shell reports it
CTRL_C = 130  # ... and by Ctrl-C (SIGINT: 128 + 2)
WAITING = 75  # a sweep shard that left a phase waiting for other shards (EX_TEMPFAIL): not finished


class UsageError(Exception):
    """Bad command-line input; reported in one line, exit code 2."""


class CtrlC:
    """Within it, Ctrl-C (SIGINT) stops a run as SIGTERM does: the trainer's SIGTERM handler
    (`gancmp.train.loop`, while a group trains) saves a checkpoint at the next device call and
    the run returns as interrupted; `pressed` says that Ctrl-C, not SIGTERM, stopped it. A
    second Ctrl-C, or one while nothing trains (loading, compiling), raises KeyboardInterrupt
    at once, which the command line reports in one line (exit code `CTRL_C`)."""

    def __init__(self):
        self.pressed = 0
        self._previous = None

    def __enter__(self) -> CtrlC:
        with contextlib.suppress(ValueError):  # not the main thread: no handler
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.pressed += 1
        on_sigterm = signal.getsignal(signal.SIGTERM)
        if self.pressed == 1 and callable(on_sigterm):
            on_sigterm(signal.SIGTERM, frame)
            return
        raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def status(self) -> tuple[int, str]:
        """(exit code, what stopped the run) of an interrupted run."""
        return (CTRL_C, "Ctrl-C") if self.pressed else (INTERRUPTED, "SIGTERM")


def define_distributed() -> None:
    """--coordinator_address, --num_processes, --process_id, --heartbeat_timeout
    (`initialize_distributed`)."""
    flags.DEFINE_string("coordinator_address", None,
                        "host:port of process 0 of a multi-process job (default: what "
                        "jax.distributed.initialize() detects: a multi-host Cloud TPU slice, "
                        "SLURM, Open MPI; else one process).")
    flags.DEFINE_integer("num_processes", None, "Processes in the job (with "
                         "--coordinator_address).")
    flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
    flags.DEFINE_integer("heartbeat_timeout", 60, "Multi-process job: seconds without a "
                         "heartbeat after which a process counts as lost and the others stop.")


def define_runtime(cpu_devices: int | None = None) -> None:
    """--compilation_cache, and --cpu_devices (default `cpu_devices`) unless it is None."""
    flags.DEFINE_string("compilation_cache", None,
                        "JAX's persistent compilation cache: a directory (local or gs://) or "
                        "'none' (default: $GANCMP_COMPILATION_CACHE, else ~/.cache/gancmp/xla/…).")
    if cpu_devices is not None:
        flags.DEFINE_integer("cpu_devices", cpu_devices, "On a CPU backend: devices to split the "
                             "CPU into, one trial group per device (0: one per core; 1: one "
                             "device whose kernels use all cores; at most the cores this "
                             "process may use). TPU/GPU: ignored.")


def start_runtime() -> None:
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


def initialize_distributed(auto: bool = True) -> None:
    """Joins the multi-process job of the --coordinator_address flags (`runtime.initialize`)."""
    from gancmp import runtime

    try:
        runtime.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                           auto=auto, heartbeat_timeout_s=FLAGS.heartbeat_timeout)
    except ValueError as e:
        raise UsageError(str(e)) from None


def trial_config(example: str = "configs/ring8_mlp.py"):
    """The ConfigDict of --config (a config file flag), overrides applied. UsageError when it is
    missing or its file cannot be loaded (the reason's last line, not ml_collections' report)."""
    if FLAGS.config is None:
        raise UsageError(f"--config: required (a config file, e.g. {example})")
    try:
        config = FLAGS.config
        # the modules its `imports` names are found next to it, as `load_config_file` does
        from gancmp.config import add_module_dirs

        # local only: a config file is Python code, imported from local disk
        add_module_dirs([os.path.dirname(os.path.abspath(FLAGS["config"].config_filename))])
        return config
    except OSError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UsageError(f"--config: cannot load the config file: {lines[-1]}") from None


def check_workdir_config(workdir: str) -> None:
    """UsageError naming the file when `workdir` holds a config.json that is not a JSON object
    (the trial config `gancmp train` writes there): a torn or overwritten file is one line, not
    a traceback from whatever reads it first."""
    import json

    from gancmp import storage
    from gancmp.train.workdir import CONFIG_FILE

    path = os.path.join(workdir, CONFIG_FILE)
    if not storage.exists(path):
        return
    try:
        value = json.loads(storage.read_text(path))
        problem = None if isinstance(value, dict) else f"a JSON {type(value).__name__}"
    except ValueError as e:
        problem = f"not JSON: {e}"
    if problem is not None:
        raise UsageError(
            f"--workdir: {path}: not a trial config ({problem}); restore it (result.json keeps a "
            "copy, under \"config\") or delete it and run `gancmp train --config FILE --workdir "
            f"{workdir}` with the run's config, which writes it again")

"""Compiling the next group's programs while a group trains (`sweep.compile_ahead`).

On a TPU or GPU host a train program takes tens of seconds to compile, on host cores that sit
idle while the chips train; the Lucic study has hundreds of programs. The runner starts the next
group's compilation (`group.precompile`, from shapes alone: nothing runs on a device) in a thread
as a group starts, and waits for it before that next group runs, whose calls then find their
programs in `jax.jit`'s cache (the shard's `step.Programs`, shared with the thread). In a
multi-process job every process compiles for itself, as it would anyway. Only the first group of
each phase compiles on the critical path (the next phase's groups depend on this phase's
records).
"""

from __future__ import annotations

import logging
import threading

import ml_collections

from gancmp.config import ConfigError
from gancmp.sweep import parallel
from gancmp.train import group as group_lib
from gancmp.train import memory
from gancmp.train.step import Programs
from gancmp.trial import Trial

MODES = ("auto", "on", "off")


def compile_ahead(sweep: ml_collections.ConfigDict, backend: str | None = None) -> bool:
    """Whether the runner compiles ahead on `backend` (default: this process's) under
    `sweep.compile_ahead`: "auto" (the default) under the accelerator layout policy
    (`parallel.layout_policy`: TPU/GPU, or simulated CPU devices laid out as chips), not under
    the CPU policy, whose cores the training itself uses; "on"; "off"."""
    mode = sweep.get("compile_ahead", "auto")
    if mode not in MODES:
        raise ConfigError(f"sweep compile_ahead: unknown {mode!r}; allowed: {', '.join(MODES)}")
    return mode == "on" or (mode == "auto"
                            and parallel.layout_policy(sweep, backend) == "accelerator")


class CompileAhead:
    """At most one group's programs compiling in a daemon thread (a preempted process does not
    wait for it). A failure there is logged as a warning and otherwise dropped: the group
    compiles again when it runs, and an error is raised there, where the runner reports it.
    `programs`: the run's (`step.Programs`), where the groups then find what it compiled."""

    def __init__(self, enabled: bool, programs: Programs):
        self.enabled = enabled
        self.programs = programs
        self.thread: threading.Thread | None = None

    def start(self, trials: tuple[Trial, ...], pad_to: int) -> None:
        """Starts compiling the programs of a group of `trials` padded to `pad_to`
        (`runner.group_trials`)."""
        if not self.enabled:
            return
        self.wait()
        self.thread = threading.Thread(target=_compile,
                                       args=(trials[0], len(trials), pad_to, self.programs),
                                       daemon=True, name="gancmp-compile-ahead")
        self.thread.start()

    def wait(self) -> None:
        """Until the programs started last are compiled (the group that needs them waits: they
        would otherwise compile twice at once)."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None


def _compile(trial: Trial, trials: int, pad_to: int, programs: Programs) -> None:
    try:
        group_lib.precompile(trial, trials, memory.abstract_arrays(trial.setup.dataset),
                             programs, pad_to)
    except Exception as e:  # noqa: BLE001 — the group's own compilation reports it
        first = (str(e).strip().splitlines() or [""])[0]
        logging.getLogger(__name__).warning(
            "compiling ahead failed (the group compiles when it runs): %s: %s",
            type(e).__name__, first)

"""Orbax checkpoints of a (stacked) train state, taken at device-call boundaries.

States are saved as host numpy arrays (PRNG keys are already raw `key_data`), so a restored run
continues bit for bit. The step number of a checkpoint is the number of D updates done.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from gancmp import storage


class Checkpoints:
    """A `CheckpointManager` over `directory`; `keep` = how many to keep (None: all)."""

    def __init__(self, directory: str, keep: int | None = None):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Saves `state` (device or host arrays) as checkpoint `step`; waits until written. A
        directory that cannot take it (`storage.WRITE_ERRORS`: full, read-only, not writable)
        raises that OSError, naming the directory, once the partial checkpoint is removed."""
        host = jax.tree.map(np.asarray, jax.device_get(state))
        absl_logger = logging.getLogger("absl")
        level, hook = absl_logger.level, sys.unraisablehook
        try:
            # orbax logs a failed save's traceback from each of its threads, and tensorstore
            # reports its pending writes into orbax's closed event loop: the error raised here
            # says it once
            absl_logger.setLevel(logging.CRITICAL)
            sys.unraisablehook = _without_closed_loop_reports(hook)
            self._manager.save(step, args=ocp.args.StandardSave(host))
            self._manager.wait_until_finished()
        except Exception as e:
            error = storage.write_error(e, self.directory)
            if error is None:
                raise
            # a full disk or a read-only directory: leave no half-written checkpoint behind
            for partial in glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")):
                shutil.rmtree(partial, ignore_errors=True)
            raise error from None
        finally:
            absl_logger.setLevel(level)
        sys.unraisablehook = hook  # saved: nothing is pending (a failed save keeps the filter)

    def restore(self, step: int, like: Any) -> Any:
        """The checkpoint `step` as host arrays with the structure of `like`."""
        abstract = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()


def _without_closed_loop_reports(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """`sys.unraisablehook` that drops the "Event loop is closed" reports tensorstore's pending
    writes of a failed save make once orbax has closed their event loop (dozens of tracebacks
    after the one error that matters), and passes everything else to `previous`."""
    def hook(unraisable: Any) -> None:
        value = getattr(unraisable, "exc_value", None)
        if isinstance(value, RuntimeError) and "Event loop is closed" in str(value):
            return
        previous(unraisable)
    return hook

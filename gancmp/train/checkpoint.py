"""Orbax checkpoints of a (stacked) train state, taken at device-call boundaries.

States are saved as host numpy arrays (PRNG keys are already raw `key_data`), so a restored run
continues bit for bit. The step number of a checkpoint is the number of D updates done.
"""

from __future__ import annotations

import glob
import os
import shutil
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
        try:
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

    def restore(self, step: int, like: Any) -> Any:
        """The checkpoint `step` as host arrays with the structure of `like`."""
        abstract = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()

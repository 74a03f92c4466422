"""What a run of a trial (or of a vmapped group of trials) has done that its checkpoints do not
hold: the time and device time spent over all the processes that trained it, the step at which
each trial diverged, and each trial's last logged losses.

They live in the trial directory's bookkeeping.json (`workdir.read_bookkeeping`), rewritten
atomically at every checkpoint (once saved, again after its evaluation) and when a run ends, so a
run killed with kill -9 loses only the time since its last checkpoint, and a resumed run carries
the totals on: `wall_time_s` and `device_hours` count every process's time (a damaged checkpoint
trained again counts twice: it was paid for twice). Divergence steps and losses are kept when
they belong to the checkpoint the run resumes from: a divergence at or before its step, losses
logged at its step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from gancmp.train.workdir import read_bookkeeping, write_bookkeeping

clock = time.monotonic  # seconds; durations only (tests replace it)


class Bookkeeping:
    """The running totals and per-trial state of a group of `size` trials on `num_devices`
    devices in `directory`, resumed at checkpoint `step` (0: fresh), timed from `started`
    (a `clock()` reading; default now).

    Attributes:
      diverged_at: [size] the D step at whose device call trial i first went NaN, else None;
        updated in place by the loop.
      last: {loss name: [size] floats} of the last device call ({} until one ran).
    """

    def __init__(self, directory: str, size: int, num_devices: int, step: int,
                 started: float | None = None):
        saved = read_bookkeeping(directory)
        self.directory, self.num_devices = directory, num_devices
        self._started = clock() if started is None else started
        self._wall = float(saved.get("wall_time_s", 0.0))
        self._device_s = float(saved.get("device_seconds", 0.0))
        diverged = saved.get("diverged_at")
        if not isinstance(diverged, list) or len(diverged) != size:
            diverged = [None] * size
        self.diverged_at: list[int | None] = [
            d if isinstance(d, int) and 0 < d <= step else None for d in diverged]
        losses = saved.get("final_losses") if saved.get("step") == step and step else None
        self.last: dict[str, np.ndarray] = {}
        if isinstance(losses, Mapping) and all(
                isinstance(v, list) and len(v) == size for v in losses.values()):
            self.last = {name: np.asarray(v, np.float64) for name, v in losses.items()}

    @property
    def wall_time_s(self) -> float:
        """Seconds spent on this group by every process so far, this one included."""
        return self._wall + (clock() - self._started)

    @property
    def device_hours(self) -> float:
        """Device-hours spent so far: each process's seconds × its devices / 3600."""
        return (self._device_s + (clock() - self._started) * self.num_devices) / 3600.0

    def save(self, step: int) -> None:
        """Writes the totals up to now and the per-trial state at D step `step` (main process)."""
        write_bookkeeping(self.directory, self.to_json(step))

    def to_json(self, step: int) -> dict[str, Any]:
        return {"step": int(step), "wall_time_s": self.wall_time_s,
                "device_seconds": self.device_hours * 3600.0,
                "diverged_at": list(self.diverged_at),
                "final_losses": {name: [float(x) for x in v] for name, v in self.last.items()}}

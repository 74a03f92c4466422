"""TensorBoard event files of a group of trials (tensorboardX: no TensorFlow needed).

A gs:// directory gets its event file through tensorboardX's own GCS writer
(google-cloud-storage): the file is kept in memory and uploaded whole at each flush (after each
log line, evaluation and picture), so the bucket holds the events up to the last flush and
nothing stays on the VM's disk.

Tags, for trial i of a group whose trials are named (a sweep names them by trial id) or, unnamed,
`trial_<i>` (a lone trial's tags have no prefix):

    <name>/d_loss, <name>/g_loss, <name>/penalty, ...   the logged losses, every `log_every`
    <name>/eval/<metric>                                every number an evaluation gives, at
                                                        its checkpoint's step
    <name>/samples                                      the sample picture of each checkpoint
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gancmp import storage
from gancmp.train.workdir import tb_dir


class TrainLog:
    """The event file of the trials of one directory (`workdir.tb_dir`); `names`: one per
    trial (None: `trial_<i>`, or no prefix for a single trial)."""

    def __init__(self, directory: str, size: int, names: Sequence[str] | None = None):
        from tensorboardX import SummaryWriter

        if names is not None and len(names) != size:
            raise ValueError(f"{len(names)} trial names for a group of {size}")
        if names is not None:
            self.prefixes = [f"{n}/" for n in names]
        else:
            self.prefixes = [""] if size == 1 else [f"trial_{i}/" for i in range(size)]
        storage.makedirs(tb_dir(directory))  # a gs:// bucket checked: one line if unusable
        self._writer = SummaryWriter(tb_dir(directory))

    def losses(self, last: Mapping[str, np.ndarray], step: int) -> None:
        """The logged values {name: [K]} of every trial at `step`."""
        for name, values in last.items():
            for prefix, v in zip(self.prefixes, values, strict=True):
                self._writer.add_scalar(f"{prefix}{name}", float(v), step)
        self._writer.flush()

    def evaluation(self, step: int, metrics: Sequence[Mapping[str, Any]]) -> None:
        """Every number of each trial's metrics (one dict per trial) at checkpoint `step`;
        non-numbers (a status) are left out."""
        for prefix, values in zip(self.prefixes, metrics, strict=True):
            for name, v in values.items():
                if isinstance(v, numbers.Real) and not isinstance(v, bool):
                    self._writer.add_scalar(f"{prefix}eval/{name}", float(v), step)
        self._writer.flush()

    def samples(self, step: int, pictures: Sequence[np.ndarray]) -> None:
        """Each trial's sample picture (uint8 [H, W, C], `samples.picture`) at `step`."""
        for prefix, picture in zip(self.prefixes, pictures, strict=True):
            picture = np.asarray(picture)
            if picture.shape[-1] == 1:
                picture = np.repeat(picture, 3, axis=-1)
            self._writer.add_image(f"{prefix}samples", picture, step, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file."""
        self._writer.close()


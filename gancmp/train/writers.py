"""Where a group's training run writes its progress: one `RunWriter` per run, for the TensorBoard
event file and the progress display. `loop._GroupRun` holds one and calls `losses`, `advance`,
`evaluation`, `samples` and `close`; what it carries over resumes (time, divergence, last losses)
is the trial directory's bookkeeping (`workdir.Bookkeeping`), not a sink.

TensorBoard (tensorboardX's protocol buffers: no TensorFlow needed), written by the main process
only (`TensorBoard`): a local event file is appended at every log line, evaluation and picture;
a gs:// directory gets the events of each stretch between checkpoints as one new object, written
at the checkpoint (`RunWriter.checkpoint`), so the bucket receives every event once and nothing
stays on the VM's disk (tensorboardX's own GCS writer re-uploaded the whole file at each flush:
tens of GB per group when every device call logs).
Tags, for trial i of a group whose trials are named (a sweep names them by trial id) or, unnamed,
`trial_<i>` (a lone trial's tags have no prefix):

    <name>/d_loss, <name>/g_loss, <name>/penalty, ...   the logged losses, every `log_every`
    <name>/eval/<metric>                                every number an evaluation gives, at
                                                        its checkpoint's step
    <name>/samples                                      the sample picture of each checkpoint

Progress on stderr, shown by every process that asked for it: a tqdm bar on a terminal;
otherwise (a log file, a pipe) a plain line every `GANCMP_PROGRESS_EVERY` seconds (default 30),
since a bar's carriage-return updates would fill a log file with one frozen line per step.
A plain line reads
    NS_GAN ring8: 1200/15625 D steps (7.7 %), 45.2 D steps/s, ETA 5 min 19 s, d_loss 1.31, …
with the rate measured over this run so far; the losses shown are each loss's mean over the
group's trials, to 3 significant digits.
"""

from __future__ import annotations

import numbers
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import numpy as np
from tensorboardX import summary as _summary
from tensorboardX.proto import event_pb2 as _event_pb2
from tensorboardX.record_writer import masked_crc32c as _masked_crc32c

from gancmp import storage
from gancmp.config import env_seconds
from gancmp.runtime import is_main_process
from gancmp.train.workdir import tb_dir

EVERY_ENV = "GANCMP_PROGRESS_EVERY"
DEFAULT_EVERY_S = 30.0


class RunWriter:
    """The progress sinks of one run of a group of `size` trials in `directory`: the TensorBoard
    event file (main process only; `names` name the trials' tags, see the module docstring) and,
    with `progress`, the display of `total` D steps from `initial`, labelled `desc`. Every method
    may be called on every process: the main-process-only part is skipped elsewhere."""

    def __init__(self, directory: str, size: int, names: Sequence[str] | None, *,
                 total: int, initial: int, desc: str, progress: bool):
        self.tensorboard = TensorBoard(directory, size, names) if is_main_process() else None
        self.bar = progress_display(total, initial, desc) if progress else None

    def losses(self, step: int, last: Mapping[str, np.ndarray]) -> None:
        """The logged values {name: [size]} of every trial at D step `step`, to TensorBoard."""
        if self.tensorboard is not None:
            self.tensorboard.losses(last, step)

    def advance(self, n: int, last: Mapping[str, np.ndarray]) -> None:
        """`n` more D steps done, the latest losses {name: [size]} shown after the rate (their
        mean over the trials, NaN ignored, `.3g`)."""
        if self.bar is not None:
            self.bar.set_postfix({k: f"{float(np.nanmean(v)):.3g}" for k, v in last.items()},
                                 refresh=False)
            self.bar.update(n)

    def evaluation(self, step: int, rows: Sequence[Mapping[str, Any]]) -> None:
        """Each trial's metrics (one dict per trial) of checkpoint `step`, to TensorBoard."""
        if self.tensorboard is not None:
            self.tensorboard.evaluation(step, rows)

    def samples(self, step: int, pictures: Sequence[np.ndarray]) -> None:
        """Each trial's sample picture (uint8 [H, W, C]) of checkpoint `step`, to TensorBoard."""
        if self.tensorboard is not None:
            self.tensorboard.samples(step, pictures)

    def checkpoint(self) -> None:
        """A checkpoint is done (saved, evaluated, its pictures given): TensorBoard's events so
        far are written (`TensorBoard.flush`: on gs://, the one upload between checkpoints)."""
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        """Closes the display (its last line) and then the event file."""
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


class TensorBoard:
    """The event files of the trials of one directory (`workdir.tb_dir`); `names`: one per
    trial (None: `trial_<i>`, or no prefix for a single trial).

    Events are gathered in memory (protocol buffers built by tensorboardX's `summary`, framed
    as TFRecords) and written by `flush`: a local directory gets them appended to this run's
    one event file at every log line, evaluation and picture (an append costs the new bytes);
    a gs:// directory only when `flush` is called — at each checkpoint (`RunWriter.checkpoint`)
    and on `close` — each flush one new object `events.out.tfevents.<start>.<host>.<n>` (names
    sort in writing order; TensorBoard reads every file of the folder). So a bucket receives
    each event once, never a re-upload of the file so far, and a hard kill loses only the
    events since the last checkpoint, which the resumed run logs again."""

    def __init__(self, directory: str, size: int, names: Sequence[str] | None = None):
        if names is not None and len(names) != size:
            raise ValueError(f"{len(names)} trial names for a group of {size}")
        if names is not None:
            self.prefixes = [f"{n}/" for n in names]
        else:
            self.prefixes = [""] if size == 1 else [f"trial_{i}/" for i in range(size)]
        self.folder = tb_dir(directory)
        storage.makedirs(self.folder)  # a gs:// bucket checked: one line if unusable
        self.remote = storage.is_remote(self.folder)
        self._name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        self._pending: list[bytes] = []
        self._pieces = 0  # event files (gs://) or appends (local) written so far

    def losses(self, last: Mapping[str, np.ndarray], step: int) -> None:
        """The logged values {name: [K]} of every trial at `step`."""
        for name, values in last.items():
            for prefix, v in zip(self.prefixes, values, strict=True):
                self._add(_summary.scalar(f"{prefix}{name}", float(v)), step)
        self._written()

    def evaluation(self, step: int, metrics: Sequence[Mapping[str, Any]]) -> None:
        """Every number of each trial's metrics (one dict per trial) at checkpoint `step`;
        non-numbers (a status) are left out."""
        for prefix, values in zip(self.prefixes, metrics, strict=True):
            for name, v in values.items():
                if isinstance(v, numbers.Real) and not isinstance(v, bool):
                    self._add(_summary.scalar(f"{prefix}eval/{name}", float(v)), step)
        self._written()

    def samples(self, step: int, pictures: Sequence[np.ndarray]) -> None:
        """Each trial's sample picture (uint8 [H, W, C], `samples.picture`) at `step`."""
        for prefix, picture in zip(self.prefixes, pictures, strict=True):
            picture = np.asarray(picture)
            if picture.shape[-1] == 1:
                picture = np.repeat(picture, 3, axis=-1)
            self._add(_summary.image(f"{prefix}samples", picture, dataformats="HWC"), step)
        self._written()

    def _add(self, summary: Any, step: int) -> None:
        event = _event_pb2.Event(summary=summary, step=int(step), wall_time=time.time())
        self._pending.append(_record(event.SerializeToString()))

    def _written(self) -> None:
        if not self.remote:
            self.flush()

    def flush(self) -> None:
        """Writes the events gathered since the last flush (nothing when there are none)."""
        if not self._pending:
            return
        header = []
        if self.remote or not self._pieces:  # each file starts with its version event
            version = _event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
            header = [_record(version.SerializeToString())]
        data = b"".join(header + self._pending)
        if self.remote:
            path = storage.join(self.folder, f"{self._name}.{self._pieces:06d}")
            storage.write_atomic(path, data)
        else:
            storage.append_bytes(os.path.join(self.folder, self._name), data)
        self._pending, self._pieces = [], self._pieces + 1

    def close(self) -> None:
        """Writes what is left (`flush`)."""
        self.flush()


def _record(data: bytes) -> bytes:
    """`data` framed as one TFRecord: length, its masked CRC-32C, data, its masked CRC-32C."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", _masked_crc32c(header)) + data
            + struct.pack("<I", _masked_crc32c(data)))


def every_seconds() -> float:
    """Seconds between plain progress lines: $GANCMP_PROGRESS_EVERY, else 30. ConfigError for a
    value that is not a positive number."""
    return env_seconds(EVERY_ENV, DEFAULT_EVERY_S, "seconds between progress lines")


def _duration(seconds: float) -> str:
    """`seconds` rounded, as "42 s", "5 min 19 s" or "2 h 7 min"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class PlainProgress:
    """tqdm's `update`, `set_postfix` and `close`, printing one line per `every` seconds (and a
    last one on `close` if steps were done since the previous line) to `stream`."""

    def __init__(self, total: int, initial: int, desc: str, every: float,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.n, self.desc, self.every = total, initial, desc, every
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self._start, self._start_n = clock(), initial
        self._last_line, self._printed_n = self._start, initial
        self._postfix: dict[str, Any] = {}

    def update(self, n: int) -> None:
        """`n` more steps done; prints a line if `every` seconds passed since the last one."""
        self.n += n
        if self.clock() - self._last_line >= self.every:
            self._print()

    def set_postfix(self, values: Mapping[str, Any], refresh: bool = False) -> None:
        """The values shown after the rate (the latest losses); `refresh` as tqdm's (unused:
        lines come at their own pace)."""
        self._postfix = dict(values)

    def line(self) -> str:
        """The current progress line."""
        elapsed = self.clock() - self._start
        done = self.n - self._start_n
        pct = 100.0 * self.n / self.total if self.total else 100.0
        text = f"{self.desc}: {self.n}/{self.total} D steps ({pct:.1f} %)"
        if elapsed > 0 and done > 0:
            rate = done / elapsed
            text += f", {rate:.1f} D steps/s, ETA {_duration((self.total - self.n) / rate)}"
        return ", ".join([text, *(f"{k} {v}" for k, v in self._postfix.items())])

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line, self._printed_n = self.clock(), self.n

    def close(self) -> None:
        """Prints the last line, unless no step was done since the previous one."""
        if self.n != self._printed_n:
            self._print()


def progress_display(total: int, initial: int, desc: str):
    """A progress display of `total` D steps starting at `initial`: a tqdm bar when stderr is a
    terminal, else a `PlainProgress` every `every_seconds()`."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="D step", dynamic_ncols=True,
                    mininterval=2.0, leave=False)
    return PlainProgress(total, initial, desc, every_seconds())

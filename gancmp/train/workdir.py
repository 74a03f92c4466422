"""The trial directory: the one place its file names are spelled, and what reads and writes them.

A `gancmp train --workdir DIR` holds one trial; a sweep's `groups/<id>/` holds a vmapped group
of trials with the same layout (no config.json or result.json: the sweep's records carry those):

  config.json    the trial's config; resuming with a different one is refused (`check_config`),
                 unless the workdir holds no run yet (`holds_run`)
  checkpoints/   orbax checkpoints of the (stacked) train state, one per step (`checkpoints`)
  evals.jsonl    one line per evaluated checkpoint, append-only: {"step": int, "metrics": {...}}
                 in a trial workdir, {"step": int, "metrics": [{...} per trial]} in a group
  result.json    the trial's record (`gancmp.records.Record`), rewritten by `gancmp eval`
  samples.png    the final sample picture (a group: samples-<i>.png of trial i)
  tb/            TensorBoard event files
  bookkeeping.json  time and device time over every resume, divergence steps, last losses
                 (`Bookkeeping`), rewritten at each checkpoint
  checkpoints-damaged/  checkpoints that could not be read, set aside (`Checkpoints`)
  train.lock     held while a `gancmp train` or `gancmp eval` process uses the workdir (`lock`)

Only the main process of a multi-host job writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from gancmp import records, storage
from gancmp.config import ConfigError
from gancmp.runtime import is_main_process
from gancmp.train.checkpoint import Checkpoints
from gancmp.trial import Trial

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
EVALS_FILE = "evals.jsonl"
RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.png"
TB_DIR = "tb"
BOOKKEEPING_FILE = "bookkeeping.json"
DAMAGED_DIR = "checkpoints-damaged"
LOCK_FILE = "train.lock"
# config fields a resumed trial may change: the budget and bookkeeping, not what is trained
RESUMABLE_FIELDS = frozenset({"num_d_steps", "log_every", "progress", "eval_every", "eval", "fid"})


def checkpoints(directory: str, keep: int | None = None) -> Checkpoints:
    """The checkpoint manager of `directory`/checkpoints (`keep`: how many to keep; None: all).
    The caller closes it."""
    return Checkpoints(os.path.join(directory, CHECKPOINTS_DIR), keep,
                       damaged=os.path.join(directory, DAMAGED_DIR))


def lock(directory: str) -> contextlib.AbstractContextManager:
    """The lock of a trial workdir (`storage.lock` on train.lock), taken by the main process of
    a job (the others share its claim): a second process refuses with `storage.LockedError`."""
    if not is_main_process():
        return contextlib.nullcontext()
    return storage.lock(os.path.join(directory, LOCK_FILE))


def tb_dir(directory: str) -> str:
    """Where the TensorBoard event files go."""
    return os.path.join(directory, TB_DIR)


def samples_path(directory: str, group_size: int = 1, index: int = 0) -> str:
    """The final sample picture of trial `index` of a group of `group_size` trials:
    samples.png for a group of one, else samples-<index>.png."""
    name = SAMPLES_FILE if group_size == 1 else f"samples-{index}.png"
    return os.path.join(directory, name)


def result_path(directory: str) -> str:
    """The trial's record, result.json."""
    return os.path.join(directory, RESULT_FILE)


def read_result(directory: str) -> records.Record | None:
    """The trial's record (any version `Record.from_json` reads); None when result.json does
    not exist yet. ValueError when it is not a record."""
    path = result_path(directory)
    if not storage.exists(path):
        return None
    return records.Record.from_json(json.loads(storage.read_text(path)))


def write_result(directory: str, record: records.Record) -> None:
    """(Re)writes result.json atomically (main process only), in the current record version
    (`records.dumps`)."""
    if is_main_process():
        storage.write_atomic(result_path(directory), records.dumps(record, indent=2))


def finished_record(directory: str, trial: Trial) -> records.Record | None:
    """The recorded result of the trial in `directory` when it is done for `trial`: diverged, or
    finished with at least its budget's D steps; else None (never run, interrupted, or a
    longer budget asked for). An unreadable result.json counts as not done, with a warning."""
    try:
        record = read_result(directory)
    except ValueError as e:
        storage.warning(f"{result_path(directory)}: unreadable ({e}); it is written again")
        return None
    if record is None:
        return None
    if record.status == "diverged" or (record.status == "finished"
                                       and int(record.steps or 0) >= trial.budget.num_d_steps):
        return record
    return None


def read_bookkeeping(directory: str) -> dict[str, Any]:
    """bookkeeping.json of `directory` (`Bookkeeping`); {} when missing or
    unreadable (with a warning: the totals start again from zero)."""
    path = os.path.join(directory, BOOKKEEPING_FILE)
    if not storage.exists(path):
        return {}
    try:
        value = json.loads(storage.read_text(path))
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return value
    except ValueError as e:
        storage.warning(f"{path}: unreadable ({e}); time totals start again from zero")
        return {}


def write_bookkeeping(directory: str, value: Mapping[str, Any]) -> None:
    """Rewrites bookkeeping.json atomically (main process only)."""
    if is_main_process():
        storage.write_atomic(os.path.join(directory, BOOKKEEPING_FILE), json.dumps(value))


def is_trial(directory: str) -> bool:
    """Whether `directory` is a `gancmp train` workdir (holds config.json)."""
    return storage.exists(os.path.join(directory, CONFIG_FILE))


def read_config(directory: str) -> ml_collections.ConfigDict:
    """The config a trial workdir was trained with. FileNotFoundError (naming --workdir) when
    `directory` holds no trial."""
    if not is_trial(directory):
        raise FileNotFoundError(
            f"--workdir: {directory} holds no trial ({CONFIG_FILE} missing); give the workdir of "
            "a `gancmp train` run")
    return ml_collections.ConfigDict(
        json.loads(storage.read_text(os.path.join(directory, CONFIG_FILE))))


def check_config(trial: Trial, directory: str) -> None:
    """Claims `directory` for `trial`: creates it and writes its config as config.json (unless it
    already holds that config). A workdir belongs to one trial: resuming with a different config
    (other than `RESUMABLE_FIELDS`) raises ConfigError naming the fields, rather than silently
    mixing two runs. A workdir that holds no run yet (`holds_run`: a run that failed before its
    first checkpoint, e.g. at its first compile or data load) is claimed again: a different
    config replaces its config.json (and the failed run's TensorBoard events), with a warning."""
    storage.makedirs(directory)
    path = os.path.join(directory, CONFIG_FILE)
    current = json.loads(trial.config_json)
    saved = None
    if storage.exists(path):
        saved = json.loads(storage.read_text(path))
        changed = sorted(k for k in set(saved) | set(current)
                         if k not in RESUMABLE_FIELDS and saved.get(k) != current.get(k))
        if changed and holds_run(directory):
            raise ConfigError(
                f"workdir {directory} holds a run with a different config (fields: "
                f"{', '.join(changed)}); use a new --workdir or the same config")
        if changed and is_main_process():
            storage.warning(f"{path}: replaced by the new config (fields: {', '.join(changed)}); "
                            "the run it held failed before its first checkpoint")
            if storage.exists(tb_dir(directory)):
                storage.rmtree(tb_dir(directory))
    if is_main_process() and saved != current:
        storage.write_atomic(path, json.dumps(current, indent=2))


def holds_run(directory: str) -> bool:
    """Whether the trial workdir `directory` holds anything of a run: a checkpoint (a step
    folder in checkpoints/, complete or not), a result, an evaluation or the bookkeeping of a
    checkpoint. One whose run failed before its first checkpoint holds only its config.json
    (and perhaps a stale lock, an empty checkpoints/ and TensorBoard events)."""
    if any(storage.exists(os.path.join(directory, name))
           for name in (RESULT_FILE, BOOKKEEPING_FILE)):
        return True
    if storage.jsonl_exists(os.path.join(directory, EVALS_FILE)):  # on gs://, perhaps parts
        return True
    folder = os.path.join(directory, CHECKPOINTS_DIR)
    return storage.isdir(folder) and any(name[:1].isdigit() for name in storage.listdir(folder))


def read_evals(directory: str) -> dict[int, list[dict[str, Any]]]:
    """The evaluated checkpoints in evals.jsonl: step → [metrics of trial i for each trial]
    (a trial workdir's rows, one dict each, come back as lists of one); {} when none. A torn or
    corrupt line (a writer killed mid-append) is skipped with a warning: that checkpoint counts
    as not evaluated, and is evaluated again."""
    rows, _ = storage.read_jsonl(os.path.join(directory, EVALS_FILE), check=_check_eval)
    evals: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        metrics = row["metrics"]
        evals[int(row["step"])] = [metrics] if isinstance(metrics, dict) else metrics
    return evals


def _check_eval(row: Any) -> None:
    if not (isinstance(row, dict) and isinstance(row.get("step"), int)
            and isinstance(row.get("metrics"), dict | list)):
        raise ValueError('not an evals row {"step": int, "metrics": ...}')


def append_eval(directory: str, step: int, metrics: Sequence[Mapping[str, Any]],
                group: bool) -> None:
    """Appends checkpoint `step`'s per-trial metrics to evals.jsonl (main process only): as a
    list (`group`, a sweep group's directory) or as the one trial's dict (a trial workdir)."""
    if not group and len(metrics) != 1:
        raise ValueError(f"a trial workdir holds one trial; got metrics of {len(metrics)}")
    if is_main_process():
        row = {"step": step, "metrics": list(metrics) if group else metrics[0]}
        storage.append_line(os.path.join(directory, EVALS_FILE), json.dumps(row))


# bookkeeping.json: what a run of a trial (or of a vmapped group of trials) has done that its
# checkpoints do not hold: the time and device time spent over all the processes that trained it,
# the step at which each trial diverged, each trial's last logged losses, and the execution layout
# its checkpoints were trained in (resuming in another is refused). Rewritten atomically
# at every checkpoint (once saved, again after its evaluation) and when a run ends, so a run killed
# with kill -9 loses only the time since its last checkpoint, and a resumed run carries the totals
# on: `wall_time_s` and `device_hours` count every process's time (a damaged checkpoint trained
# again counts twice: it was paid for twice). Divergence steps and losses are kept when they belong
# to the checkpoint the run resumes from: a divergence at or before its step, losses logged at its
# step. It is state read back into the record, not a progress sink, so it lives here, with the
# file it reads and writes, rather than in `writers`.

clock = time.monotonic  # seconds; durations only (tests replace it)


class Bookkeeping:
    """The running totals and per-trial state of a group of `size` trials on `num_devices`
    devices in `directory`, resumed at checkpoint `step` (0: fresh), timed from `started`
    (a `clock()` reading; default now), trained in the execution `layout` ({field: value} of
    `LAYOUT`, recorded with the totals; None: not recorded).

    A trial's numbers depend on its layout (a vmapped or sharded program rounds differently),
    so a checkpoint is resumed only in the layout that wrote it: `check_layout`, before the
    checkpoint is read.

    Attributes:
      diverged_at: [size] the D step at whose device call trial i first went NaN, else None;
        updated in place by the loop.
      last: {loss name: [size] floats} of the last device call ({} until one ran).
    """

    # the fields of an execution layout that a resume must keep (README, "Reproducibility"),
    # each with how to get it back. The layout also records `steps_per_call`, not checked: it
    # was measured to change no number, and by default (0: per backend) it follows the budget,
    # which a resume may raise.
    LAYOUT = {"num_devices": "as many devices: config.num_devices, gancmp sweep --cpu_devices",
              "parallelism": "config.parallelism",
              "trials_computed": "the sweep's max_trials_per_group / max_trials_per_device"}

    def __init__(self, directory: str, size: int, num_devices: int, step: int,
                 started: float | None = None, layout: Mapping[str, Any] | None = None):
        saved = read_bookkeeping(directory)
        self.layout = dict(layout) if layout is not None else None
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

    @classmethod
    def check_layout(cls, directory: str, layout: Mapping[str, Any], step: int) -> None:
        """Raises ConfigError (one line naming both) when the layout that bookkeeping.json of
        `directory` records for its checkpoints differs from `layout`, this run's: resuming
        checkpoint `step` there would mix two layouts' arithmetic under one trial id. Nothing
        recorded (checkpoints written before layouts were): no check."""
        saved = read_bookkeeping(directory).get("layout")
        if not isinstance(saved, Mapping):
            return
        changed = [k for k in cls.LAYOUT if k in saved and saved[k] != layout.get(k)]
        if not changed:
            return

        def said(values: Mapping[str, Any]) -> str:
            return ", ".join(f"{k}={values.get(k)}" for k in changed)

        raise ConfigError(
            f"{directory}: checkpoint {step} was trained with {said(saved)}, this run has "
            f"{said(layout)}, and a trial's numbers depend on its layout; resume with the "
            f"layout of the checkpoint ({'; '.join(cls.LAYOUT[k] for k in changed)}), or delete "
            f"{os.path.join(directory, CHECKPOINTS_DIR)} to train again from step 0")

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
        """bookkeeping.json's object at D step `step`: step, wall_time_s, device_seconds,
        diverged_at [size], final_losses {name: [size]}, and the `layout` its checkpoints were
        trained in (when given)."""
        out = {"step": int(step), "wall_time_s": self.wall_time_s,
               "device_seconds": self.device_hours * 3600.0,
               "diverged_at": list(self.diverged_at),
               "final_losses": {name: [float(x) for x in v] for name, v in self.last.items()}}
        if self.layout is not None:
            out["layout"] = self.layout
        return out

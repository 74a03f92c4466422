"""One trial end to end — or a group of trials that share a program, trained together.

Trains for the configured number of D updates with a progress display (`progress`), logs losses,
evaluations and each checkpoint's samples to TensorBoard (`tblog`), checkpoints every
`checkpoint_every` D updates and at the end of the budget (`gancmp.train.schedule`; at
device-call boundaries), resumes from the latest readable
checkpoint (a damaged one is set aside: `checkpoint.Checkpoints.restore_latest`), records a NaN
run as `diverged`, and ends with a sample grid and `result.json`. Checkpoints are written
asynchronously while training goes on. On SIGTERM (a preemption notice of ~30 s) it stops at the
next device-call boundary, or at once when an evaluation is running, saves a checkpoint without
evaluating it, waits for the write and returns the trials as `interrupted`; in a multi-process job
every process stops at the same call (`runtime.any_process`). Time, device time, divergence steps
and last losses carry over resumes (`bookkeeping`). A trial workdir is locked while it trains, and
a finished one is reported, never trained or rewritten again.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from gancmp import runtime, storage
from gancmp.data import source as data_source
from gancmp.runtime import is_main_process
from gancmp.train import bookkeeping, evaluation, schedule
from gancmp.train import group as group_lib
from gancmp.train import samples as samples_lib
from gancmp.train.config import TrialSetup, make_setup, trial_hparams
from gancmp.train.progress import progress as progress_display
from gancmp.train.state import TrainState
from gancmp.train.tblog import TrainLog
from gancmp.train.workdir import (
    check_config,
    checkpoints,
    finished_record,
    lock,
    samples_path,
    trial_record,
    write_result,
)


class Preempted(Exception):
    """SIGTERM arrived while an evaluation ran (`_Preemption.interruptible`)."""


class _Preemption:
    """Turns SIGTERM into a flag checked at call boundaries (a preempted TPU VM gets one), and,
    inside `interruptible()` (an evaluation, which can outlast the notice), into `Preempted`
    raised at once in the main thread, so the run stops within the notice."""

    def __init__(self):
        self.requested = False
        self._previous = None
        self._raise = False

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: no handler
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        if self._raise:
            self._raise = False
            raise Preempted

    @contextlib.contextmanager
    def interruptible(self):
        """A stretch of work that SIGTERM stops by raising `Preempted` (once)."""
        if self.requested:
            raise Preempted
        self._raise = True
        try:
            yield
        finally:
            self._raise = False

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train_group(
    config: ml_collections.ConfigDict,
    setup: TrialSetup,
    seeds: Sequence[int],
    hparams: Sequence[Mapping[str, Any]],
    workdir: str,
    *,
    on_checkpoint: Callable[[int, TrainState], Any] | None = None,
    progress: bool = True,
    data: data_source.DataSource | None = None,
    names: Sequence[str] | None = None,
    pad_to: int = 0,
) -> list[dict[str, Any]]:
    """Trains K trials (same setup; their own seeds and numeric hyperparameters) in one vmapped
    program, checkpointing the stacked state under `workdir`. Returns each trial's training
    outcome (the first part of its record, `workdir.trial_record`) with `status` in {"finished",
    "diverged", "interrupted"}; `wall_time_s` and `device_hours` are the whole group's, summed
    over every process that trained it (`bookkeeping`).

    `on_checkpoint(step, states)` runs after each checkpoint, and on the restored checkpoint when
    resuming (so it must be idempotent; evaluation hooks in here), with the group's trials
    (`group.Group.unpadded`: in a multi-process job the padded state, whose first K rows
    `runtime.map_trials` reads); when it returns one metrics
    dict per trial (`evaluation.TrialEvals.add`), they go to TensorBoard with the checkpoint's
    sample pictures. `data` replaces the configured dataset (tests, benchmarks); `names` name
    the trials in TensorBoard (a sweep: trial ids; default `trial_<i>`, see `tblog`); `pad_to`
    pads the group to that many trials (`group.create_group`: computed, never reported).
    """
    started = bookkeeping.clock()
    storage.makedirs(workdir)
    if data is None:
        data = data_source.load(setup.dataset, config.get("data_dir"), config.get("data_seed", 0))
    ckpts = checkpoints(workdir, config.get("keep_checkpoints"))
    writer = bar = drawn = drawn_at = None  # drawn: the samples of checkpoint drawn_at
    try:
        group = group_lib.create_group(config, setup, seeds, hparams, data.arrays,
                                      checkpoints=ckpts, pad_to=pad_to)
        k, step, states = group.size, group.step, group.states
        books = bookkeeping.Bookkeeping(workdir, k, setup.num_devices, step, started)
        total = config.num_d_steps
        diverged_at = books.diverged_at
        writer = TrainLog(workdir, k, names) if is_main_process() else None
        bar = (progress_display(total, step, f"{setup.method.name} {setup.dataset}")
               if progress else None)
        start_step, interrupted = step, False
        with _Preemption() as preemption:
            # a run killed between saving a scheduled checkpoint and evaluating it (a checkpoint
            # taken on SIGTERM is off the schedule and never evaluated)
            if step and on_checkpoint is not None and group.plan.is_checkpoint(step):
                try:
                    with preemption.interruptible():
                        on_checkpoint(step, group.unpadded(states))
                except Preempted:
                    interrupted = True
            while step < total and not interrupted:
                train_fn, iterations = group.call_at(step)
                per_call = iterations * setup.disc_iters
                states, metrics = train_fn(states, group.arrays)
                # [K, steps_per_call] each, from every process; waits for the call
                metrics = runtime.to_host(metrics)
                # drop the padding trials, and the rows past a short call's iterations
                metrics = {name: v[:k, :iterations] for name, v in metrics.items()}
                step += per_call
                books.last = last = {name: v[:, -1] for name, v in metrics.items()}
                _mark_divergence(metrics, diverged_at, step)
                if writer is not None and (step % config.log_every < per_call or step == total):
                    writer.losses(last, step)
                if bar is not None:
                    bar.set_postfix({n: f"{float(np.nanmean(v)):.3g}" for n, v in last.items()},
                                    refresh=False)
                    bar.update(per_call)
                if all(d is not None for d in diverged_at):
                    break
                stop = runtime.any_process(preemption.requested)  # every process stops together
                if group.plan.is_checkpoint(step) or stop:
                    ckpts.save(step, states)  # asynchronous: written while the next call runs
                    books.save(step)
                if stop:  # no evaluation on the way out (the notice is short): done on resume
                    interrupted = True
                    break
                if group.plan.is_checkpoint(step):
                    try:
                        with preemption.interruptible():
                            evaluated = (on_checkpoint(step, group.unpadded(states))
                                         if on_checkpoint is not None else None)
                    except Preempted:  # its checkpoint is saved; evaluated when resumed
                        interrupted = True
                        break
                    if on_checkpoint is not None:
                        books.save(step)
                    drawn = _log_checkpoint(writer, setup, step, group.unpadded(states), k,
                                            evaluated)
                    drawn_at = step
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        ckpts.close()  # waits for the last save
    books.save(step)
    wall, device_hours, last = books.wall_time_s, books.device_hours, books.last
    pictures = None
    if not interrupted:  # the last checkpoint's samples are the final ones (same noise, state)
        pictures = drawn if drawn is not None and drawn_at == step else (
            _draw(setup, group.unpadded(states), k))
    if not is_main_process():
        pictures = None
    outcomes = []
    for i in range(k):
        status = ("diverged" if diverged_at[i] is not None
                  else "interrupted" if interrupted else "finished")
        outcomes.append({
            "status": status, "seed": int(group.seeds[i]), "hparams": _plain(group.hparams[i]),
            "steps": int(step), "num_d_steps": int(total), "diverged_at": diverged_at[i],
            "final_losses": {n: float(v[i]) for n, v in last.items()},
            "wall_time_s": wall, "device_hours": device_hours,
            "steps_this_run": int(step - start_step),
            "device_kind": jax.devices()[0].device_kind, "num_devices": setup.num_devices,
            "parallelism": setup.parallelism, "trials_in_group": k,
            "matmul_precision": setup.matmul_precision, "compute_dtype": setup.compute_dtype,
            "steps_per_call": group.steps_per_call,
        })
        if status == "finished" and pictures is not None:
            outcomes[-1]["samples"] = samples_lib.write_samples(
                setup, pictures[i], samples_path(workdir, k, i))
    return outcomes


def _mark_divergence(metrics: Mapping[str, np.ndarray], diverged_at: list, step: int) -> None:
    bad = np.zeros(len(diverged_at), bool)
    for v in metrics.values():
        bad |= ~np.all(np.isfinite(v), axis=tuple(range(1, v.ndim)))
    for i in np.flatnonzero(bad):
        if diverged_at[i] is None:
            diverged_at[i] = step


def _draw(setup: TrialSetup, states: TrainState, count: int) -> np.ndarray:
    """The samples (`samples.final_samples`) [count, ...] of the first `count` trials of a
    stacked state (`Group.unpadded`): in a multi-process job each process draws the trials on
    its devices and every process gets them all (a collective)."""
    if not runtime.multiprocess():
        return samples_lib.final_samples(setup, jax.device_get(states))[:count]
    return np.stack(runtime.map_trials(lambda s: samples_lib.final_samples(setup, s), states,
                                       count))


def _log_checkpoint(writer: TrainLog | None, setup: TrialSetup, step: int, states: TrainState,
                    count: int, evaluated: Any) -> np.ndarray | None:
    """A checkpoint's evaluation (one metrics dict per trial, when `on_checkpoint` gave them)
    and sample pictures of the first `count` trials, to TensorBoard (the main process's
    `writer`; the samples are drawn by every process of a job); returns the samples (`_draw`),
    None without a writer in a single-process run."""
    if writer is None and not runtime.multiprocess():
        return None
    drawn = _draw(setup, states, count)
    if writer is None:
        return drawn
    if isinstance(evaluated, Sequence) and all(isinstance(m, Mapping) for m in evaluated):
        writer.evaluation(step, evaluated)
    writer.samples(step, [samples_lib.picture(setup, p) for p in drawn])
    return drawn


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()}


def train(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> dict:
    """One trial from `config` in `workdir` (see `train_trial`); returns its record."""
    return train_trial(config, workdir, progress=progress)[0]


def train_trial(config: ml_collections.ConfigDict, workdir: str, *,
                progress: bool = True) -> tuple[dict[str, Any], bool]:
    """One trial from `config` in `workdir`: (its record, whether it was already done).

    Holds the workdir's lock (`workdir.lock`: a second process refuses with
    `storage.LockedError`). A trial already done for this budget (`workdir.finished_record`) is
    left untouched and its recorded result returned. Otherwise it trains, resuming if `workdir`
    holds checkpoints; with `config.eval_every` it evaluates checkpoints as it goes (see
    `gancmp.train.evaluation`); it writes `workdir/result.json` (`workdir.trial_record`)."""
    setup = make_setup(config)
    with lock(workdir):
        check_config(config, workdir)
        done = finished_record(workdir, config)
        if done is not None:
            return done, True
        evals = on_checkpoint = None
        if config.get("eval_every"):
            evals = evaluation.TrialEvals(workdir, evaluation.make_evaluator(setup, config))
            # eval_every is a multiple of checkpoint_every: every so many checkpoints
            every = (config.eval_every // config.checkpoint_every
                     * schedule.checkpoint_interval(config.checkpoint_every, setup.disc_iters))
            on_checkpoint = evals.hook(every, config.num_d_steps)
        outcome = train_group(config, setup, [config.seed], [trial_hparams(config)], workdir,
                              on_checkpoint=on_checkpoint, progress=progress)[0]
        record = trial_record(outcome, setup, config, evals.summary() if evals else None)
        write_result(workdir, record)
    return record, False

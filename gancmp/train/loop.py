"""One trial end to end — or a group of trials that share a program, trained together.

Trains for the configured number of D updates, writing its progress through one
`writers.RunWriter` (a progress display; losses, evaluations and each checkpoint's samples to
TensorBoard), checkpoints every `checkpoint_every` D updates and at the end of the budget
(`gancmp.train.schedule`; at device-call boundaries), resumes from the latest readable checkpoint
(a damaged one is set aside: `checkpoint.Checkpoints.restore_latest`), records a NaN run as
`diverged`, and ends with a sample grid and `result.json`. Checkpoints are written
asynchronously while training goes on. On SIGTERM (a preemption notice of ~30 s) it stops at the
next device-call boundary, or at once when an evaluation is running, saves a checkpoint without
evaluating it, waits for the write and returns the trials as `interrupted`; in a multi-process job
every process stops at the same call (`runtime.any_process`). Time, device time, divergence steps
and last losses carry over resumes (`workdir.Bookkeeping`). A trial workdir is locked while it
trains, and a finished one is reported, never trained or rewritten again.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from gancmp import records, runtime, storage
from gancmp.data import source as data_source
from gancmp.runtime import is_main_process
from gancmp.train import evaluation, retention, schedule
from gancmp.train import group as group_lib
from gancmp.train import samples as samples_lib
from gancmp.train import step as step_lib
from gancmp.train import workdir as workdir_lib
from gancmp.train.checkpoint import Checkpoints
from gancmp.train.state import TrainState
from gancmp.train.workdir import (
    Bookkeeping,
    check_config,
    checkpoints,
    finished_record,
    lock,
    samples_path,
    write_result,
)
from gancmp.train.writers import RunWriter
from gancmp.trial import Trial, TrialSetup, as_group


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
    trials: Sequence[Trial],
    workdir: str,
    *,
    on_checkpoint: Callable[[int, TrainState], Any] | None = None,
    progress: bool = True,
    data: data_source.DataSource | None = None,
    names: Sequence[str] | None = None,
    pad_to: int = 0,
    keep: str = "all",
    programs: step_lib.Programs | None = None,
) -> list[dict[str, Any]]:
    """Trains K trials (one setup; their own seeds and numeric hyperparameters) in one vmapped
    program, checkpointing the stacked state under `workdir`. Returns each trial's training
    outcome (the first part of its record, `records.from_trial`) with `status` in {"finished",
    "diverged", "interrupted"}; `wall_time_s` and `device_hours` are the whole group's, summed
    over every process that trained it (`workdir.Bookkeeping`).

    `on_checkpoint(step, states)` runs after each checkpoint, and on the restored checkpoint when
    resuming (so it must be idempotent; evaluation hooks in here), with the group's trials
    (`group.Group.unpadded`: in a multi-process job the padded state, whose first K rows
    `runtime.map_trials` reads); when it returns one metrics
    dict per trial (`evaluation.TrialEvals.add`), they go to TensorBoard with the checkpoint's
    sample pictures. `data` replaces the trials' dataset (tests, benchmarks); `names` name
    the trials in TensorBoard (a sweep: trial ids; default `trial_<i>`, see `writers`); `pad_to`
    pads the group to that many trials (`group.create_group`: computed, never reported);
    `keep`, the checkpoints kept once scored (`retention`: "all", or a sweep's
    "latest_and_best", applied after each evaluation of `on_checkpoint`'s `evals`);
    `programs`, the run's train programs (`step.Programs`; None: the group's own).
    """
    trials = as_group(trials)
    first, started = trials[0], workdir_lib.clock()
    storage.makedirs(workdir)
    if data is None:
        data = data_source.load(first.setup.dataset, first.data_dir, first.data_seed)
    ckpts = checkpoints(workdir, first.budget.keep_checkpoints)
    run = None
    try:
        layout = _layout(trials, pad_to)
        if ckpts.latest() is not None:  # resumed only in the layout of its checkpoints
            Bookkeeping.check_layout(workdir, layout, ckpts.latest())
        group = group_lib.create_group(trials, data.arrays, checkpoints=ckpts, pad_to=pad_to,
                                       programs=programs)
        run = _GroupRun(group, ckpts, workdir, started, names, progress, layout, keep)
        run.train(on_checkpoint)
    finally:
        if run is not None:
            run.close()
        ckpts.close()  # waits for the last save
    return run.outcomes(workdir)


class _GroupRun:
    """One run of a group's training loop: its bookkeeping (time, the divergence of each trial,
    the last losses), its writer (TensorBoard and the progress display), the samples drawn at the
    last evaluated checkpoint."""

    def __init__(self, group: group_lib.Group, ckpts: Checkpoints, workdir: str,
                 started: float, names: Sequence[str] | None, progress: bool,
                 layout: Mapping[str, Any], keep: str = "all"):
        self.group, self.setup, self.budget = group, group.setup, group.trials[0].budget
        self.ckpts = ckpts
        self.step = self.start_step = group.step
        self.states = group.states
        self.layout = dict(layout)
        self.books = Bookkeeping(workdir, group.size, self.setup.num_devices, self.step, started,
                                 layout=layout)
        self.diverged_at = self.books.diverged_at
        self.writer = RunWriter(workdir, group.size, names, total=self.budget.num_d_steps,
                                initial=self.step, progress=progress,
                                desc=f"{self.setup.method.name} {self.setup.dataset}")
        self.interrupted = False
        self.drawn = self.drawn_at = None  # the samples of checkpoint drawn_at
        self.keep = keep  # the checkpoints kept once scored (`retention.prune`)

    def train(self, on_checkpoint: Callable[[int, TrainState], Any] | None) -> None:
        """Calls the group's program until the budget is spent, every trial has diverged or a
        SIGTERM arrives; checkpoints and evaluates on the plan's steps."""
        group, total = self.group, self.budget.num_d_steps
        with _Preemption() as preemption:
            self._evaluate_saved(on_checkpoint, preemption)
            while self.step < total and not self.interrupted:
                self._call()
                if all(d is not None for d in self.diverged_at):
                    break
                stop = runtime.any_process(preemption.requested)  # every process stops together
                if group.plan.is_checkpoint(self.step) or stop:
                    self.ckpts.save(self.step, self.states)  # asynchronous: written while
                    self.books.save(self.step)  # the next call runs
                if stop:  # no evaluation on the way out (the notice is short): done on resume
                    self.interrupted = True
                elif group.plan.is_checkpoint(self.step):
                    self._evaluate(on_checkpoint, preemption, log=True)

    def _evaluate_saved(self, on_checkpoint, preemption: _Preemption) -> None:
        """On resume: `on_checkpoint` on the restored checkpoint (a run killed between saving a
        scheduled checkpoint and evaluating it) and, first, on each earlier scheduled checkpoint
        on disk that its `pending(step)` (`evaluation.CheckpointHook`) says has no evaluation (a
        torn or deleted evals.jsonl line), restored for it; so `best` is over every checkpoint.
        A checkpoint taken on SIGTERM is off the schedule and never evaluated."""
        plan = self.group.plan
        if not self.step or on_checkpoint is None or self.interrupted:
            return
        pending = getattr(on_checkpoint, "pending", None)
        earlier = [s for s in self.ckpts.steps() if s < self.step and plan.is_checkpoint(s)
                   and pending is not None and pending(s)]
        like = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), self.states) if earlier else None
        sharding = jax.tree.leaves(self.states)[0].sharding
        for step in earlier:
            try:
                restored = runtime.put_replicated(self.ckpts.restore(step, like), sharding)
            except Exception as e:  # orbax and tensorstore raise many kinds
                reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
                storage.warning(f"checkpoint {step} in {self.ckpts.directory} cannot be read "
                                f"({reason}); it is not evaluated")
                continue
            self._evaluate(on_checkpoint, preemption, log=False, at=(step, restored))
            if self.interrupted:
                return
        if plan.is_checkpoint(self.step):
            self._evaluate(on_checkpoint, preemption, log=False)

    def _call(self) -> None:
        """One device call: its metrics to the host, the bookkeeping and the writer."""
        train_fn, iterations = self.group.call_at(self.step)
        per_call = iterations * self.setup.disc_iters
        self.states, metrics = train_fn(self.states, self.group.arrays)
        # [K, steps_per_call] each, from every process; waits for the call. Drop the padding
        # trials, and the rows past a short call's iterations
        metrics = runtime.to_host(metrics)
        metrics = {name: v[:self.group.size, :iterations] for name, v in metrics.items()}
        self.step += per_call
        self.books.last = last = {name: v[:, -1] for name, v in metrics.items()}
        _mark_divergence(metrics, self.diverged_at, self.step)
        if (self.step % self.budget.log_every < per_call
                or self.step == self.budget.num_d_steps):
            self.writer.losses(self.step, last)
        self.writer.advance(per_call, last)

    def _evaluate(self, on_checkpoint, preemption: _Preemption, log: bool,
                  at: tuple[int, TrainState] | None = None) -> None:
        """`on_checkpoint` at this checkpoint, or at the (step, states) of `at` (stopped by
        SIGTERM: its checkpoint is saved, and evaluated when resumed); with `log`, its metrics
        and samples to TensorBoard."""
        step, states = at if at is not None else (self.step, self.states)
        unpadded = self.group.unpadded(states)
        try:
            with preemption.interruptible():
                evaluated = (on_checkpoint(step, unpadded)
                             if on_checkpoint is not None else None)
        except Preempted:
            self.interrupted = True
            return
        if evaluated is not None:  # a new score may supersede checkpoints (`retention`)
            retention.prune(self.ckpts, getattr(on_checkpoint, "evals", None), self.keep)
        if not log:
            return
        if on_checkpoint is not None:
            self.books.save(self.step)
        self.drawn = _log_checkpoint(self.writer, self.setup, self.step, unpadded,
                                     self.group.size, evaluated)
        self.drawn_at = self.step
        self.writer.checkpoint()  # TensorBoard's events reach a bucket here only

    def close(self) -> None:
        """Closes the writer (the display's last line, the event file)."""
        self.writer.close()

    def outcomes(self, workdir: str) -> list[dict[str, Any]]:
        """Each trial's outcome (`train_group`), its final samples written when it finished."""
        self.books.save(self.step)
        group, k, books = self.group, self.group.size, self.books
        pictures = None
        if not self.interrupted:  # the last checkpoint's samples are the final ones
            pictures = self.drawn if self.drawn is not None and self.drawn_at == self.step else (
                _draw(self.setup, group.unpadded(self.states), k))
        if not is_main_process():
            pictures = None
        out = []
        for i in range(k):
            status = ("diverged" if self.diverged_at[i] is not None
                      else "interrupted" if self.interrupted else "finished")
            out.append({
                "status": status, "seed": int(group.seeds[i]),
                "hparams": _plain(group.hparams[i]), "steps": int(self.step),
                "num_d_steps": int(self.budget.num_d_steps),
                "diverged_at": self.diverged_at[i],
                "final_losses": {n: float(v[i]) for n, v in books.last.items()},
                "wall_time_s": books.wall_time_s, "device_hours": books.device_hours,
                "steps_this_run": int(self.step - self.start_step),
                "device_kind": jax.devices()[0].device_kind, "trials_in_group": k,
                "matmul_precision": self.setup.matmul_precision,
                "compute_dtype": self.setup.compute_dtype, **self.layout,
            })
            if status == "finished" and pictures is not None:
                out[-1]["samples"] = samples_lib.write_samples(
                    self.setup, pictures[i], samples_path(workdir, k, i))
        return out


def _layout(trials: Sequence[Trial], pad_to: int) -> dict[str, Any]:
    """The execution layout of a group, recorded with its checkpoints and records: devices,
    parallelism and trials computed (padding included: `group.padded_size`), what changes a
    trial's numbers beyond its config (`workdir.Bookkeeping.LAYOUT`), and iterations per call
    (`step.plan_calls`)."""
    setup = trials[0].setup
    return {"num_devices": setup.num_devices, "parallelism": setup.parallelism,
            "trials_computed": group_lib.padded_size(len(trials), setup, pad_to),
            "steps_per_call": step_lib.plan_calls(trials[0]).main}


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
        return samples_lib.final_samples(setup, states)[:count]  # on the devices
    return np.stack(runtime.map_trials(lambda s: samples_lib.final_samples(setup, s), states,
                                       count))


def _log_checkpoint(writer: RunWriter, setup: TrialSetup, step: int, states: TrainState,
                    count: int, evaluated: Any) -> np.ndarray | None:
    """A checkpoint's evaluation (one metrics dict per trial, when `on_checkpoint` gave them)
    and sample pictures of the first `count` trials, to TensorBoard (the main process's
    `writer.tensorboard`; the samples are drawn by every process of a job); returns the samples
    (`_draw`), None without an event file in a single-process run."""
    if writer.tensorboard is None and not runtime.multiprocess():
        return None
    drawn = _draw(setup, states, count)
    if writer.tensorboard is None:
        return drawn
    if isinstance(evaluated, Sequence) and all(isinstance(m, Mapping) for m in evaluated):
        writer.evaluation(step, evaluated)
    writer.samples(step, [samples_lib.picture(setup, p) for p in drawn])
    return drawn


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()}


def train_and_evaluate(trials: Sequence[Trial], workdir: str,
                       evals: evaluation.TrialEvals | None, *, every: int = 0,
                       progress: bool = True, names: Sequence[str] | None = None,
                       pad_to: int = 0, keep: str = "all",
                       programs: step_lib.Programs | None = None) -> list[records.Record]:
    """Trains a group of trials (`train_group`), evaluating its checkpoints into `evals` (every
    `every` D updates and at the end; 0: every checkpoint; None: no evaluation), and returns one
    record per trial (`records.from_trial`: its outcome, what it was, its evaluation); `keep`:
    the checkpoints kept once scored (`retention`); `programs`: the run's (`train_group`)."""
    hook = None if evals is None else evals.hook(every, trials[0].budget.num_d_steps)
    outcomes = train_group(trials, workdir, on_checkpoint=hook, progress=progress, names=names,
                           pad_to=pad_to, keep=keep, programs=programs)
    return [records.from_trial(outcome, trial, evals.summary(i) if evals else None)
            for i, (trial, outcome) in enumerate(zip(trials, outcomes, strict=True))]


def train_trial(trial: Trial, workdir: str, *, progress: bool = True
                ) -> tuple[records.Record, bool]:
    """One trial in `workdir`: (its record, whether it was already done).

    Holds the workdir's lock (`workdir.lock`: a second process refuses with
    `storage.LockedError`). A trial already done for this budget (`workdir.finished_record`) is
    left untouched and its recorded result returned. Otherwise it trains, resuming if `workdir`
    holds checkpoints; with `budget.eval_every` it evaluates checkpoints as it goes (see
    `gancmp.train.evaluation`); it writes `workdir/result.json`."""
    budget = trial.budget
    with lock(workdir):
        check_config(trial, workdir)
        done = finished_record(workdir, trial)
        if done is not None:
            return done, True
        evals, every = None, 0
        if budget.eval_every:
            evals = evaluation.TrialEvals(workdir, evaluation.make_evaluator(trial))
            # eval_every is a multiple of checkpoint_every: every so many checkpoints
            every = (budget.eval_every // budget.checkpoint_every
                     * schedule.checkpoint_interval(budget.checkpoint_every,
                                                    trial.setup.disc_iters))
        (record,) = train_and_evaluate([trial], workdir, evals, every=every, progress=progress)
        write_result(workdir, record)
    return record, False

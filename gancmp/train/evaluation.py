"""Evaluation of trials' checkpoints: the evaluator of a trial's dataset
(`gancmp.metrics.evaluators`, given the trial's generator) applied to the checkpoints of a trial
or of a vmapped group of trials, during training (`config.eval_every`; every checkpoint of a
sweep) and afterwards (`gancmp eval --workdir DIR`), with the same code and the same files.

A trial with a generator EMA (`config.g_ema_decay`) is measured twice per checkpoint, with the
same noise: its raw G gives `<metric>`, its EMA generator (`state.ema_view`) `ema/<metric>`
(`ema/status` included), in the same row. `best` stays the raw G's best checkpoint (what the
report compares); `best_ema` is the EMA generator's, by `ema/<main metric>`.

A trial workdir holds `evals.jsonl` (one line per evaluated checkpoint: {"step", "metrics"},
append-only, so an interrupted evaluation loses nothing) and `result.json`, whose `evals` (every
evaluated checkpoint), `best` (the best checkpoint by the dataset's main metric, as the paper
keeps the best of all checkpoints), `best_ema` (with an EMA), `metric`, `higher_is_better` (its
direction) and `metric_setup` are rewritten from it. A sweep group's directory holds the same
file, one row per checkpoint with a list of per-trial metrics.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gancmp import records
from gancmp.config import ConfigError
from gancmp.metrics import evaluators
from gancmp.metrics.resources import EvalResources
from gancmp.train import samples as samples_lib
from gancmp.train.state import ema_view, has_ema, init_states
from gancmp.train.workdir import (
    append_eval,
    checkpoints,
    lock,
    read_config,
    read_evals,
    read_result,
    write_result,
)
from gancmp.trial import Trial, make_trial

EMA_PREFIX = "ema/"  # metrics of the generator EMA: "ema/fid" beside "fid"


def make_evaluator(trial: Trial, resources: EvalResources | None = None
                   ) -> evaluators.Evaluator:
    """The evaluator of the trial's dataset (`gancmp.metrics.evaluators`), measuring the
    trial's generator (`samples.generator_of`) and, in a state with a generator EMA, the EMA
    generator too (its metrics under `EMA_PREFIX`). `resources`: the run's extractors,
    references and feature programs (`gancmp.metrics.resources`; None: the evaluator's own,
    as for one trial's run or `gancmp eval`)."""
    return evaluators.make_evaluator(trial, samples_lib.generator_of(trial.setup),
                                     views=_ema_views, resources=resources)


def _ema_views(states) -> list[tuple[str, Any]]:
    """[(EMA_PREFIX, the EMA generator's view of the states)] when they keep one, else []."""
    return [(EMA_PREFIX, ema_view(states))] if has_ema(states) else []


class TrialEvals:
    """The evaluated checkpoints of a trial workdir, or of a sweep group's directory
    (`group=True`), and the hook that adds to them. A single trial is a group of one: `by_step`
    maps a checkpoint step to one metrics dict per trial of the (stacked) state; on disk the
    rows keep each directory's format (`workdir.append_eval`), so existing directories resume."""

    def __init__(self, directory: str, evaluator: evaluators.Evaluator, *, group: bool = False):
        self.directory, self.evaluator, self.group = directory, evaluator, group
        self.by_step: dict[int, list[dict[str, Any]]] = read_evals(directory)

    def add(self, step: int, states) -> list[dict[str, Any]]:
        """Evaluates the stacked `states` [K] of checkpoint `step` once (a later call with the
        same step returns the recorded metrics); one metrics dict per trial. Also an
        `on_checkpoint` for `loop.train_group` that evaluates every checkpoint."""
        if step not in self.by_step:
            self.by_step[step] = self.evaluator.evaluate_group(states)
            append_eval(self.directory, step, self.by_step[step], self.group)
        return self.by_step[step]

    def hook(self, every: int, total: int) -> CheckpointHook:
        """An `on_checkpoint` for `loop.train_group` that evaluates every `every` D updates
        (0: every checkpoint) and the last checkpoint (`total`) (`CheckpointHook`)."""
        return CheckpointHook(self, every, total)

    def evals(self, index: int = 0) -> list[dict[str, Any]]:
        """Trial `index`'s evaluated checkpoints in step order: [{"step", **metrics}]."""
        return [{"step": s, **self.by_step[s][index]} for s in sorted(self.by_step)]

    def summary(self, index: int = 0) -> dict[str, Any]:
        """What trial `index`'s record carries about evaluation (`records.from_trial`):
        `best_ema` too when its checkpoints were measured with a generator EMA."""
        evals = self.evals(index)
        out = {"evals": evals, "best": self.evaluator.best(evals),
               "metric": self.evaluator.main_metric,
               "higher_is_better": self.evaluator.higher_is_better,
               "metric_setup": self.evaluator.setup,
               "metric_setup_hash": self.evaluator.setup_hash}
        ema_metric = EMA_PREFIX + self.evaluator.main_metric
        if any(ema_metric in e for e in evals):
            out["best_ema"] = self.evaluator.best(evals, ema_metric)
        return out


class CheckpointHook:
    """An `on_checkpoint` for `loop.train_group`: evaluates the checkpoints due (every `every`
    D updates, 0: every one, and the last, `total`) into `evals` (`TrialEvals.add`), returning
    their metrics, else None. `pending(step)` tells a resumed run which checkpoints on disk are
    due and not evaluated (a run killed before evaluating one, a torn or deleted evals.jsonl
    line), so that it evaluates them before training on."""

    def __init__(self, evals: TrialEvals, every: int = 0, total: int = 0):
        self.evals, self.every, self.total = evals, every, total

    def due(self, step: int) -> bool:
        """Whether checkpoint `step` is one to evaluate."""
        return not self.every or step % self.every == 0 or step == self.total

    def pending(self, step: int) -> bool:
        """Whether checkpoint `step` is due and has no evaluation yet."""
        return self.due(step) and step not in self.evals.by_step

    def __call__(self, step: int, states) -> list[dict[str, Any]] | None:
        return self.evals.add(step, states) if self.due(step) else None


def evaluate_trial(workdir: str, overrides: dict[str, Any] | None = None,
                   steps: list[int] | None = None, log=print) -> dict[str, Any]:
    """Evaluates every checkpoint (or `steps`) of the trial in `workdir` not evaluated before,
    updates `result.json` and returns its evaluation part. `overrides`: dotted config fields
    that only change how metrics are computed ("fid.inception_weights", "eval.num_samples").
    Holds the workdir's lock (`workdir.lock`), as training does."""
    read_config(workdir)  # a directory that holds no trial is refused before it is locked
    with lock(workdir):
        return _evaluate_trial(workdir, overrides, steps, log)


def _evaluate_trial(workdir: str, overrides: dict[str, Any] | None, steps: list[int] | None,
                    log) -> dict[str, Any]:
    config = read_config(workdir)
    for key, value in (overrides or {}).items():
        if not (key.startswith("eval.") or key.startswith("fid.")):
            raise ConfigError(f"{key}: only eval.* and fid.* fields can be changed for evaluation")
        node, leaf = config, key.split(".")
        for part in leaf[:-1]:
            node = node[part]
        node[leaf[-1]] = value
    trial = make_trial(config)
    ckpts = checkpoints(workdir)
    try:
        available = ckpts.steps()
        if not available:
            raise FileNotFoundError(f"--workdir: {workdir} has no checkpoints to evaluate")
        missing = sorted(set(steps or ()) - set(available))
        if missing:
            raise ConfigError(f"--steps: no checkpoint at {missing}; available: {available}")
        evals = TrialEvals(workdir, make_evaluator(trial))
        _rescore_if_measured_otherwise(evals, read_result(workdir), log)
        like = init_states(trial.setup, [trial.seed], [trial.hparams])
        for step in steps or available:
            if step in evals.by_step:
                continue
            metrics = evals.add(step, ckpts.restore(step, like))[0]
            log(f"step {step}: {evaluators.describe(metrics, evals.evaluator.main_metric)}")
    finally:
        ckpts.close()
    summary = evals.summary()
    write_result(workdir, dataclasses.replace(read_result(workdir) or records.Record(), **summary))
    return summary


def _rescore_if_measured_otherwise(evals: TrialEvals, recorded: records.Record | None,
                                   log) -> None:
    """Forgets the evaluated checkpoints of `evals` when `recorded` (result.json) says they
    were measured with another metric setup than its evaluator's (`gancmp eval --num_samples`,
    other Inception weights …): every checkpoint is scored again, and the new rows, appended
    to evals.jsonl, supersede the old ones. A result never mixes numbers of two setups."""
    before = recorded.metric_setup_hash if recorded is not None else None
    if evals.by_step and before is not None and before != evals.evaluator.setup_hash:
        log(f"the checkpoints were measured with another metric setup ({before}; now "
            f"{evals.evaluator.setup_hash}): scoring every checkpoint again")
        evals.by_step = {}

"""Evaluation of one trial's checkpoints: during training (`config.eval_every`) and afterwards
(`gancmp eval --workdir DIR`), with the same code and the same files.

A trial workdir holds `evals.jsonl` (one line per evaluated checkpoint: {"step", "metrics"},
append-only, so an interrupted evaluation loses nothing) and `result.json`, whose `evals` (every
evaluated checkpoint), `best` (the best checkpoint by the dataset's main metric, as the paper
keeps the best of all checkpoints), `metric` and `metric_setup` are rewritten from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import ml_collections

from gancmp.metrics import evaluate
from gancmp.runtime import is_main_process
from gancmp.train.checkpoint import Checkpoints
from gancmp.train.config import ConfigError, TrialSetup, make_setup, trial_hparams
from gancmp.train.state import init_states

EVALS_FILE = "evals.jsonl"
RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"


class TrialEvals:
    """The evaluated checkpoints of one trial workdir, and the hook that adds to them."""

    def __init__(self, workdir: str, evaluator: evaluate.Evaluator):
        self.workdir, self.evaluator = workdir, evaluator
        self.path = os.path.join(workdir, EVALS_FILE)
        self.by_step: dict[int, dict[str, Any]] = {}
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        self.by_step[int(row["step"])] = row["metrics"]

    def add(self, step: int, states) -> dict[str, Any]:
        """Evaluates the (one-trial, stacked) `states` of checkpoint `step` once."""
        if step not in self.by_step:
            self.by_step[step] = self.evaluator.evaluate_group(states)[0]
            if is_main_process():
                with open(self.path, "a") as f:
                    f.write(json.dumps({"step": step, "metrics": self.by_step[step]}) + "\n")
        return self.by_step[step]

    def hook(self, every: int, total: int) -> Callable[[int, Any], None]:
        """An `on_checkpoint` for `loop.train_group`: evaluates every `every` D updates and the
        last checkpoint."""
        def on_checkpoint(step: int, states) -> None:
            if step % every == 0 or step == total:
                self.add(step, states)
        return on_checkpoint

    def summary(self) -> dict[str, Any]:
        """What result.json carries about evaluation."""
        evals = [{"step": s, **self.by_step[s]} for s in sorted(self.by_step)]
        return {"evals": evals, "best": self.evaluator.best(evals),
                "metric": self.evaluator.main_metric, "metric_setup": self.evaluator.setup,
                "metric_setup_hash": self.evaluator.setup_hash}


def load_trial_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a trial workdir was trained with (its config.json)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"--workdir: {workdir} holds no trial ({CONFIG_FILE} missing); give the workdir of a "
            "`gancmp train` run")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def evaluate_trial(workdir: str, overrides: dict[str, Any] | None = None,
                   steps: list[int] | None = None, log=print) -> dict[str, Any]:
    """Evaluates every checkpoint (or `steps`) of the trial in `workdir` not evaluated before,
    updates `result.json` and returns its evaluation part. `overrides`: dotted config fields
    that only change how metrics are computed ("fid.inception_weights", "eval.num_samples")."""
    config = load_trial_config(workdir)
    for key, value in (overrides or {}).items():
        if not (key.startswith("eval.") or key.startswith("fid.")):
            raise ConfigError(f"{key}: only eval.* and fid.* fields can be changed for evaluation")
        node, leaf = config, key.split(".")
        for part in leaf[:-1]:
            node = node[part]
        node[leaf[-1]] = value
    setup: TrialSetup = make_setup(config)
    ckpts = Checkpoints(os.path.join(workdir, "checkpoints"))
    available = ckpts.steps()
    if not available:
        raise FileNotFoundError(f"--workdir: {workdir} has no checkpoints to evaluate")
    missing = sorted(set(steps or ()) - set(available))
    if missing:
        raise ConfigError(f"--steps: no checkpoint at {missing}; available: {available}")
    trial = TrialEvals(workdir, evaluate.make_evaluator(setup, config))
    like = init_states(setup, [config.seed], [trial_hparams(config)])
    for step in steps or available:
        if step in trial.by_step:
            continue
        metrics = trial.add(step, ckpts.restore(step, like))
        log(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                                         if isinstance(v, float)))
    summary = trial.summary()
    path = os.path.join(workdir, RESULT_FILE)
    record: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path) as f:
            record = json.load(f)
    record.update(summary)
    if is_main_process():
        with open(path, "w") as f:
            json.dump(record, f, indent=2, default=str)
    return summary

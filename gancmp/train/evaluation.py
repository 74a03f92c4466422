"""Evaluation of trials: the metrics that fit a trial's dataset (the evaluator), applied to the
checkpoints of a trial or of a vmapped group of trials, during training (`config.eval_every`;
every checkpoint of a sweep) and afterwards (`gancmp eval --workdir DIR`), with the same code and
the same files.

Each dataset has one main metric, the one the report compares losses by:
  2-D mixtures   `modes_covered` (higher is better), with the high-quality fraction and the KL of
                 the mode histogram alongside;
  polygons       `f1` of the polygon precision and recall (higher is better);
  image datasets `fid` (lower is better), with KID, precision/recall and the Inception Score
                 (mean and std over 10 splits) alongside, as v1's evaluator recorded IS with
                 every FID.
A generator that produces NaN gets `inf`/NaN values and `status: "nonfinite"`, never a placeholder.
A trial with a generator EMA (`config.g_ema_decay`) is measured twice per checkpoint, with the
same noise: its raw G gives `<metric>`, its EMA generator (`state.ema_view`) `ema/<metric>`
(`ema/status` included), in the same row. `best` stays the raw G's best checkpoint (what the
report compares); `best_ema` is the EMA generator's, by `ema/<main metric>`.
Every evaluator states its setup (`setup`: what was measured, how, with which weights and sample
counts), recorded with each result so the report never mixes numbers measured differently.

A trial workdir holds `evals.jsonl` (one line per evaluated checkpoint: {"step", "metrics"},
append-only, so an interrupted evaluation loses nothing) and `result.json`, whose `evals` (every
evaluated checkpoint), `best` (the best checkpoint by the dataset's main metric, as the paper
keeps the best of all checkpoints), `best_ema` (with an EMA), `metric`, `higher_is_better` (its
direction) and `metric_setup` are rewritten from it. A sweep group's directory holds the same
file, one row per checkpoint with a list of per-trial metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gancmp import records
from gancmp.config import ConfigError
from gancmp.data import registry as data_registry
from gancmp.data import synthetic
from gancmp.metrics import inception_score as IS
from gancmp.metrics import ondevice
from gancmp.train import samples as samples_lib
from gancmp.train import step as step_lib
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
from gancmp.trial import Trial, TrialSetup, make_trial

EVAL_SEED = 20180101  # fixed evaluation noise, shared by every trial
EMA_PREFIX = "ema/"  # metrics of the generator EMA: "ema/fid" beside "fid"
IS_SPLITS = 10  # the Inception Score's splits (Salimans et al. 2016; `gancmp is`)


@dataclasses.dataclass
class Evaluator:
    """Metrics of generators on one dataset.

    Attributes:
      main_metric: name of the metric trials are ranked by.
      higher_is_better: its direction.
      setup: JSON-able description of the measurement (compared across records).
      metrics_fn: (samples [n, *example_shape], one trial's TrainState) → {metric: value}; the
        state serves metrics that query the generator itself (polygon recall inverts it).
      num_samples: how many samples each evaluation draws.
      trial_setup: the setup of the trials it evaluates (their generator and z_dim).
      group_fn: stacked host states [K] → one metrics dict (None: nonfinite samples) per
        trial, computed on the device in bounded memory (image datasets:
        `gancmp.train.eval_images`); None: samples are drawn (`samples`) and measured on the
        host by `metrics_fn`, trial by trial.
    """

    main_metric: str
    higher_is_better: bool
    setup: dict[str, Any]
    metrics_fn: Callable[[np.ndarray, Any], dict[str, Any]]
    num_samples: int
    trial_setup: TrialSetup
    group_fn: Callable[[Any], list[dict[str, Any] | None]] | None = None

    @property
    def setup_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.setup, sort_keys=True).encode()).hexdigest()[:16]

    def samples(self, states) -> np.ndarray:
        """[K, n, *example_shape] samples of every trial of a stacked state (fixed noise)."""
        z = step_lib.eval_latents(EVAL_SEED, self.num_samples, self.trial_setup.z_dim,
                                  self.trial_setup.method.prior)
        return samples_lib.generate_group(self.trial_setup, states, z)

    def evaluate_group(self, states) -> list[dict[str, Any]]:
        """One metrics dict per trial of a stacked state; with a generator EMA each also holds
        the EMA generator's metrics under `EMA_PREFIX`. The state is first brought to the host,
        so every process of a multi-host job evaluates on its own devices."""
        states = jax.tree.map(np.asarray, jax.device_get(states))
        rows = self._evaluate(states)
        if has_ema(states):
            for row, ema_row in zip(rows, self._evaluate(ema_view(states)), strict=True):
                row.update({EMA_PREFIX + k: v for k, v in ema_row.items()})
        return rows

    def _evaluate(self, states) -> list[dict[str, Any]]:
        """Metrics of the generator of each trial of a stacked host state."""
        if self.group_fn is not None:
            return [self._nonfinite() if row is None else {**row, "status": "ok"}
                    for row in self.group_fn(states)]
        return [self.evaluate_samples(s, jax.tree.map(lambda a, i=i: a[i], states))
                for i, s in enumerate(self.samples(states))]

    def _nonfinite(self) -> dict[str, Any]:
        return {self.main_metric: -math.inf if self.higher_is_better else math.inf,
                "status": "nonfinite"}

    def evaluate_samples(self, samples: np.ndarray, state: Any = None) -> dict[str, Any]:
        """Metrics of one trial's samples (and, where a metric needs it, its state). Samples with
        NaN or inf get the worst value of the main metric and `status: "nonfinite"`."""
        if not np.all(np.isfinite(samples)):
            return self._nonfinite()
        return {**self.metrics_fn(samples, state), "status": "ok"}

    def score(self, value: float | None) -> float | None:
        """The main metric oriented so that higher is better (None when missing or NaN):
        `records.score`."""
        return records.score(value, self.higher_is_better)

    def best(self, evals: Sequence[Mapping[str, Any]], metric: str | None = None
             ) -> dict[str, Any]:
        """The best of a trial's evaluated checkpoints [{"step", **metrics}] by the main metric
        (the paper scores every checkpoint and keeps the best), or by `metric` (a name of the
        same direction, e.g. "ema/fid"): {"metric", "value", "step", "score" (`score(value)`),
        **metrics}; {} when nothing was evaluated (or only NaN).

        A diverged trial is ranked like any other: a checkpoint with nonfinite samples has the
        worst value (`evaluate_samples`), so its best is its best finite checkpoint when it has
        one; that it diverged is its record's `status`, not something `best` hides."""
        return records.best_checkpoint(evals, metric or self.main_metric, self.higher_is_better)


def make_evaluator(trial: Trial) -> Evaluator:
    """The evaluator of the trial's dataset: its registered metric family (`gancmp.data.
    registry.MetricSpec`: "mixture", "polygons" or "fid")."""
    spec = data_registry.get(trial.setup.dataset).metrics
    build = {"mixture": _mixture_evaluator, "polygons": _polygon_evaluator,
             "fid": _fid_evaluator}[spec.family]
    return build(trial, spec)


def _mixture_evaluator(trial: Trial, spec: data_registry.MetricSpec) -> Evaluator:
    from gancmp.metrics import mixtures

    setup = trial.setup
    mix = synthetic.MIXTURES[setup.dataset]
    n = int(trial.eval.get("num_samples") or 10_000)

    def metrics(samples: np.ndarray, state: Any) -> dict[str, Any]:
        return mixtures.mixture_metrics(samples, np.asarray(mix.modes), float(mix.std))

    desc = {"metric": "mixture", "dataset": setup.dataset, "num_samples": n, "seed": EVAL_SEED}
    return Evaluator(spec.main, spec.higher_is_better, desc, metrics, n, setup)


def _polygon_evaluator(trial: Trial, spec: data_registry.MetricSpec) -> Evaluator:
    from gancmp.metrics import polygons

    setup, ev = trial.setup, trial.eval
    fields = {f.name for f in dataclasses.fields(polygons.PolygonMetricsConfig)}
    cfg = polygons.PolygonMetricsConfig(**{k: ev[k] for k in fields if k in ev})
    splits = synthetic.polygon_dataset(setup.dataset, seed=trial.data_seed,
                                       cache_dir=trial.data_dir)
    prf = polygons.PolygonMetrics.create(setup.dataset, splits["heldout"], cfg)
    generate = functools.partial(step_lib.generate, setup)  # one object: recall compiles once

    def metrics(samples: np.ndarray, state: Any) -> dict[str, Any]:
        return prf(samples, generate if state is not None else None, state, setup.z_dim,
                   prior=setup.method.prior)

    desc = {**prf.setup(), "data_seed": trial.data_seed, "seed": EVAL_SEED}
    return Evaluator(spec.main, spec.higher_is_better, desc, metrics, cfg.num_samples, setup)


def _fid_evaluator(trial: Trial, spec: data_registry.MetricSpec) -> Evaluator:
    """FID (main, lower is better), KID (mean and std over subsets) and improved precision and
    recall (k = 3) of `eval.num_samples` (default 10,000) generated images against the first
    `fid.num_real` test images, all on the FID Inception's pool3 features, and the Inception
    Score of the generated images (`inception_score`, `inception_score_std`: over `IS_SPLITS`
    splits, from the classifier's logits of the same network pass; see
    `gancmp.metrics.inception_score`). The real side is `_fid_reference`'s; `setup` carries the
    FID provenance (with the Inception's matmul precision: the trial's resolved
    `matmul_precision`) and how IS was taken (None: not recorded, the weights have no classifier
    layer, with one warning). A group's checkpoint is measured on the device in bounded memory
    (`gancmp.train.eval_images`); the extractor, the reference and its device side are built
    once per process and shared by every group."""
    from gancmp.metrics import fid
    from gancmp.train import eval_images

    setup, fc = trial.setup, trial.fid
    n = int(trial.eval.get("num_samples") or 10_000)
    extractor = eval_images.extractor(
        fid.FeatureExtractor, fc.get("inception_weights") or None,
        fc.get("preprocess") or "tf1_legacy", int(fc.get("batch_size") or 50),
        fc.get("cache_dir") or None, setup.matmul_precision or "highest")
    reference, data = _fid_reference(trial, extractor)
    dim = reference.mu.shape[0]
    if n < dim:
        raise ValueError(f"eval.num_samples={n} is below the feature dimension {dim}: the "
                         f"generated covariance would be singular; use at least {dim}")
    kid_args = {"num_subsets": 100, "subset_size": 1000, "seed": EVAL_SEED}
    pr_k = 3
    is_setup = _is_setup(extractor)

    def from_features(carry, count: int) -> list[dict[str, Any] | None]:
        real = eval_images.real_side(reference, count, pr_k, kid_args)  # once per process
        device = eval_images.group_metrics(real, carry["features"], count)
        return eval_images.finish(carry, device, reference, count, IS_SPLITS)

    z = step_lib.eval_latents(EVAL_SEED, n, setup.z_dim, setup.method.prior)
    chunk = max(1, int(getattr(extractor, "batch_size", 0) or fc.get("batch_size") or 50))
    features = eval_images.group_features(setup, extractor, n, z, is_setup is not None,
                                          IS_SPLITS)

    def group(states) -> list[dict[str, Any] | None]:
        k = jax.tree.leaves(states)[0].shape[0]
        return from_features(features(states, max(1, chunk // k)), n)

    desc = {"metric": "fid", **fid.fid_provenance(extractor.provenance, reference, n),
            "seed": EVAL_SEED, "kid": kid_args, "precision_recall_k": pr_k,
            "inception_score": is_setup, **({"data": data} if data else {})}
    metrics = functools.partial(_fid_of_samples, extractor, is_setup, from_features)
    return Evaluator(spec.main, spec.higher_is_better, desc, metrics, n, setup, group)


def _fid_reference(trial: Trial, extractor) -> tuple[Any, dict[str, Any] | None]:
    """(the real side's FID statistics, a user dataset's identity or None). The statistics of
    the first `fid.num_real` test images are computed once and cached in `fid.cache_dir`
    (`gancmp.metrics.fid.reference_statistics`). A user dataset (`folder:`/`npz:`) is scored
    against all its held-out 10 % (at most `fid.num_real`), its reference cached under its
    content hash, and its identity (`gancmp.data.source.provenance`: source, counts, split rule,
    content sha256) recorded as `setup["data"]`."""
    from gancmp.data import source as data_source
    from gancmp.metrics import fid

    dataset, fc = trial.setup.dataset, trial.fid
    num_real = int(fc.get("num_real") or 10_000)
    data = data_source.provenance(dataset)  # a user dataset's identity; None if built in
    if data is not None:
        num_real = _user_num_real(dataset, data, num_real, getattr(extractor, "dims", 0))
    reference = fid.reference_statistics(
        lambda: data_source.load(dataset, trial.data_dir).test, extractor,
        dataset=data["key"] if data else dataset, split="test", num_real=num_real,
        cache_dir=fc.get("cache_dir") or None)
    return reference, data


def _is_setup(extractor) -> dict[str, Any] | None:
    """How the Inception Score is taken ({"num_splits", "logits"}), or None (with one warning)
    when the weights have no classifier layer."""
    if getattr(extractor, "has_logits", False):
        return {"num_splits": IS_SPLITS, "logits": IS.LOGITS}
    warnings.warn(f"fid.inception_weights: {extractor.provenance.get('weights_source')} has "
                  "no classifier layer (fc), so the Inception Score is not recorded; "
                  "convert pytorch-fid's .pth again with `gancmp convert-inception` (or "
                  "pass the .pth) to record it", stacklevel=3)
    return None


def _fid_of_samples(extractor, is_setup: dict[str, Any] | None, from_features: Callable,
                    samples: np.ndarray, state: Any) -> dict[str, Any]:
    """The FID evaluator's metrics of given samples [n, H, W, C] (on the host)."""
    from gancmp.metrics import fid

    if is_setup is not None:
        _, feats, logits = fid.statistics_with_logits(samples, extractor)
    else:
        _, feats = fid.compute_statistics(samples, extractor, keep_features=True)
    carry = {"features": jnp.asarray(feats)[None, None], "finite": np.ones(1, bool)}
    if is_setup is not None:
        p_sum, plogp = ondevice.is_split_sums(jnp.asarray(logits), jnp.arange(len(logits)),
                                              len(logits), IS_SPLITS)
        carry.update(p_sum=p_sum[None], plogp_sum=plogp[None])
    return from_features(carry, len(feats))[0]


def _user_num_real(name: str, data: Mapping[str, Any], num_real: int, dim: int) -> int:
    """A user dataset's real side: all its held-out images, at most `fid.num_real`; ConfigError
    when they are fewer than the feature dimension `dim` (Σ would be singular)."""
    held_out = int(data["num_test"])
    if held_out < max(dim, 2):
        raise ConfigError(
            f"config.dataset: {name} holds out {held_out} of its {data['num_images']} images "
            f"(10 %) as the real side of FID, but FID needs at least {max(dim, 2)} (the "
            f"feature dimension); use at least {10 * max(dim, 2)} images")
    return min(num_real, held_out)


class TrialEvals:
    """The evaluated checkpoints of a trial workdir, or of a sweep group's directory
    (`group=True`), and the hook that adds to them. A single trial is a group of one: `by_step`
    maps a checkpoint step to one metrics dict per trial of the (stacked) state; on disk the
    rows keep each directory's format (`workdir.append_eval`), so existing directories resume."""

    def __init__(self, directory: str, evaluator: Evaluator, *, group: bool = False):
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

    def hook(self, every: int, total: int) -> Callable[[int, Any], list[dict[str, Any]] | None]:
        """An `on_checkpoint` for `loop.train_group`: evaluates every `every` D updates and the
        last checkpoint (`total`), returning the metrics (`add`), else None."""
        def on_checkpoint(step: int, states) -> list[dict[str, Any]] | None:
            if step % every == 0 or step == total:
                return self.add(step, states)
            return None
        return on_checkpoint

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


def describe(metrics: Mapping[str, Any], main: str) -> str:
    """One checkpoint's metrics as text, the main metric first: "modes_covered 8, high_quality
    0.9731, ..." (numbers only, 4 significant digits)."""
    names = [main, *(k for k in metrics if k != main)]
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in names if k in metrics
                     and isinstance(metrics[k], numbers.Real)
                     and not isinstance(metrics[k], bool | np.bool_))


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
        like = init_states(trial.setup, [trial.seed], [trial.hparams])
        for step in steps or available:
            if step in evals.by_step:
                continue
            metrics = evals.add(step, ckpts.restore(step, like))[0]
            log(f"step {step}: {describe(metrics, evals.evaluator.main_metric)}")
    finally:
        ckpts.close()
    summary = evals.summary()
    write_result(workdir, dataclasses.replace(read_result(workdir) or records.Record(), **summary))
    return summary

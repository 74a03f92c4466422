"""Evaluators: the metrics that fit a dataset, applied to the generators of a group of trials.

Each dataset has one main metric (its registry record's `MetricSpec`), the one the report
compares losses by:
  2-D mixtures   `modes_covered` (higher is better), with the high-quality fraction and the KL of
                 the mode histogram alongside;
  polygons       `f1` of the polygon precision and recall (higher is better);
  image datasets `fid` (lower is better), with KID, precision/recall and the Inception Score
                 (mean and std over 10 splits) alongside, as v1's evaluator recorded IS with
                 every FID.
A generator that produces NaN gets `inf`/NaN values and `status: "nonfinite"`, never a placeholder.
Every evaluator states its setup (`setup`: what was measured, how, with which weights and sample
counts), recorded with each result so the report never mixes numbers measured differently.

An evaluator is given the generator to measure (`Generator`: a hashable identity and a function
of G's variables and z) and never imports the trainer: states are anything with `g_params` and
`g_state`, stacked over K trials, and `views` (from the trainer) names other generators a state
holds (a generator EMA: its metrics land under a prefix in the same row).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gancmp import latents, precision, records
from gancmp.config import ConfigError
from gancmp.data import registry as data_registry
from gancmp.data import synthetic
from gancmp.metrics import inception_score as IS
from gancmp.metrics import ondevice
from gancmp.trial import Trial

if TYPE_CHECKING:
    from gancmp.metrics.resources import EvalResources

EVAL_SEED = 20180101  # fixed evaluation noise, shared by every trial
# The Inception Score's splits in a trial's evaluation: one, over all `eval.num_samples`, as
# compare_gan v1 (TF-GAN's `classifier_score`, `classifier_metrics_impl.py` L351–391, on its
# 10,000 samples; a 10-split mean, the original script's and `gancmp is`'s, is lower).
IS_SPLITS = 1
GENERATE_CHUNK = 1000  # samples per trial per call of `generate_group`
Views = Callable[[Any], Sequence[tuple[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Generator:
    """A trial setup's generator as an evaluator sees it.

    Attributes:
      key: its identity (the trial setup): equal keys, the same network and arithmetic.
      apply: (g_params, g_state, z [n, z_dim]) → samples [n, *example_shape] float32, in
        inference mode; traceable and vmappable over the variables.
      z_dim, prior: its latent dimension and prior (`gancmp.latents`).
    """

    key: Hashable
    apply: Callable[[Any, Any, jax.Array], jax.Array] = dataclasses.field(compare=False)
    z_dim: int
    prior: str

    def sample(self, state: Any, z: jax.Array) -> jax.Array:
        """One trial's samples from a state with `g_params` and `g_state`: z → [n, *shape]."""
        return self.apply(state.g_params, state.g_state, z)

    def __call__(self, state: Any, z: jax.Array) -> jax.Array:
        """`sample`: the generator as a generate function that is hashable by value (a bound
        `sample` compares by object, so equal generators of two groups would not share the
        programs memoized by it, e.g. `polygons.PolygonMetrics.programs`)."""
        return self.sample(state, z)

    def latents(self, n: int, seed: int = EVAL_SEED) -> jax.Array:
        """Fixed noise: n latents [n, z_dim] from `seed`, from the prior."""
        return latents.sample(jax.random.key(seed), (n, self.z_dim), self.prior)


class GeneratorState(NamedTuple):
    """What generating needs of a (stacked) train state: G's params and its other variables
    (batch-norm statistics); a pytree."""

    g_params: Any
    g_state: Any


@functools.partial(jax.jit, static_argnums=0)
def sample_group(generator: Generator, states: Any, z: jax.Array) -> jax.Array:
    """(generator, stacked states [K], z [c, z_dim]) → [K, c, *shape]: one jitted program, its
    compiled versions kept by JAX's jit cache (the process runtime's, `jax.clear_caches`) by
    the generator (static, hashable by its trial setup: equal generators share them) and the
    shapes."""
    return jax.vmap(generator.sample, in_axes=(0, None))(states, z)


def generate_group(generator: Generator, states: Any, z: jax.Array,
                   chunk: int = GENERATE_CHUNK) -> np.ndarray:
    """Samples of every trial of a stacked state from the same noise, `chunk` latents per
    jitted vmapped call (the device holds K·chunk samples at a time, whatever n), gathered on
    the host: z [n, z_dim] → [K, n, *example_shape] (numpy). (Image metrics generate and
    measure chunk by chunk on the device instead: `gancmp.metrics.device_eval`.)"""
    fn, states = functools.partial(sample_group, generator), jax.device_put(states)
    n = z.shape[0]
    chunk = max(1, min(chunk, n))
    z = jnp.concatenate([z, jnp.zeros((-n % chunk, z.shape[1]), z.dtype)])  # one shape per call
    parts = [np.asarray(fn(states, z[i:i + chunk])) for i in range(0, n, chunk)]
    return np.concatenate(parts, axis=1)[:, :n]


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
      generator: the generator of the trials it evaluates.
      group_fn: stacked host states [K] → one metrics dict (None: nonfinite samples) per
        trial, computed on the device in bounded memory (image datasets:
        `gancmp.metrics.device_eval`); None: samples are drawn (`samples`) and measured on the
        host by `metrics_fn`, trial by trial.
      views: stacked states → [(prefix, states)] of the other generators they hold, each
        measured too, its metrics under its prefix in the same row (the trainer's generator
        EMA: "ema/"); None: only G.
    """

    main_metric: str
    higher_is_better: bool
    setup: dict[str, Any]
    metrics_fn: Callable[[np.ndarray, Any], dict[str, Any]]
    num_samples: int
    generator: Generator
    group_fn: Callable[[Any], list[dict[str, Any] | None]] | None = None
    views: Views | None = None

    @property
    def setup_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.setup, sort_keys=True).encode()).hexdigest()[:16]

    def samples(self, states) -> np.ndarray:
        """[K, n, *example_shape] samples of every trial of a stacked state (fixed noise)."""
        return generate_group(self.generator, states, self.generator.latents(self.num_samples))

    def evaluate_group(self, states) -> list[dict[str, Any]]:
        """One metrics dict per trial of a stacked state; each also holds the metrics of the
        other generators of `views` under their prefixes. Only the generators are read
        (`GeneratorState`: never D or the optimizer states): image metrics take them where
        they are, on the devices; the others bring them to the host."""
        rows = None
        for prefix, view in [("", states), *(self.views(states) if self.views else ())]:
            part = GeneratorState(view.g_params, view.g_state)
            if self.group_fn is None:
                part = jax.tree.map(np.asarray, jax.device_get(part))
            got = self._evaluate(part)
            rows = got if rows is None else [
                {**row, **{prefix + k: v for k, v in other.items()}}
                for row, other in zip(rows, got, strict=True)]
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


def make_evaluator(trial: Trial, generator: Generator, views: Views | None = None,
                   resources: EvalResources | None = None) -> Evaluator:
    """The evaluator of the trial's dataset, its registered metric family (`gancmp.data.
    registry.MetricSpec`: "mixture", "polygons" or "fid"), measuring `generator` (and the
    other generators `views` finds in a state). `resources`: the run's shared extractors,
    references and feature programs (`resources.EvalResources`; None: its own, for this
    evaluator alone)."""
    from gancmp.metrics.resources import EvalResources

    spec = data_registry.get(trial.setup.dataset).metrics
    build = {"mixture": _mixture_evaluator, "polygons": _polygon_evaluator,
             "fid": _fid_evaluator}[spec.family]
    evaluator = build(trial, spec, generator, resources or EvalResources())
    return dataclasses.replace(evaluator, views=views)


def _mixture_evaluator(trial: Trial, spec: data_registry.MetricSpec, generator: Generator,
                       resources: EvalResources) -> Evaluator:
    from gancmp.metrics import mixtures

    setup = trial.setup
    mix = synthetic.MIXTURES[setup.dataset]
    n = int(trial.eval.get("num_samples") or 10_000)

    def metrics(samples: np.ndarray, state: Any) -> dict[str, Any]:
        return mixtures.mixture_metrics(samples, np.asarray(mix.modes), float(mix.std))

    desc = {"metric": "mixture", "dataset": setup.dataset, "num_samples": n, "seed": EVAL_SEED}
    return Evaluator(spec.main, spec.higher_is_better, desc, metrics, n, generator)


def _polygon_evaluator(trial: Trial, spec: data_registry.MetricSpec, generator: Generator,
                       resources: EvalResources) -> Evaluator:
    """Polygon precision/recall/F1 (`polygons.PolygonMetrics`: bank, δ and the recall's
    programs built once per `resources`, shared by every group of a sweep)."""
    from gancmp.metrics import polygons

    setup, ev = trial.setup, trial.eval
    fields = {f.name for f in dataclasses.fields(polygons.PolygonMetricsConfig)}
    cfg = polygons.PolygonMetricsConfig(**{k: ev[k] for k in fields if k in ev})
    prf = resources.polygon_metrics(setup.dataset, trial.data_seed, trial.data_dir, cfg)
    generate = generator  # hashable by value: equal generators' recall compiles once

    def metrics(samples: np.ndarray, state: Any) -> dict[str, Any]:
        return prf(samples, generate if state is not None else None, state, setup.z_dim,
                   prior=setup.method.prior)

    desc = {**prf.setup(), "data_seed": trial.data_seed, "seed": EVAL_SEED}
    return Evaluator(spec.main, spec.higher_is_better, desc, metrics, cfg.num_samples,
                     generator)


def metric_precision(fid_config: dict[str, Any]) -> str:
    """The precision name the FID Inception runs at on this backend: `fid.matmul_precision`
    (default float32) resolved by `gancmp.precision.resolve_metric`; never the trial's."""
    return precision.resolve_metric(fid_config.get("matmul_precision") or "float32",
                                    jax.default_backend())


def _fid_evaluator(trial: Trial, spec: data_registry.MetricSpec, generator: Generator,
                   resources: EvalResources) -> Evaluator:
    """The study's image metrics (`config.eval.metrics`, `gancmp.metrics.suite`; default
    "fid") of `eval.num_samples` (default 10,000) generated images against the first
    `fid.num_real` test images. "fid" is FID (the paper's main metric, lower is better), KID
    (mean and std over subsets) and improved precision and recall (k = 3) on the FID
    Inception's pool3 features, and the Inception Score of the generated images
    (`inception_score`: v1's, one split over all of them, `IS_SPLITS`, recorded in the setup;
    from the classifier's logits of the same network pass; see
    `gancmp.metrics.inception_score`); the other metrics are `gancmp.metrics.image_eval`'s,
    on their networks. The main metric is `eval.main_metric` (default: "fid" when chosen, else
    the first chosen metric's first value). The real side is `_fid_reference`'s; `setup`
    carries the FID provenance (with the Inception's matmul precision, `fid.matmul_precision`
    resolved by `gancmp.precision.resolve_metric`, whatever the trial's own
    `matmul_precision`), how IS was taken (None: not recorded, the weights have no classifier
    layer, with one warning) and, with metrics other than "fid", each one's network and setup
    (`image_eval.metric_setup`). A group's checkpoint is measured on the device in bounded
    memory (`gancmp.metrics.device_eval`), one feature network at a time; the extractors, the
    references, their device sides and the feature programs are built once per `resources`
    and shared by every evaluator made with it (every group of a sweep)."""
    from gancmp.metrics import image_eval

    chosen = chosen_metrics(trial)
    main, higher = _main_metric(trial, chosen, spec)
    n = int(trial.eval.get("num_samples") or 10_000)
    passes, data = _network_passes(trial, generator, chosen, n, resources)

    def group(states) -> list[dict[str, Any] | None]:
        k = jax.tree.leaves(states)[0].shape[0]
        rows = []
        for start, size in trial_passes(k, jax.local_device_count()):
            part = jax.tree.map(lambda a, s=start, m=size: a[s:s + m], states)
            rows += image_eval.merge([
                image_eval.pass_rows(p, p.run(part, max(1, p.chunk // size)), n, IS_SPLITS)
                for p in passes])
        return rows

    desc = _image_setup(passes, chosen, n, data)
    metrics = functools.partial(_metrics_of_samples, passes)
    return Evaluator(main, higher, desc, metrics, n, generator, group)


def chosen_metrics(trial: Trial) -> tuple[Any, ...]:
    """The study's image metrics (`config.eval.metrics`); ConfigError naming the field."""
    from gancmp.metrics import suite

    try:
        return suite.parse(trial.eval.get("metrics"))
    except ValueError as e:
        raise ConfigError(f"config.eval.metrics: {e}") from None


def _main_metric(trial: Trial, chosen, spec: data_registry.MetricSpec) -> tuple[str, bool]:
    """(main metric, higher is better): `eval.main_metric`, else the dataset's ("fid") when
    chosen, else the first chosen metric's first value."""
    from gancmp.metrics import suite

    directions = suite.directions(chosen)
    default = spec.main if spec.main in directions else chosen[0].main
    main = trial.eval.get("main_metric") or default
    if main not in directions:
        raise ConfigError(f"config.eval.main_metric: {main!r} is not a value of the chosen "
                          f"metrics ({','.join(m.name for m in chosen)}); allowed: "
                          f"{', '.join(directions)}")
    return main, directions[main]


def feature_weights(trial: Trial) -> dict[str, str]:
    """`eval.feature_weights` ("dinov2=PATH,clip=PATH") as {network: path}; ConfigError for a
    malformed item."""
    out = {}
    for item in (trial.eval.get("feature_weights") or "").split(","):
        if item.strip():
            name, eq, path = item.strip().partition("=")
            if not eq or not name or not path:
                raise ConfigError(f"config.eval.feature_weights: {item!r} is not NETWORK=PATH "
                                  "(e.g. dinov2=~/dinov2_vitl14.pth,clip=~/ViT-L-14-336px.pt)")
            out[name] = path
    return out


def _network_passes(trial: Trial, generator: Generator, chosen, n: int,
                    resources: EvalResources):
    """(one `image_eval.NetworkPass` per network the chosen metrics need, in order, a user
    dataset's identity or None), their extractors, references and programs `resources`'."""
    from gancmp.metrics import fid, image_eval

    fc, weights, passes, data = trial.fid, feature_weights(trial), [], None
    batch = int(fc.get("batch_size") or 50)
    z = generator.latents(n)
    for network in dict.fromkeys(m.network for m in chosen):
        mine = tuple(m for m in chosen if m.network == network)
        if network == "inception":
            extractor = resources.extractor(
                fid.FeatureExtractor, weights.get(network) or fc.get("inception_weights") or None,
                fc.get("preprocess") or "tf1_legacy", batch, fc.get("cache_dir") or None,
                metric_precision(fc))
        else:
            extractor = resources.network_extractor(network, weights.get(network), batch)
        reference, data = _fid_reference(trial, extractor, resources)
        image_eval.check_counts(mine, n, reference.mu.shape[0], network)
        logits = any(m.name == "fid" for m in mine) and _is_setup(extractor) is not None
        chunk = max(1, int(getattr(extractor, "batch_size", 0) or batch))
        run = resources.group_features(generator, extractor, n, z, logits, IS_SPLITS)
        passes.append(image_eval.NetworkPass(network, extractor, reference, mine, logits, run,
                                             chunk, EVAL_SEED, resources))
    return passes, data


def _image_setup(passes, chosen, n: int, data) -> dict[str, Any]:
    """The evaluator's setup: with "fid" chosen, FID's as before (so records of "fid" alone
    keep their setup hash), and {"metrics": {network: its metrics' setups}} with others."""
    from gancmp.metrics import fid, image_eval

    desc: dict[str, Any] = {"metric": chosen[0].name}
    fid_pass = next((p for p in passes if any(m.name == "fid" for m in p.metrics)), None)
    if fid_pass is not None:
        desc = {"metric": "fid",
                **fid.fid_provenance(fid_pass.extractor.provenance, fid_pass.reference, n),
                "seed": EVAL_SEED, "kid": {**image_eval.KID_ARGS, "seed": EVAL_SEED},
                "precision_recall_k": image_eval.PR_K,
                "inception_score": ({"num_splits": IS_SPLITS, "logits": IS.LOGITS}
                                    if fid_pass.logits else None)}
    if [m.name for m in chosen] != ["fid"]:
        desc["metrics"] = {p.network: image_eval.metric_setup(p, n) for p in passes}
    return {**desc, **({"data": data} if data else {})}


def trial_passes(k: int, devices: int) -> list[tuple[int, int]]:
    """(first trial, trials) of each pass that evaluates a group of `k` trials on `devices`
    local devices: ceil(k / devices) trials at a time (the trials a device trains), since every
    device holds a copy of the generators of the trials being evaluated (their samples are
    split over the devices, `device_eval`), so a device never holds more generators than it
    trains. Each pass runs about `fid.batch_size` images per network pass, as one pass of all
    k would: the same work in the same number of network passes."""
    per_pass = -(-k // max(1, devices))
    return [(start, min(per_pass, k - start)) for start in range(0, k, per_pass)]


def _fid_reference(trial: Trial, extractor, resources: EvalResources
                   ) -> tuple[Any, dict[str, Any] | None]:
    """(the real side's FID statistics, a user dataset's identity or None). The statistics of
    the first `fid.num_real` test images are computed once and cached in `fid.cache_dir`
    (`gancmp.metrics.fid.reference_statistics`). A user dataset (`folder:`/`npz:`) is scored
    against all its held-out 10 % (at most `fid.num_real`), its reference cached under its
    content hash, and its identity (`gancmp.data.source.provenance`: source, counts, split rule,
    content sha256) recorded as `setup["data"]`."""
    from gancmp.data import source as data_source

    dataset, fc = trial.setup.dataset, trial.fid
    num_real = int(fc.get("num_real") or 10_000)
    data = data_source.provenance(dataset)  # a user dataset's identity; None if built in
    if data is not None:
        num_real = _user_num_real(dataset, data, num_real, _dim(extractor))
    reference = resources.reference(
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


def _dim(extractor) -> int:
    return int(getattr(extractor, "dims", None) or getattr(extractor, "dim", None) or 0)


def _metrics_of_samples(passes, samples: np.ndarray, state: Any) -> dict[str, Any]:
    """The image evaluator's metrics of given samples [n, H, W, C] (on the host): each
    network's features, then `image_eval.pass_rows` as for a group."""
    from gancmp.metrics import fid, image_eval

    parts = []
    for p in passes:
        if p.logits:
            _, feats, logits = fid.statistics_with_logits(samples, p.extractor)
        else:
            _, feats = fid.compute_statistics(samples, p.extractor, keep_features=True)
        carry = {"features": jnp.asarray(feats)[None, None], "finite": np.ones(1, bool)}
        if p.logits:
            p_sum, plogp = ondevice.is_split_sums(jnp.asarray(logits), jnp.arange(len(logits)),
                                                  len(logits), IS_SPLITS)
            carry.update(p_sum=p_sum[None], plogp_sum=plogp[None])
        parts.append(image_eval.pass_rows(p, carry, len(feats), IS_SPLITS))
    return image_eval.merge(parts)[0]


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

def describe(metrics: Mapping[str, Any], main: str) -> str:
    """One checkpoint's metrics as text, the main metric first: "modes_covered 8, high_quality
    0.9731, ..." (numbers only, 4 significant digits)."""
    names = [main, *(k for k in metrics if k != main)]
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in names if k in metrics
                     and isinstance(metrics[k], numbers.Real)
                     and not isinstance(metrics[k], bool | np.bool_))



"""Precision, recall and F1 on the convex-polygon data, in the spirit of Lucic et al. (2018, §5).

The paper's exact thresholds are not public; ours, all fields of `PolygonMetricsConfig`:
- distance to the manifold: the pixel L2 distance (images in [0, 1], 28×28) from an image to the
  nearest image of a bank of `bank_size` freshly drawn true polygons (seed `bank_seed`, never the
  training set), computed on device in chunks as ‖x‖² + ‖b‖² − 2x·b;
- δ: the `quantile` (0.99) of the nearest-bank distances of `calibration_size` held-out true
  images — so a true polygon is within δ of the bank 99 % of the time;
- precision: the fraction of generated samples within δ of the bank;
- recall: the fraction of `recall_size` other held-out true images x that the generator reaches,
  min_z ‖x − G(z)‖ ≤ δ, optimising z with Adam (`steps`, learning rate `lr`) from `restarts`
  random starts per target, all targets and restarts in parallel, z = clip(u, −1, 1) kept in the
  generator's domain by clipping u after every step (a generator with a normal prior, the VAE's
  decoder: starts drawn from N(0, I), z kept in [−3, 3]^d, `gancmp.latents.bound`);
- F1 = 2PR / (P + R).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gancmp import latents
from gancmp.data import synthetic


@dataclasses.dataclass(frozen=True)
class PolygonMetricsConfig:
    bank_size: int = 20_000
    bank_seed: int = 12_345
    quantile: float = 0.99
    calibration_size: int = 2_000
    num_samples: int = 2_000  # generated samples for precision
    recall_size: int = 200  # held-out targets for recall
    steps: int = 200
    restarts: int = 4
    lr: float = 0.05
    chunk: int = 4_096


def polygon_bank(name: str, cfg: PolygonMetricsConfig) -> np.ndarray:
    """`bank_size` fresh true polygons (seed `bank_seed`), float32 [n, 784] in [0, 1]
    (quantised like the data), read-only. Rendered each call: a sweep's groups share one
    `PolygonMetrics` (`resources.EvalResources.polygon_metrics`), so one bank."""
    params = synthetic.sample_polygon_params(cfg.bank_seed, cfg.bank_size,
                                             synthetic.POLYGON_DATASETS[name])
    images = synthetic.to_uint8(synthetic.render_polygons(params["vertices"]))
    bank = images.reshape(len(images), -1).astype(np.float32) / 255.0
    bank.flags.writeable = False
    return bank


@jax.jit
def _min_sq_dist(x: jax.Array, bank: jax.Array, bank_sq: jax.Array) -> jax.Array:
    d = jnp.sum(x * x, 1)[:, None] + bank_sq[None, :] - 2.0 * x @ bank.T
    return jnp.maximum(jnp.min(d, axis=1), 0.0)


def nearest_distances(images: np.ndarray, bank: np.ndarray, chunk: int = 4_096) -> np.ndarray:
    """Pixel L2 distance of each image [n, 28, 28, 1] to its nearest bank image, [n]."""
    x = jnp.asarray(np.asarray(images, np.float32).reshape(len(images), -1))
    best = jnp.full((len(images),), jnp.inf)
    for start in range(0, len(bank), chunk):
        b = jnp.asarray(bank[start:start + chunk])
        best = jnp.minimum(best, _min_sq_dist(x, b, jnp.sum(b * b, 1)))
    return np.sqrt(np.asarray(best))


def calibrate_delta(heldout: np.ndarray, bank: np.ndarray, quantile: float) -> float:
    """δ = `quantile` of the nearest-bank distances of held-out true images."""
    return float(np.quantile(nearest_distances(heldout, bank), quantile))


def precision(samples: np.ndarray, bank: np.ndarray, delta: float) -> float:
    """Fraction of samples within δ of the polygon manifold (the bank)."""
    if not np.all(np.isfinite(samples)):
        return 0.0
    return float(np.mean(nearest_distances(samples, bank) <= delta))


Generate = Callable[[Any, jax.Array], jax.Array]  # (params, z [n, z_dim]) → images [n, 28, 28, 1]


def reconstruction_distances(generate: Generate, params: Any, z_dim: int, targets: np.ndarray,
                             cfg: PolygonMetricsConfig, seed: int = 0,
                             prior: str = "uniform", programs: dict | None = None
                             ) -> np.ndarray:
    """min over restarts of ‖x − G(z)‖ after Adam on z ∈ [−b, b]^z_dim, per target, [n]; the
    restarts start from draws of the generator's `prior` and b is its `gancmp.latents.bound`
    (1 for the GANs' U[−1, 1]). `params` is passed through to `generate` (a jit argument: one
    compilation serves many generators of the same architecture). `programs`: the caller's
    table of inversion programs (`PolygonMetrics.programs`), by generator (hashable), steps,
    learning rate and bound; None: built for this call."""
    n, r = len(targets), cfg.restarts
    x = jnp.asarray(np.repeat(np.asarray(targets, np.float32), r, axis=0))
    z0 = latents.sample(jax.random.key(seed), (n * r, z_dim), prior)
    key = (generate, cfg.steps, cfg.lr, latents.bound(prior))
    programs = {} if programs is None else programs
    if key not in programs:
        programs[key] = _invert(*key)
    invert = programs[key]
    sq = np.asarray(invert(params, z0, x)).reshape(n, r)
    return np.sqrt(np.maximum(sq.min(axis=1), 0.0))


def _steps_per_call(steps: int) -> tuple[int, bool]:
    """(steps per device call, unroll): one rolled scan on TPU/GPU; on XLA:CPU, where a rolled
    loop of convolutions is several times slower, short unrolled chunks called from Python."""
    if jax.default_backend() == "cpu":
        return next(c for c in (10, 8, 5, 4, 2, 1) if steps % c == 0), True
    return steps, False


def _invert(generate: Generate, steps: int, lr: float, bound: float = 1.0):
    tx = optax.adam(lr)
    chunk, unroll = _steps_per_call(steps)

    def per_example_loss(params, z, x):
        return jnp.sum(jnp.square(generate(params, z) - x).reshape(len(z), -1), axis=1)

    @functools.partial(jax.jit, donate_argnums=(1, 2))
    def run_chunk(params, z, opt, x):
        def body(carry, _):
            z, opt = carry
            grads = jax.grad(lambda v: jnp.sum(per_example_loss(params, v, x)))(z)
            updates, opt = tx.update(grads, opt, z)
            return (jnp.clip(optax.apply_updates(z, updates), -bound, bound), opt), None

        (z, opt), _ = jax.lax.scan(body, (z, opt), None, length=chunk, unroll=unroll)
        return z, opt

    final_loss = jax.jit(per_example_loss)

    def run(params, z, x):
        opt = tx.init(z)
        for _ in range(steps // chunk):
            z, opt = run_chunk(params, z, opt, x)
        return final_loss(params, z, x)

    return run


def recall(generate: Generate, params: Any, z_dim: int, targets: np.ndarray, delta: float,
           cfg: PolygonMetricsConfig, prior: str = "uniform", programs: dict | None = None
           ) -> float:
    """Fraction of held-out targets the generator (fed z from `prior`) reaches within δ
    (`programs`: as `reconstruction_distances`)."""
    return float(np.mean(reconstruction_distances(generate, params, z_dim, targets, cfg,
                                                  prior=prior, programs=programs) <= delta))


@dataclasses.dataclass
class PolygonMetrics:
    """Precision/recall/F1 for one polygon dataset: bank and δ computed once, then applied to
    any number of generators; `programs` holds its recall's inversion programs, one per
    generator (`reconstruction_distances`), for as long as it lives."""

    name: str
    cfg: PolygonMetricsConfig
    bank: np.ndarray
    delta: float
    recall_targets: np.ndarray
    programs: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, heldout: np.ndarray,
               cfg: PolygonMetricsConfig | None = None) -> PolygonMetrics:
        """`heldout`: true images (uint8 or float) never used for training; the first
        `calibration_size` calibrate δ, the next `recall_size` are the recall targets."""
        cfg = cfg or PolygonMetricsConfig()
        images = np.asarray(heldout, np.float32)
        if heldout.dtype == np.uint8:
            images = images / 255.0
        bank = polygon_bank(name, cfg)
        calib = images[:cfg.calibration_size]
        targets = images[cfg.calibration_size:cfg.calibration_size + cfg.recall_size]
        return cls(name, cfg, bank, calibrate_delta(calib, bank, cfg.quantile), targets)

    def setup(self) -> dict[str, Any]:
        return {"metric": "polygon_prf", "dataset": self.name, "delta": self.delta,
                **dataclasses.asdict(self.cfg)}

    def __call__(self, samples: np.ndarray, generate: Generate | None = None, params: Any = None,
                 z_dim: int = 0, prior: str = "uniform") -> dict:
        """Precision of `samples`; recall of `generate(params, ·)` when given (its z searched
        as its `prior` says: `reconstruction_distances`)."""
        p = precision(samples, self.bank, self.delta)
        r = (recall(generate, params, z_dim, self.recall_targets, self.delta, self.cfg, prior,
                    self.programs) if generate is not None else float("nan"))
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
        return {"precision": p, "recall": r, "f1": f1, "delta": self.delta}

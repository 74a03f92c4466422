"""PRD: precision and recall for distributions (Sajjadi et al. 2018, "Assessing Generative
Models via Precision and Recall"), as compare_gan v3 recorded it: 20 clusters, 10 runs, 1001
angles, summarised by max F₈ (recall) and max F₁/₈ (precision).

The generated and real features (equal counts; compare_gan's `enforce_balance`) are clustered
together into `num_clusters` bins; each set's histogram over the bins is a discrete distribution
(P for the generated, Q for the real). For λ = tan θ on `num_angles` angles θ evenly spaced in
[ε, π/2 − ε] (ε = 1e-10):

    α(λ) = Σ_bins min(λ Q, P),   β(λ) = α(λ) / λ          (precision α, recall β)

the curve averaged over `num_runs` independent clusterings. Fβ = (1 + β²) α β / (β² α + β_rec +
1e-10) for each point; F₈ = max over the curve with β = 8 (weighs recall), F₁/₈ with β = 1/8
(weighs precision).

Clustering: compare_gan calls scikit-learn's MiniBatchKMeans (k-means++ seeding, n_init = 10)
on the host; here it is full-batch Lloyd k-means on the device (k-means++ seeding, the best of
`n_init` seedings by inertia, Lloyd steps until no label changes, at most `iterations`), which
minimises the same objective (its clusters differ from a mini-batch run's only where
mini-batches stop short of a minimum). The
curve and the F-scores (`compute_prd`, `f_beta`, `max_f_beta_pair`) are compare_gan's formulas
in float64 on the host; the tests check compare_gan v3's published test values.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gancmp.metrics import ondevice

NUM_CLUSTERS = 20
NUM_RUNS = 10
NUM_ANGLES = 1001
BETA = 8
N_INIT = 10
ITERATIONS = 50


class PRD(NamedTuple):
    """precision [num_angles], recall [num_angles]: the curve; f_beta: max F₈ (recall-like);
    f_beta_inv: max F₁/₈ (precision-like)."""

    precision: np.ndarray
    recall: np.ndarray
    f_beta: float
    f_beta_inv: float


def compute_prd(eval_dist, ref_dist, num_angles: int = NUM_ANGLES, epsilon: float = 1e-10
                ) -> tuple[np.ndarray, np.ndarray]:
    """The PRD curve (precision [num_angles], recall [num_angles]) of the discrete distribution
    `eval_dist` against `ref_dist` (module docstring). ValueError unless 0 < ε < 0.1 and
    `num_angles` is an integer in [3, 1e6]."""
    if not 0 < epsilon < 0.1:
        raise ValueError(f"epsilon must be in (0, 0.1), got {epsilon}")
    if not (float(num_angles).is_integer() and 3 <= num_angles <= 1e6):
        raise ValueError(f"num_angles must be an integer in [3, 1e6], got {num_angles}")
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, num=int(num_angles)))
    ref = np.asarray(ref_dist, np.float64)[None, :]
    ev = np.asarray(eval_dist, np.float64)[None, :]
    precision = np.minimum(ref * slopes[:, None], ev).sum(axis=1)
    return precision, precision / slopes


def _check_unit(precision: np.ndarray, recall: np.ndarray, beta: float) -> None:
    for name, x in (("precision", precision), ("recall", recall)):
        if not ((x >= 0).all() and (x <= 1).all()):
            raise ValueError(f"all values of {name} must be in [0, 1]")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")


def f_beta(precision: np.ndarray, recall: np.ndarray, beta: float = 1.0,
           epsilon: float = 1e-10) -> np.ndarray:
    """Fβ = (1 + β²) p r / (β² p + r + ε) of each (precision, recall) pair."""
    p, r = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    _check_unit(p, r, beta)
    return (1 + beta ** 2) * (p * r) / (beta ** 2 * p + r + epsilon)


def max_f_beta_pair(precision: np.ndarray, recall: np.ndarray, beta: float = BETA
                    ) -> tuple[float, float]:
    """(max Fβ, max F₁/β) over a PRD curve."""
    return (float(np.max(f_beta(precision, recall, beta))),
            float(np.max(f_beta(precision, recall, 1 / beta))))


def _sq_dists(x: jax.Array, centers: jax.Array) -> jax.Array:
    """Squared distances [n, k] of x [n, d] to centers [k, d]."""
    return ondevice._sq_from_gram(x, ondevice._dot_t(x, centers), (centers * centers).sum(1))


def _seed_centers(x: jax.Array, key: jax.Array, k: int) -> jax.Array:
    """k-means++ seeding: k rows of x [n, d], each next drawn ∝ its squared distance to the
    nearest chosen one."""
    first_key, key = jax.random.split(key)
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(
        x[jax.random.randint(first_key, (), 0, x.shape[0])])
    nearest = _sq_dists(x, centers[:1])[:, 0]

    def step(i, carry):
        centers, nearest = carry
        logits = jnp.where(nearest > 0, jnp.log(jnp.maximum(nearest, 1e-30)), -jnp.inf)
        logits = jnp.where(jnp.isfinite(logits).any(), logits, 0.0)  # all points coincide
        pick = x[jax.random.categorical(jax.random.fold_in(key, i), logits)]
        nearest = jnp.minimum(nearest, _sq_dists(x, pick[None])[:, 0])
        return centers.at[i].set(pick), nearest

    return jax.lax.fori_loop(1, k, step, (centers, nearest))[0]


def _lloyd(x: jax.Array, key: jax.Array, k: int, iterations: int
           ) -> tuple[jax.Array, jax.Array]:
    """One k-means run from a k-means++ seeding, Lloyd steps until no label changes (at most
    `iterations`): (labels [n] int32, inertia)."""
    def labels_of(centers):
        return jnp.argmin(_sq_dists(x, centers), 1).astype(jnp.int32)

    def step(carry):
        i, centers, labels, _ = carry
        onehot = jax.nn.one_hot(labels, k, dtype=x.dtype)
        counts = onehot.sum(0)
        sums = jnp.dot(onehot.T, x, precision=ondevice.HIGHEST)
        centers = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None],
                            centers)
        new = labels_of(centers)
        return i + 1, centers, new, (new != labels).any()

    centers = _seed_centers(x, key, k)
    init = (0, centers, labels_of(centers), jnp.array(True))
    _, centers, labels, _ = jax.lax.while_loop(
        lambda c: (c[0] < iterations) & c[3], step, init)
    return labels, _sq_dists(x, centers).min(1).sum()


@functools.partial(jax.jit, static_argnames=("k", "n_init", "iterations"))
def kmeans_labels(x: jax.Array, key: jax.Array, k: int = NUM_CLUSTERS, n_init: int = N_INIT,
                  iterations: int = ITERATIONS) -> jax.Array:
    """Cluster labels [n] int32 of x [n, d] (float32): the k-means run of least inertia among
    `n_init` seedings."""
    labels, inertia = jax.vmap(lambda kk: _lloyd(x, kk, k, iterations))(
        jax.random.split(key, n_init))
    return labels[jnp.argmin(inertia)]


def cluster_histograms(eval_data: np.ndarray, ref_data: np.ndarray, key: jax.Array,
                       num_clusters: int = NUM_CLUSTERS, n_init: int = N_INIT,
                       iterations: int = ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """(eval histogram, ref histogram), each [num_clusters] summing to 1: the fraction of each
    set's points in each cluster of the union's k-means clustering."""
    both = jnp.asarray(np.concatenate([eval_data, ref_data]), jnp.float32)
    labels = np.asarray(kmeans_labels(both, key, num_clusters, n_init, iterations))
    hist = [np.bincount(part, minlength=num_clusters) / len(part)
            for part in (labels[:len(eval_data)], labels[len(eval_data):])]
    return hist[0].astype(np.float64), hist[1].astype(np.float64)


def prd(real_features: np.ndarray, fake_features: np.ndarray, *,
        num_clusters: int = NUM_CLUSTERS, num_runs: int = NUM_RUNS,
        num_angles: int = NUM_ANGLES, beta: float = BETA, seed: int = 0,
        n_init: int = N_INIT, iterations: int = ITERATIONS) -> PRD:
    """PRD of generated features fake [n, d] against real [n, d] (equal counts), averaged over
    `num_runs` clusterings (keys from `seed`), with max Fβ and F₁/β (module docstring)."""
    real, fake = np.asarray(real_features), np.asarray(fake_features)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features must be [n, d] with the same d, got "
                         f"{real.shape} and {fake.shape}")
    if len(real) != len(fake):
        raise ValueError(f"PRD needs as many generated as real samples (clusters would favour "
                         f"the larger set), got {len(fake)} generated and {len(real)} real")
    if not 1 <= num_clusters <= len(real) + len(fake) or num_runs < 1:
        raise ValueError(f"num_clusters must be in [1, {len(real) + len(fake)}] and num_runs "
                         f">= 1, got {num_clusters} and {num_runs}")
    curves = [compute_prd(*cluster_histograms(fake, real, key, num_clusters, n_init,
                                              iterations), num_angles)
              for key in jax.random.split(jax.random.key(seed), num_runs)]
    precision = np.mean([c[0] for c in curves], axis=0)
    recall = np.mean([c[1] for c in curves], axis=0)
    precision, recall = np.clip(precision, 0, 1), np.clip(recall, 0, 1)  # rounding past 1
    return PRD(precision, recall, *max_f_beta_pair(precision, recall, beta))

"""Precision and recall for distributions (Sajjadi et al. 2018, "Assessing Generative Models via
Precision and Recall"), in numpy.

The union of generated ("eval") and real ("ref") features is clustered into `num_clusters` = 20
clusters by k-means; the two histograms over clusters, α (eval) and β (ref), define the PRD curve
over `num_angles` = 1001 angles λ = tan(θ), θ evenly spaced in (0, π/2) (ε = 1e-10 from the ends):

    precision(λ) = Σᵢ min(λ βᵢ, αᵢ),   recall(λ) = precision(λ) / λ,

both clipped to [0, 1]. The curve is averaged over `num_runs` = 10 clusterings (k-means with
different seeds). The summary is (F₈, F₁/₈), the maxima over the curve of
F_β = (1 + β²) p r / (β² p + r): F₈ weighs recall (does the model cover the real data?),
F₁/₈ precision (are its samples realistic?).

k-means: our own Lloyd iteration (k-means++ seeding, `n_init` seedings per run, the one of
least inertia kept; at most `max_iter` iterations; an emptied cluster is re-seeded at the point
farthest from its centre). The paper's code uses scikit-learn's MiniBatchKMeans with n_init=10;
the clusterings differ in detail, the histograms they induce are what matters. Everything is
seeded, so results are reproducible.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

EPSILON = 1e-10


class PRD(NamedTuple):
    """A PRD curve: precision [num_angles] and recall [num_angles], from high recall and low
    precision (small λ) to high precision and low recall (large λ)."""

    precision: np.ndarray
    recall: np.ndarray


def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0)


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 10,
           max_iter: int = 100) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means of x [n, d] (float64): (centres [k, d], labels [n], inertia)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"num_clusters must be between 1 and the number of points {n}, got {k}")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        # k-means++ seeding
        centres = [x[rng.integers(n)]]
        closest = _sq_dists(x, centres[0][None])[:, 0]
        for _ in range(1, k):
            total = closest.sum()
            i = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
            centres.append(x[i])
            closest = np.minimum(closest, _sq_dists(x, x[i][None])[:, 0])
        c = np.stack(centres)
        labels = None
        for _ in range(max_iter):
            d = _sq_dists(x, c)
            new = d.argmin(1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            counts = np.bincount(labels, minlength=k)
            sums = np.zeros_like(c)
            np.add.at(sums, labels, x)
            c = sums / np.maximum(counts, 1)[:, None]
            own = d[np.arange(n), labels]
            for j in np.flatnonzero(counts == 0):  # re-seed an empty cluster far away
                far = int(own.argmax())
                c[j], own[far] = x[far], -1.0
        d = _sq_dists(x, c)
        labels = d.argmin(1)
        inertia = float(d[np.arange(n), labels].sum())
        if best is None or inertia < best[2]:
            best = (c, labels, inertia)
    return best


def compute_prd(eval_dist: np.ndarray, ref_dist: np.ndarray, num_angles: int = 1001,
                epsilon: float = EPSILON) -> PRD:
    """PRD curve of two histograms over the same bins, eval [B] and ref [B] (each summing
    to 1)."""
    if not 3 <= num_angles <= 1e6:
        raise ValueError(f"num_angles must be between 3 and 1e6, got {num_angles}")
    eval_dist = np.asarray(eval_dist, np.float64)
    ref_dist = np.asarray(ref_dist, np.float64)
    angles = np.linspace(epsilon, np.pi / 2 - epsilon, num_angles)
    slopes = np.tan(angles)
    precision = np.minimum(ref_dist[None, :] * slopes[:, None], eval_dist[None, :]).sum(1)
    recall = precision / slopes
    if max(precision.max(), recall.max()) > 1.001:
        raise ValueError("PRD precision or recall above 1: the histograms do not sum to 1")
    return PRD(np.clip(precision, 0, 1), np.clip(recall, 0, 1))


def compute_prd_from_embedding(eval_data: np.ndarray, ref_data: np.ndarray,
                               num_clusters: int = 20, num_angles: int = 1001,
                               num_runs: int = 10, enforce_balance: bool = True,
                               seed: int = 0, n_init: int = 10) -> PRD:
    """PRD curve of generated features eval [n, d] against real features ref [m, d], averaged
    over `num_runs` k-means clusterings of their union (run r seeded with `seed` + r).
    `enforce_balance`: require n == m, as the paper's code (unequal sizes bias the curve)."""
    eval_data = np.asarray(eval_data, np.float64)
    ref_data = np.asarray(ref_data, np.float64)
    if eval_data.ndim != 2 or ref_data.ndim != 2 or eval_data.shape[1] != ref_data.shape[1]:
        raise ValueError(f"eval_data and ref_data must be [n, d] with the same d, got "
                         f"{eval_data.shape} and {ref_data.shape}")
    if enforce_balance and len(eval_data) != len(ref_data):
        raise ValueError(f"eval_data and ref_data must have equal sizes with enforce_balance, "
                         f"got {len(eval_data)} and {len(ref_data)}")
    if num_runs < 1:
        raise ValueError(f"num_runs must be positive, got {num_runs}")
    data = np.concatenate([eval_data, ref_data])
    n = len(eval_data)
    precisions, recalls = [], []
    for run in range(num_runs):
        _, labels, _ = kmeans(data, num_clusters, seed=seed + run, n_init=n_init)
        eval_hist = np.bincount(labels[:n], minlength=num_clusters) / n
        ref_hist = np.bincount(labels[n:], minlength=num_clusters) / len(ref_data)
        curve = compute_prd(eval_hist, ref_hist, num_angles)
        precisions.append(curve.precision)
        recalls.append(curve.recall)
    return PRD(np.mean(precisions, axis=0), np.mean(recalls, axis=0))


def f_beta(precision: np.ndarray, recall: np.ndarray, beta: float,
           epsilon: float = EPSILON) -> np.ndarray:
    """F_β = (1 + β²) p r / (β² p + r + ε), elementwise."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    precision, recall = np.asarray(precision), np.asarray(recall)
    return (1 + beta**2) * precision * recall / (beta**2 * precision + recall + epsilon)


def prd_to_max_f_beta_pair(precision: np.ndarray, recall: np.ndarray,
                           beta: float = 8) -> tuple[float, float]:
    """(max F_β, max F_1/β) over a PRD curve: with β = 8, (F₈ ~ recall, F₁/₈ ~ precision)."""
    return (float(f_beta(precision, recall, beta).max()),
            float(f_beta(precision, recall, 1 / beta).max()))

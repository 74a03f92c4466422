"""The statistics of a loss comparison: best-of-k curves with bootstrap bands, and bootstrap
confidence intervals of differences between methods. All on scores oriented so that higher is
better (the report flips them back, e.g. to FID)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NUM_RESAMPLES = 1000


def expected_best_of_k(scores: Sequence[float], k: int) -> float:
    """E[max of k draws with replacement] from the empirical distribution of `scores`, exactly:
    Σ_i s_(i)·((i/n)^k − ((i−1)/n)^k) over the ascending order statistics s_(1..n)."""
    s = np.sort(np.asarray(scores, float))
    n = len(s)
    i = np.arange(1, n + 1)
    return float(np.sum(s * ((i / n) ** k - ((i - 1) / n) ** k)))


def best_of_k_curve(scores: Sequence[float], ks: Sequence[int], num_resamples: int = NUM_RESAMPLES,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each k: the mean and the 2.5/97.5 % percentiles of max over k settings drawn with
    replacement, over `num_resamples` resamples. Returns (mean, low, high), each [len(ks)]."""
    s = np.asarray(scores, float)
    rng = np.random.default_rng(seed)
    mean, low, high = [], [], []
    for k in ks:
        best = s[rng.integers(0, len(s), (num_resamples, k))].max(axis=1)
        mean.append(best.mean())
        lo, hi = np.percentile(best, [2.5, 97.5])
        low.append(lo)
        high.append(hi)
    return np.array(mean), np.array(low), np.array(high)


def difference_ci(a: Sequence[float], b: Sequence[float], k: int,
                  num_resamples: int = NUM_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """E[best of k](a) − E[best of k](b), and its 95 % bootstrap interval (resampling each
    method's settings with replacement). Returns (difference, low, high)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    diffs = np.empty(num_resamples)
    for r in range(num_resamples):
        ra = a[rng.integers(0, len(a), len(a))]
        rb = b[rng.integers(0, len(b), len(b))]
        diffs[r] = expected_best_of_k(ra, k) - expected_best_of_k(rb, k)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return expected_best_of_k(a, k) - expected_best_of_k(b, k), float(lo), float(hi)

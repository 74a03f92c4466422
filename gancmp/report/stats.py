"""The statistics of a loss comparison: best-of-k curves with bootstrap bands, bootstrap
confidence intervals of differences between methods, permutation tests of those differences,
Holm's step-down adjustment for testing many pairs, and Cliff's delta. Every function is
deterministic (seeded). The best-of-k functions work on scores oriented so that higher is better
(the report flips them back, e.g. to FID)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

NUM_RESAMPLES = 1000  # bootstrap resamples of an interval
NUM_PERMUTATIONS = 10_000  # random relabellings of a permutation test (exact when fewer)


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


def _expected_best_of_k_rows(x: np.ndarray, k: int) -> np.ndarray:
    """`expected_best_of_k` of every row of x [R, n]; returns [R]."""
    n = x.shape[1]
    i = np.arange(1, n + 1)
    return np.sort(x, axis=1) @ ((i / n) ** k - ((i - 1) / n) ** k)


def permutation_test(a: Sequence[float], b: Sequence[float], k: int,
                     num_permutations: int = NUM_PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided p-value of "a's and b's settings come from one distribution", by the statistic
    T = E[best of k](a) − E[best of k](b): the fraction of relabellings of the pooled len(a) +
    len(b) scores (len(a) of them to a) whose |T| is at least the observed |T|. Exact, over every
    relabelling, when there are at most `num_permutations` of them; otherwise
    (1 + #{|T*| ≥ |T|}) / (1 + num_permutations) over random ones from `seed` (valid: never
    below the exact p-value's level). Returns p in (0, 1]."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = np.concatenate([a, b])
    n, na = len(pooled), len(a)
    observed = abs(expected_best_of_k(a, k) - expected_best_of_k(b, k))
    if math.comb(n, na) <= num_permutations:
        to_a = np.array(list(itertools.combinations(range(n), na)), dtype=int).reshape(-1, na)
        mask = np.zeros((len(to_a), n), bool)
        np.put_along_axis(mask, to_a, True, axis=1)
        xa, xb = pooled[to_a], pooled[np.nonzero(~mask)[1].reshape(len(to_a), n - na)]
        extra = 0
    else:
        shuffled = np.random.default_rng(seed).permuted(np.tile(pooled, (num_permutations, 1)),
                                                        axis=1)
        xa, xb = shuffled[:, :na], shuffled[:, na:]
        extra = 1
    t = np.abs(_expected_best_of_k_rows(xa, k) - _expected_best_of_k_rows(xb, k))
    at_least = int(np.sum(t >= observed - 1e-9 * max(1.0, observed)))  # ties count, rounding aside
    return (at_least + extra) / (len(t) + extra)


def smallest_p_value(na: int, nb: int, num_permutations: int = NUM_PERMUTATIONS) -> float:
    """The smallest p-value `permutation_test` can return for samples of sizes na and nb: one
    relabelling in C(na + nb, na) when it is exact (two when na == nb: swapping the samples
    gives the same |T|), 1 / (1 + num_permutations) when it samples relabellings."""
    count = math.comb(na + nb, na)
    if count <= num_permutations:
        return (2 if na == nb else 1) / count
    return 1 / (1 + num_permutations)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of m p-values: with p_(1) ≤ … ≤ p_(m), the adjusted
    p_(i) = max over j ≤ i of min(1, (m − j + 1)·p_(j)). Rejecting where the adjusted p ≤ α keeps
    the probability of any false rejection ≤ α under any dependence between the tests.
    Returns [m], in the order given."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = stepped
    return out


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """Cliff's delta: P(x > y) − P(x < y) for x drawn from a and y from b, over all
    len(a)·len(b) pairs; in [−1, 1], 0 when neither tends to be larger. Scale-free and robust
    to outliers (a diverged setting counts as one low value, not as its size)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    sign = np.sign(a[:, None] - b[None, :])
    return float(sign.mean())

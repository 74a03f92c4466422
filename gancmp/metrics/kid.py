"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

KID is the squared maximum mean discrepancy between real and generated features under the cubic
polynomial kernel k(x, y) = (xᵀy / d + 1)³ (d: the feature dimension), estimated without bias:
for subsets X (m real) and Y (n generated)

    MMD²ᵤ = Σ_{i≠j} k(xᵢ, xⱼ) / (m(m−1)) + Σ_{i≠j} k(yᵢ, yⱼ) / (n(n−1))
            − 2 Σ_{i,j} k(xᵢ, yⱼ) / (mn).

As in the paper's code, the estimate is averaged over `num_subsets` random subsets of
`subset_size` samples of each set (drawn without replacement, independently per subset, from
one seeded generator), and the standard deviation over subsets is reported with the mean. The
unbiased estimate can be slightly negative when the distributions agree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class KID(NamedTuple):
    """Mean and standard deviation (ddof = 0) of the per-subset unbiased MMD² estimates."""

    mean: float
    std: float


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """(γ xᵀy + c)^degree for x [m, d], y [n, d] → [m, n] float64; γ defaults to 1/d."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                  coef0: float = 1.0) -> float:
    """Unbiased MMD² of samples x [m, d] and y [n, d] (m, n ≥ 2) under the polynomial kernel."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"MMD² needs at least 2 samples per set, got {m} and {n}")
    kxx = polynomial_kernel(x, x, degree, gamma, coef0)
    kyy = polynomial_kernel(y, y, degree, gamma, coef0)
    kxy = polynomial_kernel(x, y, degree, gamma, coef0)
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.sum() / (m * n))


def kernel_inception_distance(real_features: np.ndarray, fake_features: np.ndarray,
                              num_subsets: int = 100, subset_size: int = 1000, seed: int = 0,
                              degree: int = 3, gamma: float | None = None,
                              coef0: float = 1.0) -> KID:
    """KID of features real [m, d] and fake [n, d]: mean and std of the unbiased MMD² over
    `num_subsets` subsets of size min(`subset_size`, m, n) drawn from each set."""
    real = np.asarray(real_features, np.float64)
    fake = np.asarray(fake_features, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real_features and fake_features must be [n, d] with the same d, got "
                         f"{real.shape} and {fake.shape}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be positive, got {num_subsets}")
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set (subset_size={subset_size}, "
                         f"{len(real)} real, {len(fake)} fake)")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = real[rng.choice(len(real), size, replace=False)]
        y = fake[rng.choice(len(fake), size, replace=False)]
        values[i] = mmd2_unbiased(x, y, degree, gamma, coef0)
    return KID(float(values.mean()), float(values.std()))

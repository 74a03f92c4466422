"""FD∞ (Chong & Forsyth, CVPR 2020, "Effectively Unbiased FID and Inception Score and where to
find them"): the Fréchet distance extrapolated to infinitely many generated samples.

FD measured on N generated samples is biased upwards, the bias close to linear in 1/N:
FD_N ≈ FD∞ + c/N. As the authors' `calculate_FID_infinity`: the generated features are
shuffled, FD_N is measured on the first N of them for `num_points` values of N evenly spaced
from `min_n` to all of them (5,000 to 50,000 in the paper, 15 points; the int32 of
`np.linspace`), reshuffling before each, against the fixed real statistics; an ordinary
least-squares line of FD_N on 1/N is fitted and FD∞ is its value at 1/N = 0 (its intercept).

Each subset's mean and covariance are taken on the device (two-pass float32, as
`ondevice.moments`, one program for every N), the Fréchet distance's matrix square root
and the line fit on the host in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gancmp.metrics import fid, ondevice

MIN_N = 5_000  # the paper's smallest sample count
NUM_POINTS = 15  # the paper's number of sample counts


class FDInfinity(NamedTuple):
    """value: FD∞ (the intercept); slope: c of FD_N ≈ FD∞ + c/N; counts [P] and fds [P]: the
    sample counts and the FD measured at each."""

    value: float
    slope: float
    counts: np.ndarray
    fds: np.ndarray


def extrapolate(counts: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line of `values` [P] on 1/`counts` [P] (P ≥ 2
    distinct counts), in float64: the value at 1/N = 0 and the coefficient of 1/N."""
    inv = 1.0 / np.asarray(counts, np.float64)
    y = np.asarray(values, np.float64)
    if len(np.unique(inv)) < 2 or inv.shape != y.shape:
        raise ValueError(f"a line needs values at 2 or more distinct counts, got counts "
                         f"{list(np.asarray(counts))}")
    design = np.stack([np.ones_like(inv), inv], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(intercept), float(slope)


def sample_counts(n: int, min_n: int = MIN_N, num_points: int = NUM_POINTS) -> np.ndarray:
    """The paper's counts: `num_points` evenly spaced from `min_n` to n, as int32."""
    if num_points < 2 or not 2 <= min_n < n:
        raise ValueError(f"FD∞ needs num_points >= 2 and 2 <= min_n < n, got num_points="
                         f"{num_points}, min_n={min_n}, n={n} generated samples")
    return np.linspace(min_n, n, num_points).astype(np.int32)


@jax.jit
def _first_moments(x: jax.Array, count: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(μ [d], Σ [d, d]) of the first `count` rows of x [n, d] (two-pass float32, as
    `ondevice.moments`); one program for every count."""
    keep = (jnp.arange(x.shape[0]) < count)[:, None]
    mu = jnp.where(keep, x, 0.0).sum(0) / count
    xc = jnp.where(keep, x - mu, 0.0)
    return mu, jnp.dot(xc.T, xc, precision=ondevice.HIGHEST) / (count - 1)


def fd_infinity(real_mu: np.ndarray, real_sigma: np.ndarray, fake_features: np.ndarray, *,
                min_n: int = MIN_N, num_points: int = NUM_POINTS, seed: int = 0
                ) -> FDInfinity:
    """FD∞ of generated features [n, d] against real statistics μ [d], Σ [d, d] (module
    docstring); the shuffles drawn from `seed`. `min_n` must exceed d (FD needs a non-singular
    covariance)."""
    feats = np.asarray(fake_features, np.float32)
    counts = sample_counts(len(feats), min_n, num_points)
    if counts[0] <= feats.shape[1]:
        raise ValueError(f"min_n={min_n} must exceed the feature dimension {feats.shape[1]}")
    rng = np.random.default_rng(seed)
    device = jnp.asarray(feats)
    fds = []
    for count in counts:
        order = jnp.asarray(rng.permutation(len(feats)))
        mu, sigma = jax.device_get(_first_moments(device[order], jnp.float32(count)))
        fds.append(fid.frechet_distance(real_mu, real_sigma, mu, sigma))
    fds = np.asarray(fds)
    value, slope = extrapolate(counts, fds)
    return FDInfinity(value, slope, counts, fds)

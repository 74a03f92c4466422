"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
Generative Models"), with prdc's precision and recall, on feature vectors, on the device.

Real sample i has radius rᵢ, the Euclidean distance to its k-th nearest other real sample
(k = 5, the paper's and prdc's default); generated sample j has radius sⱼ likewise among the
generated. With dᵢⱼ the real-generated distance, as prdc's `compute_prdc`:

    precision = (1/N) Σⱼ 1[∃i: dᵢⱼ < rᵢ]             (generated inside the real manifold)
    recall    = (1/M) Σᵢ 1[∃j: dᵢⱼ < sⱼ]             (real inside the generated manifold)
    density   = (1/(kN)) Σⱼ Σᵢ 1[dᵢⱼ < rᵢ]           (can exceed 1)
    coverage  = (1/M) Σᵢ 1[minⱼ dᵢⱼ < rᵢ]

Comparisons are strict (prdc's `<`; `precision_recall`'s improved precision/recall, k = 3, use
`≤`). Squared distances are compared (the same order), computed as ‖a‖² − 2aᵀb + ‖b‖² in
float32 at full matmul precision (`ondevice`), in row blocks of generated samples, so memory is
O(block × M); the counts are integers, and the means are taken on the host in float64.
Argument order: real first, then generated (prdc's `compute_prdc(real, fake, nearest_k)`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gancmp.metrics import ondevice

K = 5  # the paper's k


class PRDC(NamedTuple):
    precision: float
    recall: float
    density: float
    coverage: float


def check_features(real: np.ndarray, fake: np.ndarray, k: int) -> None:
    """ValueError unless real [M, d] and fake [N, d] share d and both have more than k rows."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features must be [n, d] with the same d, got "
                         f"{real.shape} and {fake.shape}")
    if k < 1 or min(len(real), len(fake)) <= k:
        raise ValueError(f"k={k} nearest neighbours need k >= 1 and more than k samples per "
                         f"set, got {len(real)} real and {len(fake)} generated")


@functools.partial(jax.jit, static_argnames=("k", "block"))
def prdc_counts(real: jax.Array, fake: jax.Array, k: int = K, block: int = ondevice.BLOCK,
                real_r2: jax.Array | None = None) -> dict[str, jax.Array]:
    """The integer counts behind `prdc` of real [M, d] and fake [N, d] (traceable):
    {"precision", "density", "recall", "coverage"}, int32 sums of the indicators of the
    module docstring (density's is the double sum). `real_r2` [M]: the real side's squared
    k-NN radii when already known (`ondevice.knn_radii_sq(real, k)`; the same for every
    generator)."""
    real, fake = real.astype(jnp.float32), fake.astype(jnp.float32)
    if real_r2 is None:
        real_r2 = ondevice.knn_radii_sq(real, k, block)
    fake_r2 = ondevice.knn_radii_sq(fake, k, block)
    real_sq = (real * real).sum(1)
    blocks, valid = ondevice._blocks(fake, block)
    r2_blocks = ondevice._blocks(fake_r2[:, None], block)[0][..., 0]

    def one(carry, args):  # one block of generated rows against every real row
        covered, nearest = carry
        rows, ok, s2 = args
        d = ondevice._sq_from_gram(rows, ondevice._dot_t(rows, real), real_sq)  # [b, M]
        inside = (d < real_r2[None, :]) & ok[:, None]
        covered = covered | ((d < s2[:, None]) & ok[:, None]).any(0)
        nearest = jnp.minimum(nearest, jnp.where(ok[:, None], d, jnp.inf).min(0))
        return (covered, nearest), (inside.any(1).sum(), inside.sum())

    init = (jnp.zeros(real.shape[0], bool), jnp.full(real.shape[0], jnp.inf, jnp.float32))
    (covered, nearest), (precise, dense) = jax.lax.scan(one, init, (blocks, valid, r2_blocks))
    return {"precision": precise.sum(), "density": dense.sum(), "recall": covered.sum(),
            "coverage": (nearest < real_r2).sum()}


def prdc(real_features: np.ndarray, fake_features: np.ndarray, k: int = K,
         block: int = ondevice.BLOCK) -> PRDC:
    """Precision, recall, density and coverage of generated features fake [N, d] against real
    [M, d] (module docstring), computed on the default device."""
    real = np.asarray(real_features)
    fake = np.asarray(fake_features)
    check_features(real, fake, k)
    counts = jax.device_get(prdc_counts(jnp.asarray(real, jnp.float32),
                                        jnp.asarray(fake, jnp.float32), k, block))
    m, n = len(real), len(fake)
    return PRDC(float(counts["precision"]) / n, float(counts["recall"]) / m,
                float(counts["density"]) / (k * n), float(counts["coverage"]) / m)

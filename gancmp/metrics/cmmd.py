"""CMMD (Jayasumana et al., CVPR 2024, "Rethinking FID: Towards a Better Evaluation Metric for
Image Generation"): the maximum mean discrepancy between CLIP embeddings of real and generated
images under a Gaussian RBF kernel, on the device.

    k(x, y) = exp(−‖x − y‖² / (2σ²)),  σ = 10
    CMMD    = 1000 · (mean_{i,i'} k(xᵢ, xᵢ') + mean_{j,j'} k(yⱼ, yⱼ') − 2 mean_{i,j} k(xᵢ, yⱼ))

as the paper states it and its released code computes it: σ = 10 (`_SIGMA`), the scale 1000
(`_SCALE`, "for readability"), the means over all pairs, the diagonal included (the V-statistic,
not KID's unbiased form), every sample used (no subsets). The embeddings are CLIP ViT-L/14@336px
image embeddings normalised to unit length (the paper's `embedding.py` divides by the norm), so
`cmmd` normalises its inputs unless told not to (a no-op on embeddings already unit length).

Numerics: on unit vectors every kernel value lies in [e^(−0.02), 1], so the three means are near
1 and CMMD is a small difference of them. Each block therefore sums k − 1 = expm1(−‖x − y‖²/2σ²)
(no cancellation: its float32 rounding is relative to k − 1, not to 1), the squared distances
as ‖a‖² − 2aᵀb + ‖b‖² clipped at 0 at full float32 matmul precision, in row blocks (memory
O(block × n)); the blocks' sums are added and combined on the host in float64 (the constant 1s
cancel exactly: 1 + 1 − 2 = 0).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gancmp.metrics import ondevice

SIGMA = 10.0
SCALE = 1000.0


@functools.partial(jax.jit, static_argnames=("sigma", "block"))
def kernel_sum_minus_one(a: jax.Array, b: jax.Array, sigma: float = SIGMA,
                         block: int = ondevice.BLOCK) -> jax.Array:
    """Σ_{i,j} (k(aᵢ, bⱼ) − 1) of a [m, d] and b [n, d], as per-block partial sums
    [blocks] float32 (add them in float64)."""
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    gamma = 1.0 / (2.0 * sigma * sigma)
    b_sq = (b * b).sum(1)
    blocks, valid = ondevice._blocks(a, block)

    def one(args):
        rows, ok = args
        d = ondevice._sq_from_gram(rows, ondevice._dot_t(rows, b), b_sq)
        return jnp.where(ok[:, None], jnp.expm1(-gamma * d), 0.0).sum()

    return jax.lax.map(one, (blocks, valid))


def _mean_minus_one(a: jax.Array, b: jax.Array, sigma: float, block: int) -> float:
    sums = np.asarray(jax.device_get(kernel_sum_minus_one(a, b, sigma, block)), np.float64)
    return float(sums.sum()) / (a.shape[0] * b.shape[0])


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows of x [n, d] divided by their Euclidean norm (float64)."""
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cmmd(real_features: np.ndarray, fake_features: np.ndarray, *, sigma: float = SIGMA,
         scale: float = SCALE, unit_norm: bool = True, block: int = ondevice.BLOCK) -> float:
    """CMMD of real [m, d] and generated [n, d] embeddings (module docstring): `scale` times the
    (biased, all-pairs) MMD² under the RBF kernel of bandwidth `sigma`; `unit_norm`: normalise
    each row first, as the paper's embeddings are. Symmetric in its arguments."""
    x = np.asarray(real_features)
    y = np.asarray(fake_features)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 1:
        raise ValueError(f"real and fake features must be non-empty [n, d] with the same d, "
                         f"got {x.shape} and {y.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if unit_norm:
        x, y = normalize(x), normalize(y)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    xx = _mean_minus_one(x, x, sigma, block)
    yy = _mean_minus_one(y, y, sigma, block)
    xy = _mean_minus_one(x, y, sigma, block)
    return scale * (xx + yy - 2 * xy)

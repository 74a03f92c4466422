"""FID statistics, KID, improved precision/recall and the Inception Score's sums as jnp programs
on the device, in float32: the same definitions as `fid`, `kid`, `precision_recall` and
`inception_score` (their numpy float64 versions are the references the tests compare with).

Numerics (float32 throughout, every matmul at `Precision.HIGHEST`):
- Mean and covariance are two-pass: the mean first, then the centred scatter (x − μ)ᵀ(x − μ),
  so no raw second moment cancels; the Fréchet distance's matrix square root stays in float64 on
  the host (`fid.frechet_distance`).
- KID subtracts the kernel's constant term c₀^degree from every kernel value before summing
  (MMD² is unchanged: its three means have weights 1, 1, −2) and expands (a + c₀)^p − c₀^p
  without cancellation, so the sums carry only the informative part; per-subset MMD² values
  go to the host, which takes their mean and std in float64.
- Squared distances are ‖a‖² − 2aᵀb + ‖b‖² clipped at 0, in row blocks, as the numpy version;
  precision/recall and KID share the Gram blocks (`precision_recall_kid`).
Sample sets are processed in row blocks of `block` (padded, the padding masked), so memory is
O(block × n) whatever n.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST
BLOCK = 1024  # rows per distance block


def _dot_t(a: jax.Array, b: jax.Array) -> jax.Array:
    """a [m, d] · b [n, d]ᵀ → [m, n] at full float32 precision."""
    return jnp.dot(a, b.T, precision=HIGHEST)


def moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(μ [d], Σ [d, d]) of features x [n, d] (n ≥ 2): mean and unbiased (ddof = 1) covariance,
    two-pass in float32."""
    x = x.astype(jnp.float32)
    mu = jnp.mean(x, axis=0)
    xc = x - mu
    return mu, jnp.dot(xc.T, xc, precision=HIGHEST) / (x.shape[0] - 1)


def _blocks(x: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
    """x [n, d] → (x zero-padded to a multiple of `block` rows, reshaped [n_blocks, block, d];
    validity [n_blocks, block])."""
    n = x.shape[0]
    block = min(block, n)
    pad = -n % block
    xp = jnp.concatenate([x, jnp.zeros((pad, x.shape[1]), x.dtype)]) if pad else x
    valid = jnp.arange(n + pad) < n
    return xp.reshape(-1, block, x.shape[1]), valid.reshape(-1, block)


def _sq_from_gram(a: jax.Array, g: jax.Array, b_sq: jax.Array) -> jax.Array:
    """Squared distances [m, n] of rows a [m, d] to rows b [n, d] from their inner products
    g = a bᵀ [m, n] and ‖b‖² [n]: ‖a‖² − 2g + ‖b‖², clipped at 0."""
    return jnp.maximum((a * a).sum(1)[:, None] - 2 * g + b_sq[None, :], 0)


@functools.partial(jax.jit, static_argnames=("k", "block"))
def knn_radii_sq(x: jax.Array, k: int = 3, block: int = BLOCK) -> jax.Array:
    """Squared distance of each row of x [n, d] to its k-th nearest other row → [n] float32
    (`precision_recall.knn_radii` squared)."""
    x = x.astype(jnp.float32)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and n - 1 = {n - 1}, got {k}")
    x_sq = (x * x).sum(1)
    blocks, _ = _blocks(x, block)
    b = blocks.shape[1]

    def one(args):
        i, rows = args
        d = _sq_from_gram(rows, _dot_t(rows, x), x_sq)
        own = i * b + jnp.arange(b)  # a sample is not its own neighbour
        d = jnp.where(own[:, None] == jnp.arange(n)[None, :], jnp.inf, d)
        return -jax.lax.top_k(-d, k)[0][:, k - 1]

    radii = jax.lax.map(one, (jnp.arange(blocks.shape[0]), blocks))
    return radii.reshape(-1)[:n]


def _kernel_minus_constant(g: jax.Array, gamma: float, coef0: float, degree: int) -> jax.Array:
    """(γ g + c₀)^p − c₀^p, expanded as Σ_{j ≥ 1} C(p, j) (γ g)^j c₀^(p−j) (no cancellation)."""
    a = gamma * g
    out = jnp.zeros_like(a)
    for j in range(degree, 0, -1):  # Horner in a: a (C(p,1) c₀^(p−1) + a (C(p,2) c₀^(p−2) + …))
        out = a * (math.comb(degree, j) * coef0 ** (degree - j) + out)
    return out


def _offdiag_mean(kxx: jax.Array) -> jax.Array:
    m = kxx.shape[0]
    return (kxx.sum() - jnp.trace(kxx)) / (m * (m - 1))


def kid_subsets(seed: int, num_subsets: int, subset_size: int, m: int, n: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The subsets `kid.kernel_inception_distance` draws (same generator, same order): real
    indices [num_subsets, size] into m, fake indices [num_subsets, size] into n, int32, with
    size = min(subset_size, m, n)."""
    size = min(subset_size, m, n)
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set (subset_size={subset_size}, "
                         f"{m} real, {n} fake)")
    rng = np.random.default_rng(seed)
    real, fake = [], []
    for _ in range(num_subsets):
        real.append(rng.choice(m, size, replace=False))
        fake.append(rng.choice(n, size, replace=False))
    return np.asarray(real, np.int32), np.asarray(fake, np.int32)


@functools.partial(jax.jit, static_argnames=("degree", "gamma", "coef0"))
def kid_real_terms(real: jax.Array, real_idx: jax.Array, degree: int = 3,
                   gamma: float | None = None, coef0: float = 1.0) -> jax.Array:
    """The real-real term of each subset's MMD², minus c₀^p: [num_subsets] float32. The same
    for every generator, so computed once per dataset."""
    real = real.astype(jnp.float32)
    gamma = 1.0 / real.shape[1] if gamma is None else gamma

    def one(idx):
        x = real[idx]
        return _offdiag_mean(_kernel_minus_constant(_dot_t(x, x), gamma, coef0, degree))

    return jax.lax.map(one, real_idx)


def subset_masks(idx: np.ndarray, n: int) -> np.ndarray:
    """Subset indices [S, size] into n → membership [S, n] float32 (1 where in the subset)."""
    mask = np.zeros((len(idx), n), np.float32)
    np.put_along_axis(mask, np.asarray(idx), 1.0, axis=1)
    return mask


class FakeMetrics(NamedTuple):
    """Improved precision and recall (float32 scalars) and the per-subset unbiased MMD² of KID
    ([S] float32; KID is their mean, with their std)."""

    precision: jax.Array
    recall: jax.Array
    kid_values: jax.Array


@functools.partial(jax.jit, static_argnames=("k", "degree", "gamma", "coef0", "block"))
def precision_recall_kid(real: jax.Array, real_r2: jax.Array, real_terms: jax.Array,
                         real_mask: jax.Array, fake: jax.Array, fake_mask: jax.Array,
                         k: int = 3, degree: int = 3, gamma: float | None = None,
                         coef0: float = 1.0, block: int = BLOCK) -> FakeMetrics:
    """Improved precision and recall (Kynkäänniemi et al. 2019) and KID of fake [n, d] against
    real [m, d], from one pass over each Gram matrix, traceable.

    The real side is computed once per dataset: `real_r2` [m] its squared k-NN radii
    (`knn_radii_sq(real, k)`), `real_terms` [S] each KID subset's real-real term
    (`kid_real_terms`), `real_mask` [S, m] and `fake_mask` [S, n] the subsets as membership
    (`subset_masks` of `kid_subsets`). Precision/recall need every fake-fake and fake-real
    inner product; KID's subsets (S of q samples of each set) use only some of them, so each
    subset's kernel sums are read off the same Gram blocks through the masks
    (Σ_{i,j∈s} k_ij = a_sᵀ K b_s, an extra S·n·(n + m) multiply-adds instead of a second
    S·q²·d pass per set)."""
    real, fake = real.astype(jnp.float32), fake.astype(jnp.float32)
    gamma = 1.0 / real.shape[1] if gamma is None else gamma
    kern = functools.partial(_kernel_minus_constant, gamma=gamma, coef0=coef0, degree=degree)
    n, q = fake.shape[0], fake_mask[0].sum()
    fake_sq, real_sq = (fake * fake).sum(1), (real * real).sum(1)
    blocks, valid = _blocks(fake, block)
    b = blocks.shape[1]
    masks = _blocks(fake_mask.T, block)[0]  # [n_blocks, b, S]

    def fake_fake(args):  # one row block: squared k-NN radii, and KID's fake-fake sums
        i, rows, m_rows = args
        g = _dot_t(rows, fake)
        d = _sq_from_gram(rows, g, fake_sq)
        own = i * b + jnp.arange(b)
        d = jnp.where(own[:, None] == jnp.arange(n)[None, :], jnp.inf, d)
        yy = (jnp.dot(kern(g), fake_mask.T, precision=HIGHEST) * m_rows).sum(0)
        return -jax.lax.top_k(-d, k)[0][:, k - 1], yy

    radii, yy = jax.lax.map(fake_fake, (jnp.arange(blocks.shape[0]), blocks, masks))
    fake_r2 = _blocks(radii.reshape(-1)[:n, None], block)[0][..., 0]
    diag = jnp.dot(fake_mask, kern(fake_sq), precision=HIGHEST)  # k(y, y) of each subset

    def fake_real(real_inside, args):  # one row block: precision, recall, KID's cross sums
        rows, ok, r2, m_rows = args
        g = _dot_t(rows, real)
        d = _sq_from_gram(rows, g, real_sq)
        inside = ((d <= real_r2[None, :]).any(1) & ok).sum()
        covered = ((d <= r2[:, None]) & ok[:, None]).any(0)
        xy = (jnp.dot(kern(g), real_mask.T, precision=HIGHEST) * m_rows).sum(0)
        return real_inside | covered, (inside, xy)

    real_inside, (fake_inside, xy) = jax.lax.scan(
        fake_real, jnp.zeros(real.shape[0], bool), (blocks, valid, fake_r2, masks))
    kid = (real_terms + (yy.sum(0) - diag) / (q * (q - 1)) - 2 * xy.sum(0) / (q * q))
    return FakeMetrics(fake_inside.sum() / n, real_inside.mean(), kid)


def is_split_sums(logits: jax.Array, index: jax.Array, num: int, num_splits: int
                  ) -> tuple[jax.Array, jax.Array]:
    """The Inception Score's sufficient statistics of a chunk of samples: logits [b, classes]
    of the samples with global indices `index` [b] among `num` → (Σ p(y|x) per split
    [num_splits, classes], Σ_x Σ_y p log p per split [num_splits]), float32. Splits are
    `inception_score`'s: contiguous, of ⌊num / num_splits⌋ samples (the rest, and indices ≥
    num, count in none). Add the chunks' sums; `inception_score_from_sums` finishes."""
    p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    plogp = jax.scipy.special.xlogy(p, p).sum(-1)
    size = num // num_splits
    split = jnp.where(index < size * num_splits, index // max(size, 1), num_splits)
    onehot = jax.nn.one_hot(split, num_splits, dtype=jnp.float32)  # [b, splits]; rest: zeros
    return (jnp.dot(onehot.T, p, precision=HIGHEST), jnp.dot(onehot.T, plogp, precision=HIGHEST))


def inception_score_from_sums(p_sum: np.ndarray, plogp_sum: np.ndarray, num: int
                              ) -> tuple[float, float]:
    """(mean, std) of the per-split Inception Scores exp(E_x KL(p(y|x) ‖ p(y))) from
    `is_split_sums` totals [splits, classes], [splits] of `num` samples, in float64:
    E_x KL = E_x Σ_y p log p − Σ_y p̄ log p̄ with p̄ = E_x p."""
    size = num // len(plogp_sum)
    py = np.asarray(p_sum, np.float64) / size
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = np.where(py > 0, py * np.log(py), 0.0).sum(1)
    scores = np.exp(np.asarray(plogp_sum, np.float64) / size - ent)
    return float(scores.mean()), float(scores.std())

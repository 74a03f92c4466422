"""Improved precision and recall (Kynkäänniemi et al. 2019), on feature vectors.

Each set's manifold is the union of balls around its samples, the radius of sample i being the
Euclidean distance to its k-th nearest neighbour within its own set (k = 3; the sample itself
does not count). Then

    precision = fraction of generated samples inside the real manifold,
    recall    = fraction of real samples inside the generated manifold,

"inside" meaning within the radius (≤) of at least one sample of the other set. Distances are
computed in float64 blocks of `batch_size` rows (‖a‖² − 2aᵀb + ‖b‖², clipped at 0), so memory
stays O(batch_size × n).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


def _sq_dist_blocks(a: np.ndarray, b: np.ndarray, batch_size: int):
    """Yields (start, squared distances [rows, len(b)]) for row blocks of a."""
    b_sq = (b * b).sum(1)
    for start in range(0, len(a), batch_size):
        block = a[start:start + batch_size]
        d = (block * block).sum(1)[:, None] - 2 * block @ b.T + b_sq[None, :]
        yield start, np.maximum(d, 0)


def knn_radii(features: np.ndarray, k: int = 3, batch_size: int = 1024) -> np.ndarray:
    """Distance of each row of features [n, d] to its k-th nearest other row → [n]."""
    x = np.asarray(features, np.float64)
    if not 1 <= k < len(x):
        raise ValueError(f"k must be between 1 and n - 1 = {len(x) - 1}, got {k}")
    radii = np.empty(len(x))
    for start, d in _sq_dist_blocks(x, x, batch_size):
        rows = np.arange(d.shape[0])
        d[rows, start + rows] = np.inf  # a sample is not its own neighbour
        radii[start:start + len(d)] = np.sqrt(np.partition(d, k - 1, axis=1)[:, k - 1])
    return radii


def precision_recall(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3,
                     batch_size: int = 1024) -> PrecisionRecall:
    """Improved precision and recall of generated features fake [n, d] against real [m, d]."""
    real = np.asarray(real_features, np.float64)
    fake = np.asarray(fake_features, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real_features and fake_features must be [n, d] with the same d, got "
                         f"{real.shape} and {fake.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    real_r2 = knn_radii(real, k, batch_size) ** 2
    fake_r2 = knn_radii(fake, k, batch_size) ** 2
    fake_inside = np.zeros(len(fake), bool)  # within some real sample's radius
    real_inside = np.zeros(len(real), bool)  # within some generated sample's radius
    for start, d in _sq_dist_blocks(fake, real, batch_size):  # one pass over the cross distances
        fake_inside[start:start + len(d)] = (d <= real_r2[None, :]).any(1)
        real_inside |= (d <= fake_r2[start:start + len(d), None]).any(0)
    return PrecisionRecall(float(fake_inside.mean()), float(real_inside.mean()))

"""Fréchet Inception Distance: streaming feature statistics, the Fréchet distance, and reference
statistics of a dataset cached on disk.

    extractor = FeatureExtractor.from_file("inception.npz", preprocess="tf1_legacy")
    ref = reference_statistics(lambda: test_images, extractor, dataset="cifar10", split="test",
                               num_real=10_000, cache_dir="~/.cache/gancmp")
    stats = compute_statistics(generated_images, extractor)
    fid = frechet_distance(ref.mu, ref.sigma, *stats.statistics())

FID = ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁Σ₂)^½) (Heusel et al. 2017), on pool3 features of the
FID Inception-v3, with Σ the unbiased (ddof = 1) sample covariance, as TTUR and pytorch-fid.

Matrix square root: the default (`method="eigh"`) uses that for any factor C with C Cᵀ = Σ₁,
Σ₁Σ₂ = C (Cᵀ Σ₂) is similar to the symmetric positive semi-definite M = Cᵀ Σ₂ C (same non-zero
eigenvalues), so tr((Σ₁Σ₂)^½) = Σᵢ √λᵢ(M), the λᵢ from a symmetric eigensolver
(`numpy.linalg.eigvalsh`, float64); eigenvalues that rounding makes slightly negative are set
to 0. C is the Cholesky factor of Σ₁, or, when Σ₁ is singular, its symmetric square root Σ₁^½
(from `eigh`). This needs no regularising offset, never produces an imaginary part, and is exact
on the closed forms the tests check.
`method="sqrtm"` is pytorch-fid's computation instead (`scipy.linalg.sqrtm(Σ₁Σ₂)`; when the
result is not finite, retried with ε = 1e-6 added to both diagonals; an imaginary part larger
than 1e-3 on the diagonal is an error, a smaller one is dropped). On well-conditioned
covariances the two agree to rounding.

Sample counts: with n samples the covariance has rank ≤ n − 1, so fewer samples than the
feature dimension give a singular covariance and a biased, meaningless FID. `statistics()` and
the functions here raise `ValueError` for n < d instead of returning such a number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, MutableMapping
from typing import Any

import numpy as np

from gancmp import storage
from gancmp.metrics.features import FeatureExtractor  # re-exported: the stable API

__all__ = [
    "FeatureExtractor",
    "FeatureStats",
    "ReferenceStats",
    "compute_statistics",
    "fid_provenance",
    "frechet_distance",
    "reference_statistics",
    "statistics_sha256",
    "statistics_with_logits",
]

SQRT_METHODS = ("eigh", "sqrtm")
REFERENCE_FORMAT = "gancmp-fid-reference"
REFERENCE_VERSION = 1
CHUNK = 1_000  # images per extractor call when streaming a dataset through it


class FeatureStats:
    """Mean and covariance of features [n, d], accumulated batch by batch in float64.

    Batches are merged with the pairwise update of Chan et al. (count, mean, and the centred
    scatter matrix M = Σ (x − μ)(x − μ)ᵀ), so the result equals `np.cov` of all features
    concatenated (`rowvar=False`, ddof = 1) up to float64 rounding, whatever the batching, and
    never suffers the cancellation of accumulating raw second moments.
    """

    def __init__(self, dim: int | None = None):
        self.dim = dim
        self.n = 0
        self._mean: np.ndarray | None = None
        self._scatter: np.ndarray | None = None

    def update(self, features: np.ndarray) -> FeatureStats:
        """Adds features [b, d] (any float dtype; b may be 0). Returns self."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be [batch, dim], got shape {x.shape}")
        if self.dim is None:
            self.dim = x.shape[1]
        if x.shape[1] != self.dim:
            raise ValueError(f"features have dim {x.shape[1]}, earlier batches {self.dim}")
        b = x.shape[0]
        if b == 0:
            return self
        if not np.all(np.isfinite(x)):
            raise ValueError("features contain NaN or inf")
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        scatter_b = centred.T @ centred
        if self.n == 0:
            self.n, self._mean, self._scatter = b, mean_b, scatter_b
            return self
        n = self.n + b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (b / n)
        self._scatter = self._scatter + scatter_b + np.outer(delta, delta) * (self.n * b / n)
        self.n = n
        return self

    @property
    def mean(self) -> np.ndarray:
        """μ [d], float64."""
        if self.n == 0:
            raise ValueError("no features accumulated")
        return self._mean.copy()

    def covariance(self) -> np.ndarray:
        """Σ [d, d], float64, unbiased (divides by n − 1, as `np.cov`). Needs n ≥ 2."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.n}")
        return self._scatter / (self.n - 1)

    def statistics(self, min_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(μ [d], Σ [d, d]) for a Fréchet distance. Raises ValueError when n < `min_samples`
        (default: the feature dimension d; below it Σ is singular and the FID meaningless)."""
        need = self.dim if min_samples is None else min_samples
        if self.n < max(need or 0, 2):
            raise ValueError(
                f"too few samples for FID statistics: {self.n} samples of {self.dim}-d features; "
                f"need at least {max(need or 0, 2)} (the feature dimension), e.g. raise "
                "eval.num_samples or fid.num_real")
        return self.mean, self.covariance()


def _check_stats(mu: Any, sigma: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, np.float64))
    if mu.ndim != 1:
        raise ValueError(f"mu{name} must be a vector [d], got shape {mu.shape}")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise ValueError(f"sigma{name} must be [{d}, {d}] to match mu{name}, got {sigma.shape}")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"mu{name} and sigma{name} must be finite")
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding eigenvalues → 0)."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: str = "eigh") -> float:
    """tr((Σ₁Σ₂)^½) of two covariance matrices [d, d] (see the module docstring for `method`)."""
    if method == "eigh":
        try:  # Σ₁ = L Lᵀ: Σ₁Σ₂ is similar to Lᵀ Σ₂ L; far cheaper than an eigendecomposition
            factor = np.linalg.cholesky((sigma1 + sigma1.T) / 2)
        except np.linalg.LinAlgError:  # singular Σ₁: its symmetric square root instead
            factor = _psd_sqrt(sigma1)
        m = factor.T @ sigma2 @ factor
        w = np.linalg.eigvalsh((m + m.T) / 2)
        return float(np.sqrt(np.clip(w, 0, None)).sum())
    if method == "sqrtm":
        from scipy import linalg

        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.all(np.isfinite(covmean)):
            offset = np.eye(sigma1.shape[0]) * 1e-6
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if np.iscomplexobj(covmean):
            imag = np.max(np.abs(np.diagonal(covmean).imag))
            if imag > 1e-3:
                raise ValueError(f"matrix square root has an imaginary component {imag:.3g}")
            covmean = covmean.real
        return float(np.trace(covmean))
    raise ValueError(f"unknown method {method!r}; allowed: {', '.join(SQRT_METHODS)}")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     method: str = "eigh") -> float:
    """Fréchet distance between the Gaussians N(μ₁, Σ₁) and N(μ₂, Σ₂), μ [d], Σ [d, d].

    ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁Σ₂)^½), in float64. `method`: "eigh" (default,
    symmetric eigen form) or "sqrtm" (pytorch-fid's scipy computation). The result is clipped
    at 0 (rounding can make FID(X, X) a tiny negative number).
    """
    mu1, sigma1 = _check_stats(mu1, sigma1, "1")
    mu2, sigma2 = _check_stats(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 differ in dimension: {mu1.shape} vs {mu2.shape}")
    if method not in SQRT_METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(SQRT_METHODS)}")
    diff = mu1 - mu2
    tr = trace_sqrt_product(sigma1, sigma2, method)
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr)
    return max(value, 0.0)


def _as_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] → float32 [0, 1]; float images unchanged (as float32)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32, copy=False)


def compute_statistics(images: np.ndarray, extractor: Callable[[np.ndarray], np.ndarray],
                       chunk: int = CHUNK, keep_features: bool = False
                       ) -> tuple[FeatureStats, np.ndarray | None]:
    """Streams images [N, H, W, C] (float in [0, 1], or uint8) through `extractor` `chunk` at a
    time. Returns (FeatureStats, features [N, d] float32 if `keep_features` else None)."""
    stats, features, _ = _stream(images, lambda x: (extractor(x), None), chunk, keep_features)
    return stats, features


def statistics_with_logits(images: np.ndarray, extractor, chunk: int = CHUNK
                           ) -> tuple[FeatureStats, np.ndarray, np.ndarray]:
    """As `compute_statistics` with `keep_features`, and the classifier's logits too, from the
    same network pass (`FeatureExtractor.features_and_logits`): (FeatureStats, features [N, d]
    float32, logits [N, classes] float32)."""
    return _stream(images, extractor.features_and_logits, chunk, True)


def _stream(images, fn, chunk: int, keep_features: bool):
    """Streams images through `fn` (images → (features, logits or None)) `chunk` at a time:
    (FeatureStats, the features or None, the logits or None)."""
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    stats = FeatureStats()
    kept, logits = [], []
    for start in range(0, len(images), chunk):
        feats, lg = fn(_as_float_images(images[start:start + chunk]))
        feats = np.asarray(feats)
        stats.update(feats)
        if keep_features:
            kept.append(feats.astype(np.float32))
        if lg is not None:
            logits.append(np.asarray(lg, np.float32))
    features = np.concatenate(kept) if keep_features and kept else None
    return stats, features, np.concatenate(logits) if logits else None


def statistics_sha256(mu: np.ndarray, sigma: np.ndarray) -> str:
    """Hex sha256 of μ and Σ as float64 little-endian bytes (their shapes included)."""
    h = hashlib.sha256()
    for a in (mu, sigma):
        a = np.ascontiguousarray(a, dtype="<f8")
        h.update(json.dumps(list(a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class ReferenceStats:
    """Statistics of real images: μ [d], Σ [d, d] (float64), the features [n, d] (float32; None
    when not kept), the number of images, the cache key fields, the sha256 of (μ, Σ) and the
    cache file (None when not cached)."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None
    num: int
    key: dict[str, Any]
    sha256: str
    path: str | None


def reference_key(extractor_provenance: dict[str, Any], dataset: str, split: str,
                  num_real: int) -> dict[str, Any]:
    """What identifies reference statistics: dataset, split, num_real, the weights sha256
    (their source when there is no hash, as for random test weights), the preprocessing, and
    the Inception's matmul precision when it is not full float32."""
    weights = extractor_provenance.get("weights_sha256")
    key = {"format": REFERENCE_FORMAT, "version": REFERENCE_VERSION, "dataset": dataset,
           "split": split, "num_real": int(num_real), "weights_sha256": weights,
           "weights_source": None if weights else extractor_provenance.get("weights_source"),
           "preprocess": extractor_provenance.get("preprocess")}
    precision = extractor_provenance.get("precision")
    if precision not in (None, "highest"):  # full float32 keeps the keys (and files) of before
        key["precision"] = precision
    return key


def reference_path(key: dict[str, Any], cache_dir: str) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    # any network's preprocessing names the file: characters a file name must not hold become
    # "-" (the Inception's modes have none, so their files keep their names)
    preprocess = re.sub(r"[^A-Za-z0-9_.-]", "-", str(key["preprocess"]))
    name = f"fid_ref_{key['dataset']}_{key['split']}_{key['num_real']}_{preprocess}"
    return os.path.join(os.path.expanduser(cache_dir), f"{name}_{digest}.npz")


def _save_reference(path: str, ref: ReferenceStats) -> None:
    arrays = {"mu": ref.mu, "sigma": ref.sigma, "num": np.array(ref.num),
              "key": np.array(json.dumps(ref.key, sort_keys=True))}
    if ref.features is not None:
        arrays["features"] = ref.features
    with storage.open_atomic(path) as f:
        np.savez(f, **arrays)


def _load_reference(path: str, key: dict[str, Any], need_features: bool) -> ReferenceStats | None:
    """The cached statistics at `path`, or None when they are missing, of another key, or lack
    the features asked for."""
    if not storage.isfile(path):
        return None
    with storage.open_file(path, "rb") as f, np.load(f, allow_pickle=False) as data:
        if json.loads(str(data["key"])) != key:
            return None
        if need_features and "features" not in data.files:
            return None
        mu, sigma = data["mu"], data["sigma"]
        features = data["features"] if "features" in data.files else None
        num = int(data["num"])
    return ReferenceStats(mu, sigma, features, num, key, statistics_sha256(mu, sigma), path)


def reference_statistics(images: np.ndarray | Callable[[], np.ndarray],
                         extractor: Callable[[np.ndarray], np.ndarray], *, dataset: str,
                         split: str = "test", num_real: int = 10_000,
                         cache_dir: str | None = None, keep_features: bool = True,
                         chunk: int = CHUNK,
                         memo: MutableMapping[str, ReferenceStats] | None = None
                         ) -> ReferenceStats:
    """Statistics of the first `num_real` real images, computed once and cached.

    `images`: [N, H, W, C] (uint8, or float in [0, 1]), or a function returning them, called
    only when the statistics are not cached yet. `extractor`: a `FeatureExtractor` (or any
    callable images → features [n, d] with a `provenance` dict). The cache file
    (`cache_dir`, default `~/.cache/gancmp`) is keyed by dataset, split, num_real, weights sha256
    and preprocessing (see `reference_key`); it also holds the features when `keep_features`
    (KID and precision/recall need them). `memo`: the caller's table of references by cache
    file (`resources.EvalResources` owns one per run): one read or computed is kept there and
    found again without reading the file (every group of a sweep shares it). Raises ValueError when
    fewer than `num_real` images exist or `num_real` is below the feature dimension.
    """
    if num_real < 2:
        raise ValueError(f"num_real must be at least 2, got {num_real}")
    provenance = dict(getattr(extractor, "provenance", {}) or {})
    key = reference_key(provenance, dataset, split, num_real)
    path = reference_path(key, cache_dir or storage.cache_root())
    memo = {} if memo is None else memo
    held = memo.get(path)
    if held is not None and held.key == key and (held.features is not None or not keep_features):
        return held
    cached = _load_reference(path, key, keep_features)
    if cached is not None:
        memo[path] = cached
        return cached
    data = images() if callable(images) else images
    if data is None or len(data) < num_real:
        available = 0 if data is None else len(data)
        raise ValueError(f"num_real={num_real} but the {split} split of {dataset} has only "
                         f"{available} images; lower fid.num_real")
    stats, features = compute_statistics(data[:num_real], extractor, chunk, keep_features)
    mu, sigma = stats.statistics()
    ref = ReferenceStats(mu, sigma, features, num_real, key, statistics_sha256(mu, sigma), path)
    _save_reference(path, ref)
    memo[path] = ref
    return ref


def fid_provenance(extractor_provenance: dict[str, Any], reference: ReferenceStats,
                   num_fake: int) -> dict[str, Any]:
    """What a FID was measured with: weights sha256 and source, preprocessing, network, feature
    size, dataset and split of the reference, num_real, num_fake, the sha256 of the
    reference (μ, Σ) and the Inception's matmul precision."""
    p = extractor_provenance
    return {"weights_sha256": p.get("weights_sha256"), "weights_source": p.get("weights_source"),
            "preprocess": p.get("preprocess"), "network": p.get("network"),
            "feature_dim": int(reference.mu.shape[0]), "dataset": reference.key["dataset"],
            "split": reference.key["split"], "num_real": reference.num,
            "num_fake": int(num_fake), "reference_stats_sha256": reference.sha256,
            "precision": p.get("precision")}

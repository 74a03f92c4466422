"""Feature statistics of a set of images, and their file (`gancmp stats`), with provenance.

A statistics file is an `.npz` holding
  mu [d] float64, sigma [d, d] float64   the mean and unbiased covariance (ddof = 1) of the
                                         features; the keys pytorch-fid reads, so the file is a
                                         pytorch-fid statistics file too;
  features [n, d] float32                optional: KID, precision/recall and IS need them;
  provenance                             JSON: format "gancmp-stats", version, the extractor's
                                         provenance (weights_sha256, weights_source, preprocess,
                                         network, feature_dim), `features` (the feature
                                         network's registry name, `gancmp.metrics.networks`:
                                         inception, dinov2, clip; a file without it was made
                                         before there were others: inception), num and source.

Statistics measured differently are not comparable: `check_setup` refuses a file whose feature
network, weights, preprocessing or feature size differ from the run's, and `check_consistent`
two that differ from each other, each with one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
import zlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from gancmp import storage

STATS_FORMAT = "gancmp-stats"
STATS_VERSION = 1
# With the weights, what makes statistics comparable (and how messages name it).
COMPARED = {"preprocess": "preprocess", "feature_dim": "feature size (dims)"}


class ScoreError(ValueError):
    """Input that cannot be scored as asked; the message names the source and the problem."""


@dataclasses.dataclass(frozen=True)
class Statistics:
    """Features of `num` images from `source`: mu [d] and sigma [d, d] (float64), the features
    [num, d] float32 (None when not kept), and the extractor's `provenance`."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None
    num: int
    provenance: dict[str, Any]
    source: str

    @property
    def dim(self) -> int:
        """The feature dimension d."""
        return int(self.mu.shape[0])


def network_of(provenance: Mapping[str, Any]) -> str:
    """The feature network's registry name of a provenance ("inception" when unrecorded)."""
    return provenance.get("features") or "inception"


def weights_id(provenance: Mapping[str, Any]) -> str | None:
    """What identifies the weights: their sha256, or their source when unhashed (random
    test weights)."""
    return provenance.get("weights_sha256") or provenance.get("weights_source")


def check_setup(stats: Statistics, expected: Mapping[str, Any]) -> None:
    """Raises ScoreError when `stats` were measured with another feature network (`network_of`;
    `expected["features"]`), other weights (`weights_id` of `expected`), preprocessing or
    feature size than `expected`; a key of `expected` that is
    missing or None is not checked."""
    got = stats.provenance
    if expected.get("features") is not None and network_of(got) != expected["features"]:
        raise ScoreError(f"{stats.source}: statistics made with the {network_of(got)} feature "
                         f"network, but this run uses {expected['features']}; pass --features "
                         f"{network_of(got)} or recompute them")
    for key, label in COMPARED.items():
        want = expected.get(key)
        if want is not None and got.get(key) != want:
            raise ScoreError(f"{stats.source}: statistics made with {label} {got.get(key)!r}, "
                             f"but this run uses {want!r}; use the same {label} or recompute "
                             "them")
    want = weights_id(expected)
    if want is not None and weights_id(got) != want:
        label = "Inception" if network_of(got) == "inception" else network_of(got)
        raise ScoreError(f"{stats.source}: statistics made with other {label} "
                         f"weights ({weights_id(got)}) than this run's ({want}); pass the same "
                         "weights (--feature_weights) or recompute them")


def check_consistent(stats: Sequence[Statistics]) -> None:
    """Raises ScoreError unless all `stats` share feature network, weights, preprocessing and
    feature size."""
    for other in stats[1:]:
        check_setup(other, {**stats[0].provenance, "features": network_of(stats[0].provenance)})


def need_features(stats: Statistics, metric: str) -> np.ndarray:
    """The features of `stats`; ScoreError saying so when the file was written without them."""
    if stats.features is None:
        raise ScoreError(f"{stats.source}: these statistics hold no features, only mu and "
                         f"sigma; {metric} needs the features: write them with `gancmp stats "
                         "SRC --out FILE` (features are kept unless --nokeep_features)")
    return stats.features


def save_statistics(path: str, stats: Statistics) -> None:
    """Writes `stats` as a statistics file (see the module docstring), atomically."""
    provenance = {**stats.provenance, "format": STATS_FORMAT, "version": STATS_VERSION,
                  "num": int(stats.num), "source": stats.source}
    arrays = {"mu": np.asarray(stats.mu, np.float64), "sigma": np.asarray(stats.sigma, np.float64),
              "provenance": np.array(json.dumps(provenance, sort_keys=True))}
    if stats.features is not None:
        arrays["features"] = np.asarray(stats.features, np.float32)
    with storage.open_atomic(path) as f:  # a file to share: the umask's mode, not 0600
        np.savez(f, **arrays)


def is_statistics(names: Collection[str]) -> bool:
    """Whether an `.npz` holding arrays `names` (its `files`) is a statistics file."""
    return "provenance" in names and "mu" in names


def load_statistics(path: str, data: Any = None) -> Statistics:
    """A statistics file (or its already opened `np.load` result `data`). Raises ScoreError for
    another format or version, or an `.npz` with mu/sigma but no provenance (pytorch-fid's or
    clean-fid's statistics: what they were measured with cannot be checked)."""
    raw = None if data is not None else storage.read_bytes(path)
    try:
        if data is None:
            data = np.load(io.BytesIO(raw), allow_pickle=False)
        return _statistics(path, data)
    except ScoreError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:  # truncated
        raise ScoreError(f"{path}: not a readable statistics file ({e}); write it again with "
                         "`gancmp stats SRC --out FILE`") from None


def _statistics(path: str, data: Any) -> Statistics:
    """`load_statistics` of the opened `np.load` result `data`."""
    files = set(data.files)
    if "provenance" not in files:
        if {"mu", "sigma"} <= files:
            raise ScoreError(f"{path}: mu and sigma without gancmp provenance (another tool's "
                             "statistics?); their weights and preprocessing cannot be checked: "
                             "recompute them with `gancmp stats`")
        raise ScoreError(f"{path}: not a gancmp statistics file")
    try:
        provenance = json.loads(str(data["provenance"]))
    except ValueError:
        raise ScoreError(f"{path}: unreadable provenance entry") from None
    if provenance.get("format") != STATS_FORMAT or provenance.get("version") != STATS_VERSION:
        raise ScoreError(f"{path}: unknown statistics format {provenance.get('format')!r} "
                         f"version {provenance.get('version')!r}")
    if "sigma" not in files or "num" not in provenance:
        raise ScoreError(f"{path}: incomplete statistics file (no sigma or no count)")
    mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
    features = np.asarray(data["features"], np.float32) if "features" in files else None
    return Statistics(mu, sigma, features, int(provenance["num"]), provenance, path)

"""What the evaluators of a run share, owned by one object for as long as the run needs it.

An `EvalResources` holds, for the evaluators made with it (`evaluators.make_evaluator(...,
resources=...)`), everything that is costly to build and the same for every group:

  feature extractors   the FID Inception (`fid.FeatureExtractor.from_file`) and the other
                       feature networks (`networks.make_extractor`): weights loaded and the
                       network compiled once;
  references           the real side's statistics (`fid.reference_statistics`), by cache file:
                       read from disk (or computed) once;
  real sides           a reference's device arrays for KID and precision/recall
                       (`device_eval.real_side`) and for PRDC (features and k-NN radii);
  feature programs     the chunked generate → features programs (`device_eval.GroupFeatures`),
                       by generator, extractor, N, chunk and IS settings: compiled once;
  polygon metrics      a polygon dataset's `polygons.PolygonMetrics` (its bank, δ, recall
                       targets and z-inversion programs), by dataset, data seed and settings.

Every table is keyed by hashable values: settings, file paths, a reference's sha256, the
`Generator` (hashable by its trial setup) and an extractor this object built (it holds it, so
the key is never another's). A sweep shard (`gancmp.sweep.runner`) or a Ray worker makes one
for all its groups and a run (`gancmp train`, `gancmp eval`) one for its trial, so groups
share the compiled programs and references while the owner lives, and the device memory of
the real features is freed with it (a test, or a later run in the same process, starts from
nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax
import numpy as np

from gancmp.metrics import device_eval, fid, ondevice, prdc


class EvalResources:
    """The extractors, references, real sides and feature programs of the evaluators made with
    it (module docstring). Not thread-safe: one evaluation at a time uses it."""

    def __init__(self):
        self._extractors: dict[tuple, Any] = {}
        self._references: dict[str, fid.ReferenceStats] = {}
        self._real_sides: dict[tuple, device_eval.RealSide] = {}
        self._prdc_real: dict[tuple, tuple[jax.Array, jax.Array]] = {}
        self._programs: dict[tuple, device_eval.GroupFeatures] = {}
        self._polygons: dict[tuple, Any] = {}

    def extractor(self, cls: Any, path: str | None, preprocess: str, batch_size: int,
                  cache_dir: str | None, precision: str) -> Any:
        """`cls.from_file(path, preprocess=..., batch_size=..., cache_dir=..., precision=...)`
        (a `FeatureExtractor`), built once for these settings."""
        key = ("inception", cls, path, preprocess, batch_size, cache_dir, precision)
        if key not in self._extractors:
            self._extractors[key] = cls.from_file(
                path, preprocess=preprocess, batch_size=batch_size, cache_dir=cache_dir,
                precision=precision)
        return self._extractors[key]

    def network_extractor(self, name: str, path: str | None, batch_size: int) -> Any:
        """`networks.make_extractor(name, path, batch_size=...)` (a feature network other than
        the Inception: dinov2, clip, ...), built once for these settings."""
        from gancmp.metrics import networks

        key = ("network", name, path, batch_size)
        if key not in self._extractors:
            self._extractors[key] = networks.make_extractor(name, path, batch_size=batch_size)
        return self._extractors[key]

    def reference(self, images: np.ndarray | Callable[[], np.ndarray], extractor: Any,
                  **kwargs: Any) -> fid.ReferenceStats:
        """`fid.reference_statistics(images, extractor, **kwargs)`, kept in memory by its cache
        file once read or computed (every group of a sweep shares it)."""
        return fid.reference_statistics(images, extractor, memo=self._references, **kwargs)

    def real_side(self, reference: fid.ReferenceStats, num_fake: int, k: int,
                  kid_args: Mapping[str, Any]) -> device_eval.RealSide:
        """`device_eval.real_side` of `reference` for `num_fake` samples, computed once per
        reference (its sha256, file and count), k and KID settings."""
        key = (reference.sha256, reference.path, reference.num, num_fake, k,
               tuple(sorted(kid_args.items())))
        if key not in self._real_sides:
            self._real_sides[key] = device_eval.real_side(reference, num_fake, k, kid_args)
        return self._real_sides[key]

    def prdc_real(self, reference: fid.ReferenceStats) -> tuple[jax.Array, jax.Array]:
        """The real features on the device [M, d] float32 and their squared k-NN radii [M]
        (k = `prdc.K`), computed once per reference (its sha256, file and count)."""
        key = (reference.sha256, reference.path, reference.num)
        if key not in self._prdc_real:
            real = jax.numpy.asarray(reference.features, jax.numpy.float32)
            self._prdc_real[key] = (real, ondevice.knn_radii_sq(real, prdc.K))
        return self._prdc_real[key]

    def group_features(self, generator: Hashable, extractor: Any, n: int, z: jax.Array,
                       logits: bool, num_splits: int) -> Callable[[Any, int], dict[str, Any]]:
        """(states [K], samples per trial per chunk) → the `device_eval.GroupFeatures` carry;
        its programs built once for each generator, extractor, N, chunk size and IS setting."""
        def run(states, chunk: int) -> dict[str, Any]:
            key = (generator, extractor, n, chunk, logits, num_splits)
            if key not in self._programs:
                self._programs[key] = device_eval.GroupFeatures(
                    generator, extractor, n, z, chunk=chunk, logits=logits,
                    num_splits=num_splits)
            return self._programs[key](states)
        return run

    def polygon_metrics(self, name: str, data_seed: int, data_dir: str | None,
                        cfg: Any) -> Any:
        """`polygons.PolygonMetrics` of polygon dataset `name` (its held-out split of
        `synthetic.polygon_dataset(name, seed=data_seed, cache_dir=data_dir)`) under `cfg` (a
        `polygons.PolygonMetricsConfig`), built once for these."""
        from gancmp.data import synthetic
        from gancmp.metrics import polygons

        key = (name, data_seed, data_dir, cfg)
        if key not in self._polygons:
            splits = synthetic.polygon_dataset(name, seed=data_seed, cache_dir=data_dir)
            self._polygons[key] = polygons.PolygonMetrics.create(name, splits["heldout"], cfg)
        return self._polygons[key]

    def counts(self) -> dict[str, int]:
        """How many of each resource it holds: {"extractors", "references", "real_sides",
        "prdc_real", "programs", "polygons"} (what tests and logs count)."""
        return {"extractors": len(self._extractors), "references": len(self._references),
                "real_sides": len(self._real_sides), "prdc_real": len(self._prdc_real),
                "programs": len(self._programs), "polygons": len(self._polygons)}

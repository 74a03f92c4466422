"""The dataset registry (`gancmp.data.registry`): every built-in record against the data the
module produces, a user dataset through the same `get`, the one-line error for an unknown name,
`register`, and the `gancmp list datasets` lines built from the records."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gancmp.cli import catalog
from gancmp.data import registry, source, synthetic, tfds
from gancmp.metrics import score


def test_every_builtin_record_matches_its_data(tmp_path, monkeypatch):
    assert registry.names() == [*synthetic.MIXTURES, *synthetic.POLYGON_DATASETS, *tfds.SPECS]
    families = {"mixture": ("mixture", "modes_covered", True),
                "polygons": ("polygons", "f1", True), "images": ("fid", "fid", False)}
    for name in registry.names():
        ds = registry.get(name)
        m = ds.metrics
        assert (m.family, m.main, m.higher_is_better) == families[ds.kind], name
        assert hash(ds) == hash(registry.get(name))  # frozen and hashable
    ring = source.load("ring8")  # nothing to load: sampled on the devices
    x = synthetic.sample_mixture(jax.random.key(0), 3, "ring8")
    assert ring.kind == registry.get("ring8").data_kind == "mixture"
    assert ring.example_shape == registry.get("ring8").shape == x.shape[1:]
    assert registry.get("grid25").sizes == () and source.train_size("grid25") is None
    # polygons: the registry's loader, at a tiny size, gives its shape; its sizes are the splits
    tiny = {"train": 4, "test": 2, "heldout": 2}
    monkeypatch.setattr(synthetic, "SPLITS", tiny)
    tri = registry.get("triangles")
    data = source.load("triangles", str(tmp_path), seed=1)
    assert (tri.kind, data.kind) == ("polygons", "array")
    assert data.arrays["train"].shape == (4, *tri.shape) and data.test.shape == (2, *tri.shape)
    assert dict(tri.sizes) == {"train": 60_000, "test": 10_000, "heldout": 10_000}
    for name, spec in tfds.SPECS.items():  # loading them: tests/test_tfds.py
        ds = registry.get(name)
        assert (ds.kind, ds.shape, ds.size("train")) == ("images", spec.shape, spec.train_size)


def test_a_user_npz_resolves_through_get_as_images(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 4, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=pixels)
    name = f"npz:{tmp_path / 'x.npz'}"
    ds = registry.get(name)
    assert (ds.name, ds.kind, ds.shape, ds.sizes) == (name, "images", (4, 6, 3),
                                                      (("train", 18), ("test", 2)))
    assert ds.metrics == registry.FID_METRICS and ds.data_kind == "array"
    assert ds == registry.get(name) and name not in registry.names()
    splits = ds.loader(str(tmp_path), 0)
    assert splits["train"].shape == (18, 4, 6, 3) and splits["test"].shape == (2, 4, 6, 3)
    assert ds.provenance()["num_test"] == 2 == source.provenance(name)["num_test"]
    assert source.provenance("ring8") is None


def test_unknown_name_is_one_line_and_register_adds_a_listed_dataset(monkeypatch):
    with pytest.raises(KeyError, match=r"unknown dataset 'nope'; known: ring8, .*celeb_a; or "
                                       "your own images: folder:PATH") as err:
        registry.get("nope")
    assert "\n" not in str(err.value)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    toy = registry.Dataset("toy", (8, 8, 1), "images", (("train", 4), ("test", 2)),
                           lambda data_dir, seed: {
                               "train": np.zeros((4, 8, 8, 1), np.uint8),
                               "test": np.full((2, 8, 8, 1), 255, np.uint8)},
                           registry.FID_METRICS)
    registry.register(toy)
    assert registry.get("toy") is toy and source.names()[-1] == "toy"
    assert source.load("toy").test.shape == (2, 8, 8, 1)
    assert score.dataset_images("toy", "test").num == 2  # scoring reads it through its loader
    for bad in (registry.Dataset("toy", (2,), "images", (), None, registry.FID_METRICS),
                registry.Dataset("odd", (2,), "points", (), None, registry.FID_METRICS),
                registry.Dataset("npz:x", (2,), "images", (), None, registry.FID_METRICS)):
        with pytest.raises(ValueError):
            registry.register(bad)
    lines = catalog.LISTS["datasets"]()
    assert lines[-1] == ("toy: (8, 8, 1); images; train 4, test 2; main metric fid "
                         "(lower is better)")
    assert lines[0] == ("ring8: (2,); mixture; sampled afresh; main metric modes_covered "
                        "(higher is better); 2-D Gaussian mixture, sampled on the fly (offline)")
    assert ("triangles: (28, 28, 1); polygons; train 60000, test 10000, heldout 10000; main "
            "metric f1 (higher is better); synthetic convex polygons, generated once and cached "
            "(offline)") in lines

"""The offline datasets: polygons against their analytic geometry, mixtures against their modes."""

import jax
import numpy as np
import pytest

from gancmp.data import synthetic


@pytest.mark.parametrize("name", list(synthetic.POLYGON_DATASETS))
def test_polygons_match_their_parameters(name):
    spec = synthetic.POLYGON_DATASETS[name]
    params = synthetic.sample_polygon_params(7, 200, spec)
    v = params["vertices"]
    assert v.shape == (200, spec.n_vertices, 2)
    # convex, counter-clockwise, consecutive vertices at least the minimum angle apart
    gaps = np.diff(np.concatenate([params["angles"], params["angles"][:, :1] + 2 * np.pi], 1))
    assert gaps.min() >= np.deg2rad(spec.min_segment_angle) - 1e-5
    assert np.all(synthetic.polygon_area(v) > 0)
    # centre of mass at the image centre
    np.testing.assert_allclose(synthetic.polygon_centroid(v.astype(np.float64)), 14.0, atol=1e-4)
    images = synthetic.render_polygons(v)
    assert images.shape == (200, 28, 28, 1) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    # rendered area (sum of coverage) equals the shoelace area within sub-pixel sampling error
    area = images.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(area, synthetic.polygon_area(v), rtol=0.03, atol=0.5)
    # anti-aliasing: edge pixels are fractional
    frac = (images > 0) & (images < 1)
    assert frac.sum(axis=(1, 2, 3)).min() > 5
    # the image's own centre of mass is the image centre (pixel centres at i + 0.5)
    ys, xs = np.mgrid[0:28, 0:28] + 0.5
    cy = (images[..., 0] * ys).sum((1, 2)) / area
    cx = (images[..., 0] * xs).sum((1, 2)) / area
    np.testing.assert_allclose(cx, 14.0, atol=0.15)
    np.testing.assert_allclose(cy, 14.0, atol=0.15)


def test_polygon_dataset_is_seeded_split_and_cached(tmp_path):
    sizes = {"train": 30, "test": 10, "heldout": 10}
    a = synthetic.polygon_dataset("triangles", 3, str(tmp_path), sizes=sizes)
    files = list(tmp_path.iterdir())
    b = synthetic.polygon_dataset("triangles", 3, str(tmp_path), sizes=sizes)  # from the cache
    assert len(files) == 1 and list(tmp_path.iterdir()) == files
    for split, n in sizes.items():
        assert a[split].shape == (n, 28, 28, 1) and a[split].dtype == np.uint8
        np.testing.assert_array_equal(a[split], b[split])
        assert a[f"{split}_params"]["vertices"].shape == (n, 3, 2)
    c = synthetic.polygon_dataset("triangles", 4, str(tmp_path), sizes=sizes)
    assert not np.array_equal(a["train"], c["train"])
    # the splits are disjoint slices of one seeded draw
    whole = synthetic.sample_polygon_params(3, 50, synthetic.POLYGON_DATASETS["triangles"])
    np.testing.assert_allclose(a["heldout_params"]["vertices"], whole["vertices"][40:])


@pytest.mark.parametrize("name, n_modes", [("ring8", 8), ("grid25", 25)])
def test_mixture_samples(name, n_modes):
    mix = synthetic.MIXTURES[name]
    x = np.asarray(synthetic.sample_mixture(jax.random.key(0), 20_000, name))
    assert x.shape == (20_000, 2) and mix.modes.shape == (n_modes, 2)
    d = np.linalg.norm(x[:, None] - mix.modes[None], axis=-1)
    nearest = d.argmin(1)
    counts = np.bincount(nearest, minlength=n_modes)
    assert counts.min() > 0.7 * 20_000 / n_modes  # all modes, equal weights
    offsets = x - mix.modes[nearest]
    np.testing.assert_allclose(offsets.std(0), mix.std, rtol=0.05)
    np.testing.assert_array_equal(
        x, np.asarray(synthetic.sample_mixture(jax.random.key(0), 20_000, name)))
    if name == "ring8":
        np.testing.assert_allclose(np.linalg.norm(mix.modes, axis=1), 2.0, rtol=1e-6)

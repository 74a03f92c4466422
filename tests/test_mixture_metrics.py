"""Mode coverage and quality on 2-D mixtures."""

import jax
import numpy as np

from gancmp.data import synthetic
from gancmp.metrics.mixtures import mixture_metrics

RING = synthetic.MIXTURES["ring8"]


def test_true_samples_cover_every_mode():
    x = np.asarray(synthetic.sample_mixture(jax.random.key(0), 10_000, "ring8"))
    m = mixture_metrics(x, RING.modes, RING.std)
    assert m["modes_covered"] == 8
    assert m["high_quality"] >= 0.98  # 1 − e^{−9/2} ≈ 0.989 of a 2-D Gaussian within 3σ
    assert m["kl_to_uniform"] < 0.01


def test_collapsed_generator_covers_one_mode():
    x = RING.modes[3] + 0.01 * np.random.default_rng(0).standard_normal((1000, 2))
    m = mixture_metrics(x, RING.modes, RING.std)
    assert m["modes_covered"] == 1 and m["high_quality"] == 1.0
    np.testing.assert_allclose(m["kl_to_uniform"], np.log(8))


def test_off_manifold_and_nan_samples():
    m = mixture_metrics(np.zeros((500, 2)), RING.modes, RING.std)  # the ring's centre
    assert m["modes_covered"] == 0 and m["high_quality"] == 0.0
    bad = mixture_metrics(np.full((10, 2), np.nan), RING.modes, RING.std)
    assert bad["status"] == "nonfinite" and bad["modes_covered"] == 0

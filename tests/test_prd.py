"""PRD against compare_gan v3's published test values (compare_gan/metrics/prd_score_test.py),
and the device clustering on separated clusters whose histograms are known."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gancmp.metrics import prd


def test_compute_prd_no_overlap():
    np.testing.assert_almost_equal(np.ravel(prd.compute_prd([0, 1], [1, 0])), 0)


def test_compute_prd_perfect_overlap():
    result = prd.compute_prd([1, 0], [1, 0], num_angles=11)
    np.testing.assert_almost_equal([result[0][5], result[1][5]], [1, 1])


def test_compute_prd_low_precision_high_recall():
    result = prd.compute_prd([0.5, 0.5], [1, 0], num_angles=11)
    np.testing.assert_almost_equal(result[0][5], 0.5)
    np.testing.assert_almost_equal(result[1][5], 0.5)
    np.testing.assert_almost_equal(result[0][10], 0.5)
    np.testing.assert_almost_equal(result[1][1], 1)


def test_compute_prd_high_precision_low_recall():
    result = prd.compute_prd([1, 0], [0.5, 0.5], num_angles=11)
    np.testing.assert_almost_equal([result[0][5], result[1][5]], [0.5, 0.5])
    np.testing.assert_almost_equal(result[1][1], 0.5)
    np.testing.assert_almost_equal(result[0][10], 1)


@pytest.mark.parametrize("kwargs", [{"epsilon": 0}, {"epsilon": 1}, {"epsilon": -1},
                                    {"num_angles": 0}, {"num_angles": 1}, {"num_angles": -1},
                                    {"num_angles": 1e6 + 1}, {"num_angles": 2.5}])
def test_compute_prd_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        prd.compute_prd([1], [1], **kwargs)


def test_f_beta_published_values():
    precision = np.array([1, 1, 0, 0, 0.5, 1, 0.5])
    recall = np.array([1, 0, 1, 0, 0.5, 0.5, 1])
    with np.errstate(invalid="ignore"):
        np.testing.assert_almost_equal(prd.f_beta(precision, recall, 1),
                                       [1, 0, 0, 0, 0.5, 2 / 3, 2 / 3])
        np.testing.assert_almost_equal(prd.f_beta(precision, recall, 2),
                                       [1, 0, 0, 0, 0.5, 5 / 9, 5 / 6])
        np.testing.assert_almost_equal(prd.f_beta(precision, recall, 1 / 2),
                                       [1, 0, 0, 0, 0.5, 5 / 6, 5 / 9])
    assert prd.f_beta(np.array([]), np.array([]), 1).shape == (0,)
    for p, r, beta in [(np.ones(1), np.ones(1), 0), (np.ones(1), np.ones(1), -3),
                       (-np.ones(1), np.ones(1), 1), (np.ones(1), -np.ones(1), 1)]:
        with pytest.raises(ValueError):
            prd.f_beta(p, r, beta)


def test_cluster_histograms_of_a_set_against_a_point():
    """compare_gan's `_cluster_into_bins` case: 5 zeros and 5 ones in 4-d, 3 clusters: two
    histograms of 3 bins, each summing to 1, the sets in different clusters."""
    ev, ref = prd.cluster_histograms(np.zeros((5, 4)), np.ones((5, 4)), jax.random.key(0), 3)
    assert ev.shape == ref.shape == (3,)
    assert ev.sum() == pytest.approx(1) and ref.sum() == pytest.approx(1)
    assert np.all(ev * ref == 0)


def test_prd_separated_clusters():
    """Real: 4 tight blobs of 40 points each; generated: 80 points in 2 of them and 80 in a
    fifth far away. Each blob is a cluster (5 clusters): P = (½, ½, 0, 0, ... ) over the real
    blobs, ½ elsewhere; so max precision (α as λ → ∞) is ½ and max recall (β as λ → 0) is ½,
    whatever the run; F₈ and F₁/₈ are the F-scores of those corners."""
    rng = np.random.default_rng(0)
    centers = 20 * np.eye(5, 8)
    real = np.concatenate([centers[i] + 0.1 * rng.standard_normal((40, 8)) for i in range(4)])
    fake = np.concatenate([centers[i] + 0.1 * rng.standard_normal((40, 8)) for i in (0, 1, 4, 4)])
    got = prd.prd(real, fake, num_clusters=5, num_runs=2, num_angles=1001)
    assert got.precision.max() == pytest.approx(0.5, abs=1e-6)
    assert got.recall.max() == pytest.approx(0.5, abs=1e-6)
    f8, f8_inv = prd.max_f_beta_pair(got.precision, got.recall)
    assert (got.f_beta, got.f_beta_inv) == (f8, f8_inv)
    assert 0.4 < got.f_beta <= 0.5 and 0.4 < got.f_beta_inv <= 0.5
    with pytest.raises(ValueError, match="as many"):
        prd.prd(real, fake[:-1])


def test_prd_equals_compare_gans_on_a_committed_fixture():
    """compare_gan v3's `compute_prd_from_embedding` (MiniBatchKMeans) on 20 well-separated
    blobs (tests/fixtures/prd/make_fixture.py): ours, with its defaults (20 clusters, 10 runs,
    1001 angles, β = 8), gives the same curve and F-scores."""
    import os

    path = os.path.join(os.path.dirname(__file__), "fixtures", "prd", "expected.npz")
    with np.load(path) as data:
        got = prd.prd(data["real"], data["fake"])
        np.testing.assert_allclose(got.precision, data["precision"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got.recall, data["recall"], rtol=0, atol=1e-9)
        assert (got.f_beta, got.f_beta_inv) == pytest.approx(
            (float(data["f8"]), float(data["f1_8"])), abs=1e-9)

"""FD∞: the line fit on an exact case, and the extrapolation on Gaussian features whose FD_N
has a known bias."""

from __future__ import annotations

import numpy as np
import pytest

from gancmp.metrics import fd_infinity


def test_extrapolate_an_exact_line():
    counts = np.array([100, 200, 400, 800])
    assert fd_infinity.extrapolate(counts, 3.0 + 500.0 / counts) == pytest.approx((3.0, 500.0))
    with pytest.raises(ValueError, match="distinct"):
        fd_infinity.extrapolate(np.array([5, 5]), np.array([1.0, 2.0]))


def test_sample_counts_are_the_papers():
    assert list(fd_infinity.sample_counts(50_000)) == list(
        np.linspace(5000, 50_000, 15).astype(np.int32))
    with pytest.raises(ValueError, match="min_n"):
        fd_infinity.sample_counts(4000)


def test_fd_infinity_removes_the_bias_of_a_known_case():
    """Real: N(0, I₄) exactly (μ = 0, Σ = I); generated: N(δ, I₄) with ‖δ‖² = 1, so FD∞ = 1.
    With N samples, E‖μ̂ − δ‖² = d/N adds d/N = 4/N to FD_N (plus the covariance's own O(1/N)
    bias): at N = 50 FD_N is well above 1; the extrapolation lands within 0.03 of 1 and its
    slope is positive."""
    d = 4
    rng = np.random.default_rng(0)
    delta = np.full(d, 0.5)
    fake = rng.standard_normal((4000, d)) + delta
    got = fd_infinity.fd_infinity(np.zeros(d), np.eye(d), fake, min_n=50, num_points=15, seed=1)
    assert got.fds[0] > 1.05  # the biased measurement at N = 50
    assert got.value == pytest.approx(1.0, abs=0.03)
    assert got.slope > 0
    assert list(got.counts) == list(np.linspace(50, 4000, 15).astype(np.int32))
    with pytest.raises(ValueError, match="feature dimension"):
        fd_infinity.fd_infinity(np.zeros(d), np.eye(d), fake, min_n=3)

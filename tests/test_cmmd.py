"""CMMD: the paper's kernel and scale on a hand case; invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gancmp.metrics import cmmd


def test_cmmd_hand_case():
    """x = {(1, 0)}, y = {(0, 1)}: ‖x − y‖² = 2, so k(x, y) = exp(−2 / (2·10²)) = e^(−0.01) and
    k(x, x) = k(y, y) = 1: CMMD = 1000 (1 + 1 − 2 e^(−0.01))."""
    got = cmmd.cmmd(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert got == pytest.approx(1000 * (2 - 2 * math.exp(-0.01)), rel=1e-6)


def test_cmmd_two_point_sets_against_the_formula():
    """Two points per set, the diagonal included (the V-statistic of the paper's code), by
    hand: mean over all pairs of exp(−‖a − b‖² / 200)."""
    x = np.array([[3.0, 0.0], [0.0, 4.0]])
    y = np.array([[0.0, 0.0], [6.0, 8.0]])

    def mean_k(a, b):
        return np.mean([math.exp(-np.sum((p - q) ** 2) / 200) for p in a for q in b])

    want = 1000 * (mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y))
    got = cmmd.cmmd(x, y, unit_norm=False, block=1)
    assert got == pytest.approx(want, rel=1e-6)
    assert cmmd.cmmd(y, x, unit_norm=False) == pytest.approx(got, rel=1e-6)  # symmetric


def test_cmmd_small_differences_keep_their_digits():
    """Unit vectors, a small shift: CMMD ≈ 1e-3, computed against a float64 reference to 1e-4
    relative (summing k − 1 instead of k keeps float32 from cancelling)."""
    rng = np.random.default_rng(0)
    x = cmmd.normalize(rng.standard_normal((300, 32)))
    y = cmmd.normalize(rng.standard_normal((200, 32)) + 0.05)

    def mean_k(a, b):
        d = ((a[:, None] - b[None]) ** 2).sum(-1)
        return np.exp(-d / 200).mean()

    want = 1000 * (mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y))
    assert cmmd.cmmd(x, y, block=128) == pytest.approx(want, rel=1e-4)
    assert cmmd.cmmd(x, x) == pytest.approx(0.0, abs=1e-6)

"""Density and coverage (and prdc's precision/recall) against NAVER's prdc on committed
fixtures (tests/fixtures/prdc/make_fixture.py), and on a hand-worked case."""

from __future__ import annotations

import os

import numpy as np
import pytest

from gancmp.metrics import prdc

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "prdc", "expected.npz")


@pytest.mark.parametrize("k", [5, 3])
def test_prdc_equals_the_reference_implementation(k):
    with np.load(FIXTURE) as data:
        got = prdc.prdc(data["real"], data["fake"], k=k, block=64)  # several blocks, padded
        for name in prdc.PRDC._fields:
            assert getattr(got, name) == pytest.approx(float(data[f"k{k}_{name}"]), abs=1e-12)


def test_prdc_hand_case():
    """Real points 0, 1, 2, 3 on a line (k = 1: radii 1, 1, 1, 1); generated 0.5 (inside the
    balls of 0 and 1) and 10 (in none; its own radius 9.5 covers every real point)."""
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0]])
    got = prdc.prdc(real, fake, k=1)
    assert got.precision == pytest.approx(0.5)  # 0.5 is inside, 10 is not
    assert got.density == pytest.approx(2 / 2)  # 0.5 in 2 balls, 10 in none; /(k N)
    assert got.coverage == pytest.approx(2 / 4)  # reals 0 and 1 have a generated point within 1
    assert got.recall == pytest.approx(1.0)  # 10's radius 9.5 reaches every real point


def test_prdc_identical_sets_and_argument_errors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4))
    same = prdc.prdc(x, x + 1e-3, k=5)
    assert same.precision == 1.0 and same.recall == 1.0 and same.coverage == 1.0
    with pytest.raises(ValueError, match="same d"):
        prdc.prdc(x, x[:, :3])
    with pytest.raises(ValueError, match="more than k"):
        prdc.prdc(x, x[:5], k=5)

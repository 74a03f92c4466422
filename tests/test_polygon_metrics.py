"""Polygon precision/recall/F1: true polygons score high, near misses low; recall is ≈ 0 for a
constant generator and ≈ 1 for one that can reproduce the targets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from gancmp.data import synthetic
from gancmp.metrics import polygons
from gancmp.trial import make_trial

CFG = polygons.PolygonMetricsConfig(bank_size=6_000, calibration_size=600, recall_size=24,
                                    steps=60, restarts=2, lr=0.1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("polygons"))
    sizes = {"train": 8, "test": 8, "heldout": 1_200}
    tri = synthetic.polygon_dataset("triangles", seed=3, cache_dir=cache, sizes=sizes)
    quad = synthetic.polygon_dataset("quadrilaterals", seed=3, cache_dir=cache, sizes=sizes)
    metrics = polygons.PolygonMetrics.create("triangles", tri["heldout"][:700], CFG)
    unseen = tri["heldout"][700:].astype(np.float32) / 255.0  # neither calibration nor targets
    return metrics, unseen, quad["heldout"][:500].astype(np.float32) / 255.0


def test_bank_is_the_seeds_and_read_only(data):
    """The bank follows from `bank_seed` alone (a sweep's groups share one `PolygonMetrics`
    through their `EvalResources`, so one bank) and cannot be written."""
    metrics, _, _ = data
    bank = polygons.polygon_bank("triangles", CFG)
    np.testing.assert_array_equal(bank, metrics.bank)
    assert not bank.flags.writeable and not metrics.bank.flags.writeable
    assert bank.shape == (CFG.bank_size, 28 * 28) and bank.dtype == np.float32
    assert 0.0 <= bank.min() and bank.max() <= 1.0 and bank.std() > 0.1


def test_true_polygons_are_precise(data):
    metrics, unseen, _ = data
    assert 0.0 < metrics.delta < 28.0  # a distance in pixel L2 units of a 28×28 image
    assert polygons.precision(unseen, metrics.bank, metrics.delta) >= 0.95


@pytest.mark.parametrize("near_miss", ["other_family", "blurred", "shifted", "noise"])
def test_near_misses_are_not_precise(data, near_miss):
    metrics, unseen, quads = data
    images = {
        "other_family": quads,
        "blurred": ndimage.gaussian_filter(unseen, sigma=(0, 1.0, 1.0, 0)),
        # off-centre: the paper's polygons are centred; move each by 2 pixels diagonally
        "shifted": np.roll(unseen, (2, 2), axis=(1, 2)),
        "noise": np.random.default_rng(0).uniform(0, 1, unseen.shape).astype(np.float32),
    }[near_miss]
    assert polygons.precision(images, metrics.bank, metrics.delta) <= 0.1


def test_nonfinite_samples_have_zero_precision(data):
    metrics, unseen, _ = data
    bad = unseen[:10].copy()
    bad[0, 0, 0, 0] = np.nan
    assert polygons.precision(bad, metrics.bank, metrics.delta) == 0.0


def _constant_generator(image, z):
    return jnp.broadcast_to(image, (z.shape[0], *image.shape))


def _lookup_generator(table, z):
    """G(z) = softmax(12·z) @ table: z = e_j·2 − 1 reproduces table[j] (weight ≈ 1 − 1e-9)."""
    w = jax.nn.softmax(12.0 * z, axis=-1)
    return jnp.einsum("nk,khwc->nhwc", w, table)


def test_recall_of_constant_generator_is_zero(data):
    metrics, unseen, _ = data
    out = metrics(unseen[:50], _constant_generator, jnp.asarray(unseen[0]), z_dim=4)
    assert out["recall"] <= 0.05
    assert out["precision"] >= 0.95  # a single true polygon: precise, but no recall
    assert out["f1"] <= 0.1


def test_recall_of_generator_that_reproduces_targets_is_one(data):
    metrics, unseen, _ = data
    table = jnp.asarray(metrics.recall_targets)  # [24, 28, 28, 1]: every target is reachable
    out = metrics(unseen[:50], _lookup_generator, table, z_dim=len(table))
    assert out["recall"] >= 0.95
    assert out["f1"] == pytest.approx(2 * out["precision"] * out["recall"]
                                      / (out["precision"] + out["recall"]))


def test_polygon_evaluator_scores_a_trial_group(tmp_path, monkeypatch):
    """The evaluator a polygon trial gets: F1 as main metric, recall through the trial's own
    generator, one dict per vmapped trial, NaN generators marked; a second group's evaluator
    of the same `EvalResources` reuses its bank, δ and recall program."""
    from gancmp.metrics.resources import EvalResources
    from gancmp.train import evaluation as evaluate
    from gancmp.train.state import init_states
    from tests.helpers import tiny_infogan_config

    monkeypatch.setattr(synthetic, "SPLITS", {"train": 32, "test": 8, "heldout": 400})
    config = tiny_infogan_config(data_dir=str(tmp_path))
    config.eval.update(num_samples=64, bank_size=2_000, calibration_size=300, recall_size=8,
                       steps=20, restarts=2)
    setup = make_trial(config).setup
    shared = EvalResources()
    evaluator = evaluate.make_evaluator(make_trial(config), shared)
    assert (evaluator.main_metric, evaluator.higher_is_better) == ("f1", True)
    assert evaluator.setup["bank_size"] == 2_000 and evaluator.setup["delta"] > 0
    states = init_states(setup, [0, 1], [make_trial(config).hparams] * 2)
    results = evaluator.evaluate_group(states)
    assert len(results) == 2
    for r in results:  # an untrained generator draws grey blurs, not polygons
        assert r["status"] == "ok" and r["precision"] <= 0.05 and 0 <= r["recall"] <= 1
    broken = states.replace(g_params=jax.tree.map(lambda a: a * np.nan, states.g_params))
    assert evaluator.evaluate_group(broken)[0] == {"f1": -np.inf, "status": "nonfinite"}
    again = evaluate.make_evaluator(make_trial(config), shared)  # the sweep's next group
    assert again.evaluate_group(states) == results and shared.counts()["polygons"] == 1
    (prf,) = shared._polygons.values()
    assert len(prf.programs) == 1  # one z-inversion program for both groups' generator

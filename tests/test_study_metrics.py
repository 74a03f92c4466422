"""A study's choice of image metrics (`config.eval.metrics`) end to end: a small real Flax conv
network registered as a feature network ("tiny") flows through the registry, the evaluator,
the device passes and the record keys; its numbers equal the library functions' on the same
network's features of the same samples. And the config's one-line errors."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp.config import ConfigError
from gancmp.metrics import cmmd, fd_infinity, fid, networks, prd, prdc, suite
from gancmp.trial import make_trial
from tests.helpers import tiny_infogan_config
from tests.test_fid_metrics import PoolExtractor, _fake_images

DIM = 8


class TinyConv(nn.Module):
    """A small conv net: 3×3 conv (8, stride 2), ReLU, spatial mean, dense → [b, 8]."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2))(x))
        return nn.Dense(DIM)(x.mean((1, 2)))


class TinyExtractor:
    """`TinyConv` with random weights behind the interface of `networks` extractors."""

    def __init__(self, seed: int = 0, batch_size: int = 16):
        self.module = TinyConv()
        self.variables = self.module.init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))
        self.batch_size, self.num_devices, self.dim = batch_size, 1, DIM
        self.provenance = {"network": "tiny conv", "weights_sha256": None,
                           "weights_source": f"random(seed={seed})", "preprocess": "none",
                           "feature_dim": DIM}
        self._jit = jax.jit(self.module.apply)

    def apply(self, variables, images):
        return self.module.apply(variables, images)

    def __call__(self, images):
        return np.asarray(self._jit(self.variables, jnp.asarray(images, jnp.float32)))


@pytest.fixture(scope="module")
def tiny_network():
    net = networks.register(networks.FeatureNetwork(
        "tiny", DIM, lambda weights, **kw: TinyExtractor(**kw),
        lambda seed, **kw: TinyExtractor(seed, **kw), "a small random conv net (tests)"))
    yield net
    networks._NETWORKS.pop("tiny")


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    from gancmp.data import source

    test_images = _fake_images(80, seed=1)
    fake_source = source.DataSource("mnist", (28, 28, 1), "array",
                                    {"train": _fake_images(32)}, test_images)

    class PoolExtractorClass:
        @staticmethod
        def from_file(path=None, preprocess="tf1_legacy", batch_size=50, cache_dir=None, **kw):
            return PoolExtractor(preprocess)

    monkeypatch.setattr(source, "load", lambda name, data_dir=None, seed=0: fake_source)
    monkeypatch.setattr(fid, "FeatureExtractor", PoolExtractorClass)
    config = tiny_infogan_config(dataset="mnist")
    config.eval.num_samples = 64
    config.fid.update(num_real=64, cache_dir=str(tmp_path))
    return config, test_images


def test_suite_names_follow_the_registry(tiny_network):
    assert {"fid", "prdc", "prd", "fd_inf", "fd_tiny", "prdc_tiny", "cmmd_tiny"} <= set(
        suite.names())
    m = suite.get("prdc_tiny")
    assert (m.kind, m.network, [k for k, _ in m.keys]) == (
        "prdc", "tiny", ["density_tiny", "coverage_tiny"])
    assert [m.name for m in suite.parse(" fid, prdc,fid ")] == ["fid", "prdc"]
    assert suite.parse(None)[0].name == "fid"


def test_chosen_metrics_on_a_registered_network(tiny_network, fake_data):
    from gancmp.train import evaluation as evaluate
    from gancmp.train.state import init_states

    config, test_images = fake_data
    config.eval.metrics = "fid,fd_tiny,prdc_tiny,prd_tiny,fd_inf_tiny,cmmd_tiny"
    config.eval.main_metric = "fd_tiny"
    trial = make_trial(config)
    evaluator = evaluate.make_evaluator(trial)
    assert (evaluator.main_metric, evaluator.higher_is_better) == ("fd_tiny", False)
    tiny = evaluator.setup["metrics"]["tiny"]
    assert tiny["features"] == "tiny" and tiny["feature_dim"] == DIM
    assert tiny["weights_source"] == "random(seed=0)" and tiny["fd_inf_tiny"]["min_n"] == 32
    assert evaluator.setup["metric"] == "fid" and "reference_stats_sha256" in evaluator.setup
    states = init_states(trial.setup, [0, 1], [trial.hparams] * 2)
    rows = evaluator.evaluate_group(states)
    # the same numbers from the library on the tiny network's features of the same samples
    extractor = TinyExtractor()
    real = extractor(test_images[:64].astype(np.float32) / 255)
    mu, sigma = fid.FeatureStats().update(real).statistics()
    for row, samples in zip(rows, evaluator.samples(states), strict=True):
        feats = extractor(samples)
        assert row["status"] == "ok" and np.isfinite(row["fid"])
        fm, fs = fid.FeatureStats().update(feats).statistics()
        assert row["fd_tiny"] == pytest.approx(fid.frechet_distance(mu, sigma, fm, fs), rel=1e-3)
        got = prdc.prdc(real, feats)
        assert (row["density_tiny"], row["coverage_tiny"]) == pytest.approx(
            (got.density, got.coverage), abs=1e-9)
        assert row["cmmd_tiny"] == pytest.approx(cmmd.cmmd(real, feats), rel=1e-3, abs=1e-6)
        want = fd_infinity.fd_infinity(mu, sigma, feats, min_n=32, seed=evaluate.evaluators.
                                       EVAL_SEED)
        assert row["fd_inf_tiny"] == pytest.approx(want.value, rel=1e-3)
        want = prd.prd(real, feats, seed=evaluate.evaluators.EVAL_SEED)
        assert row["prd_f8_tiny"] == pytest.approx(want.f_beta, abs=1e-6)
        assert np.isfinite(row["kid_tiny"]) and 0 <= row["prd_f1_8_tiny"] <= 1
    # the real images themselves: every distance about 0, coverage 1
    same = evaluator.evaluate_samples(test_images[:64].astype(np.float32) / 255)
    assert same["fd_tiny"] < 1e-6 and same["coverage_tiny"] == 1.0 and same["cmmd_tiny"] < 1e-6


def test_metric_choices_are_checked_in_one_line(tiny_network, fake_data):
    config, _ = fake_data
    config.eval.metrics = "fid,nonesuch"
    with pytest.raises(ConfigError, match="config.eval.metrics: unknown metric 'nonesuch'; "
                                          "allowed: fid, prdc"):
        make_trial(config)
    config.eval.metrics = "prdc"
    config.eval.main_metric = "fid"
    with pytest.raises(ConfigError, match="config.eval.main_metric: 'fid' is not a value of "
                                          "the chosen metrics; allowed: density, coverage"):
        make_trial(config)
    config.eval.main_metric = None
    config.eval.metrics = "cmmd"  # CLIP is not registered on this branch yet
    if "clip" not in networks.names():
        with pytest.raises(ConfigError, match="runs on the clip network, which is not "
                                              "registered"):
            make_trial(config)


def test_the_report_follows_the_studys_main_metric(tmp_path):
    """Records ranked by fd_dinov2 (lower is better, as their records say): the report's
    heading, table and figures name it, and the best is the smallest value."""
    from gancmp import records
    from gancmp.report import build
    from tests.test_report import make_records, write_records

    recs = make_records({"A": 0.0, "B": 3.0}, settings=3, seeds=0, metric="fd_dinov2",
                        spread=0.1)
    workdir = write_records(tmp_path / "w", recs)
    assert records.direction(records.load([workdir])) == ("fd_dinov2", False)
    text = open(build.build([workdir], str(tmp_path / "report"))).read()
    assert "## s (d; main metric: fd_dinov2, lower is better)" in text
    assert "| best fd_dinov2 (tuned) |" in text and "best fd_dinov2 vs budget" in text
    assert records.KNOWN_DIRECTIONS["density"] is True


def test_statistics_record_the_network_they_were_made_with(tiny_network, tmp_path):
    """`gancmp stats --features tiny`'s path: statistics through the registry's extractor carry
    the network's name, survive the file, and are refused by an Inception run and by another
    network's statistics."""
    from gancmp.data import images as image_io
    from gancmp.metrics import score
    from gancmp.metrics import stats_file as sf

    images = image_io.from_array(_fake_images(12), "x")
    extractor = networks.make_extractor("tiny", None, batch_size=5)
    stats = score.compute_statistics(images, extractor, features="tiny")
    assert stats.provenance["features"] == "tiny" and stats.dim == DIM
    sf.save_statistics(str(tmp_path / "tiny.npz"), stats)
    loaded = score.resolve(str(tmp_path / "tiny.npz"))
    assert sf.network_of(loaded.provenance) == "tiny"
    np.testing.assert_allclose(loaded.features, extractor(next(images.batches(12))), rtol=0,
                               atol=1e-6)  # batches of 5 vs one of 12: float32 rounding
    sf.check_setup(loaded, {**extractor.provenance, "features": "tiny"})  # same: fine
    with pytest.raises(sf.ScoreError, match="made with the tiny feature network, but this run "
                                            "uses inception; pass --features tiny"):
        sf.check_setup(loaded, {"features": "inception"})
    inception = dataclasses.replace(loaded, provenance={**loaded.provenance,
                                                        "features": "inception"})
    with pytest.raises(sf.ScoreError, match="feature network"):
        sf.check_consistent([inception, loaded])

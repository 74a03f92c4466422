"""FID, KID, Inception Score and improved precision/recall against closed forms and small
hand-checked cases; the reference-statistics cache; the image-dataset evaluator on tiny fake data.

Everything runs on small precomputed arrays or a stand-in feature extractor (4×4 mean pooling),
so no Inception network runs here (tests/test_inception.py covers it).
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from gancmp.metrics import evaluators, fid, kid, precision_recall
from gancmp.metrics import inception_score as IS
from gancmp.trial import make_trial

# --------------------------------------------------------------------------- Fréchet distance


def _random_cov(rng, d, scale=1.0):
    a = rng.standard_normal((d, 2 * d))
    return scale * a @ a.T / (2 * d) + 0.1 * np.eye(d)


@pytest.mark.parametrize("method", fid.SQRT_METHODS)
def test_frechet_distance_diagonal_closed_form(method):
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_singular_covariance():
    """A singular Σ₁ (no Cholesky factor) takes the symmetric-square-root path, still exact."""
    rng = np.random.default_rng(10)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    a, b = np.array([0.0, 0.0, 1.0, 2.0, 3.0]), rng.uniform(0.1, 3, 5)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid.frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(expected,
                                                                                  rel=1e-7)


@pytest.mark.parametrize("method", fid.SQRT_METHODS)
def test_frechet_distance_commuting_covariances(method):
    """Σ₁ = Q diag(a) Qᵀ and Σ₂ = Q diag(b) Qᵀ commute; the distance is the diagonal one."""
    rng = np.random.default_rng(1)
    d = 8
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid.frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(
        expected, rel=1e-9)


def test_frechet_distance_identity_symmetry_and_mean_shift():
    rng = np.random.default_rng(2)
    d = 16
    x = rng.standard_normal((300, d)) @ rng.standard_normal((d, d))
    mu, sigma = fid.FeatureStats().update(x).statistics()
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)
    s2, mu2 = _random_cov(rng, d, 2.0), rng.standard_normal(d)
    ab = fid.frechet_distance(mu, sigma, mu2, s2)
    assert ab == pytest.approx(fid.frechet_distance(mu2, s2, mu, sigma), rel=1e-10)
    delta = rng.standard_normal(d)
    shifted = fid.frechet_distance(mu, sigma, mu + delta, sigma)
    assert shifted == pytest.approx(delta @ delta, rel=1e-8, abs=1e-9 * np.trace(sigma))
    # pytorch-fid's scipy form agrees on a well-conditioned pair
    assert fid.frechet_distance(mu, sigma, mu2, s2, method="sqrtm") == pytest.approx(ab, rel=1e-8)


def test_frechet_distance_bad_input():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="sigma2"):
        fid.frechet_distance(mu, s, mu, np.eye(4))
    with pytest.raises(ValueError, match="mu1 and mu2"):
        fid.frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="allowed: eigh, sqrtm"):
        fid.frechet_distance(mu, s, mu, s, method="svd")
    with pytest.raises(ValueError, match="finite"):
        fid.frechet_distance(mu + np.nan, s, mu, s)


def test_streaming_statistics_equal_one_shot():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((257, 12)) * rng.uniform(0.1, 10, 12) + 100.0  # large mean
    x = x.astype(np.float32).astype(np.float64)  # so that float32 batches are exact too
    stats = fid.FeatureStats()
    for lo, hi in [(0, 1), (1, 1), (1, 50), (50, 51), (51, 200), (200, 257)]:  # incl. empty
        stats.update(x[lo:hi].astype(np.float32) if lo == 0 else x[lo:hi])
    mu, sigma = stats.statistics()
    assert stats.n == 257
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-10)
    assert sigma.dtype == np.float64


def test_too_few_samples_is_an_error():
    x = np.random.default_rng(4).standard_normal((10, 16))
    with pytest.raises(ValueError, match="too few samples.*10 samples of 16-d"):
        fid.FeatureStats().update(x).statistics()
    with pytest.raises(ValueError, match="dim 8"):
        fid.FeatureStats().update(x).update(x[:, :8])


# --------------------------------------------------------------------------------------- KID


def test_kid_matches_explicit_double_loops():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)) + 0.5
    k = lambda a, b: (a @ b / 3 + 1) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    expected = xx + yy - 2 * xy
    assert kid.mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)
    # equal-size sets with subsets of the whole set: every subset is a permutation
    y4 = y[:4]
    yy4 = sum(k(y4[i], y4[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy4 = sum(k(x[i], y4[j]) for i in range(4) for j in range(4)) / 16
    result = kid.kernel_inception_distance(x, y4, num_subsets=3, subset_size=1000)
    assert result.mean == pytest.approx(xx + yy4 - 2 * xy4, rel=1e-10)
    assert result.std == pytest.approx(0, abs=1e-12)


def test_kid_near_zero_for_one_distribution():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    same = kid.kernel_inception_distance(a, b, num_subsets=20, subset_size=200)
    shifted = kid.kernel_inception_distance(a, b + 0.5, num_subsets=20, subset_size=200)
    assert abs(same.mean) < 0.02 and same.std > 0
    assert shifted.mean > 20 * abs(same.mean) and shifted.mean > 0.1
    with pytest.raises(ValueError, match="same d"):
        kid.kernel_inception_distance(a, b[:, :3])


# ---------------------------------------------------------------------------- Inception Score


def test_inception_score_hand_cases():
    uniform = np.full((100, 7), 1 / 7)
    assert IS.inception_score(uniform) == pytest.approx((1.0, 0.0), abs=1e-12)
    onehot = np.tile(np.eye(10), (10, 1))  # each split of 10 uses every class once
    mean, std = IS.inception_score(onehot, num_splits=10)
    assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0, abs=1e-9)
    logits = np.tile(np.eye(10) * 50.0, (10, 1))
    assert IS.inception_score_from_logits(logits).mean == pytest.approx(10.0, rel=1e-9)
    # one class for everything: p(y|x) = p(y), score 1
    assert IS.inception_score(np.tile(np.eye(10)[:1], (50, 1)), 5).mean == pytest.approx(1.0)
    features, w = np.ones((2, 4)), np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(IS.logits_from_pool3(features, w, np.ones(3)),
                               [[7, 23, 39]] * 2)
    with pytest.raises(ValueError, match="num_splits"):
        IS.inception_score(uniform[:5], num_splits=10)
    with pytest.raises(ValueError, match="summing to 1"):
        IS.inception_score(uniform * 2)


# ------------------------------------------------------------------------- precision/recall


def _ring(rng, n, modes):
    angles = 2 * np.pi * np.asarray(modes) / 8
    centres = 2 * np.stack([np.cos(angles), np.sin(angles)], 1)
    return centres[rng.integers(len(modes), size=n)] + 0.05 * rng.standard_normal((n, 2))


def test_improved_precision_recall_half_the_modes_dropped():
    rng = np.random.default_rng(7)
    real = _ring(rng, 2000, range(8))
    fake = _ring(rng, 2000, range(4))
    pr = precision_recall.precision_recall(real, fake, k=3, batch_size=500)
    assert pr.precision > 0.97
    assert 0.42 < pr.recall < 0.55
    full = precision_recall.precision_recall(real, _ring(rng, 2000, range(8)))
    assert full.precision > 0.97 and full.recall > 0.97


def test_improved_precision_recall_matches_brute_force():
    rng = np.random.default_rng(9)
    real, fake = rng.standard_normal((30, 3)), rng.standard_normal((25, 3)) + 0.7
    dist = lambda a, b: np.linalg.norm(a[:, None] - b[None], axis=-1)
    radius = lambda a: np.sort(dist(a, a), axis=1)[:, 3]  # column 0 is the sample itself
    cross = dist(fake, real)
    precision = np.mean((cross <= radius(real)[None, :]).any(1))
    recall = np.mean((cross <= radius(fake)[:, None]).any(0))
    got = precision_recall.precision_recall(real, fake, k=3, batch_size=7)
    assert got == (pytest.approx(precision), pytest.approx(recall))
    assert 0 < precision < 1 and 0 < recall < 1


def test_knn_radii_small_case():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(precision_recall.knn_radii(x, k=1), [1, 1, 2, 4])
    np.testing.assert_allclose(precision_recall.knn_radii(x, k=3), [7, 6, 4, 7])


# --------------------------------------------------------------------- reference statistics


class PoolExtractor:
    """Stand-in for FeatureExtractor: 4×4 mean pooling of grey images → 16-d features."""

    def __init__(self, preprocess: str = "tf1_legacy"):
        self.preprocess = preprocess
        self.calls = 0

    @property
    def provenance(self):
        return {"weights_sha256": "0" * 64, "weights_source": "test", "network": "4x4 pool",
                "preprocess": self.preprocess, "feature_dim": 16}

    def __call__(self, images):
        self.calls += 1
        x = np.asarray(images, np.float32)
        assert x.dtype == np.float32 and x.max() <= 1.0
        n, h, w, _ = x.shape
        return x.mean(-1).reshape(n, 4, h // 4, 4, w // 4).mean((2, 4)).reshape(n, 16)


def _fake_images(n, seed=0, shape=(28, 28, 1)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def test_reference_statistics_cached_once(tmp_path):
    images = _fake_images(300)
    extractor = PoolExtractor()
    ref = fid.reference_statistics(lambda: images, extractor, dataset="toy", num_real=200,
                                   cache_dir=str(tmp_path), chunk=64)
    assert extractor.calls == 4 and os.path.isfile(ref.path)
    feats = extractor(images[:200].astype(np.float32) / 255)
    np.testing.assert_allclose(ref.mu, feats.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ref.sigma, np.cov(feats.astype(np.float64), rowvar=False),
                               rtol=1e-5, atol=1e-9)
    assert ref.features.shape == (200, 16)
    calls = extractor.calls

    def must_not_load():
        raise AssertionError("the dataset was loaded although its statistics are cached")

    again = fid.reference_statistics(must_not_load, extractor, dataset="toy", num_real=200,
                                     cache_dir=str(tmp_path))
    assert extractor.calls == calls and again.sha256 == ref.sha256
    np.testing.assert_array_equal(again.sigma, ref.sigma)
    # another preprocessing (or count) is another file
    other = fid.reference_statistics(images, PoolExtractor("pytorch_fid"), dataset="toy",
                                     num_real=200, cache_dir=str(tmp_path))
    assert other.path != ref.path and len(os.listdir(tmp_path)) == 2
    prov = fid.fid_provenance(extractor.provenance, ref, num_fake=50)
    assert prov["reference_stats_sha256"] == ref.sha256 and prov["num_real"] == 200
    assert prov["preprocess"] == "tf1_legacy" and prov["weights_sha256"] == "0" * 64
    with pytest.raises(ValueError, match="has only 300 images"):
        fid.reference_statistics(images, extractor, dataset="toy", num_real=400,
                                 cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="too few samples"):
        fid.reference_statistics(images, extractor, dataset="toy", num_real=10,
                                 cache_dir=str(tmp_path))


def test_feature_extractor_is_reexported():
    from gancmp.metrics import features

    assert fid.FeatureExtractor is features.FeatureExtractor
    assert callable(fid.FeatureExtractor.from_file) and callable(fid.FeatureExtractor.random)


# ---------------------------------------------------------------------------------- evaluator


def test_fid_evaluator_on_tiny_fake_data(tmp_path, monkeypatch):
    from gancmp.data import source
    from gancmp.train import evaluation as evaluate
    from gancmp.train.state import init_states
    from tests.helpers import tiny_infogan_config

    test_images = _fake_images(80, seed=1)
    fake_source = source.DataSource("mnist", (28, 28, 1), "array",
                                    {"train": _fake_images(32)}, test_images)
    loads, built = [], []

    def fake_load(name, data_dir=None, seed=0):
        loads.append(name)
        return fake_source

    class FakeExtractorClass:
        @staticmethod
        def from_file(path=None, preprocess="tf1_legacy", batch_size=50, cache_dir=None, **kw):
            built.append((path, preprocess, cache_dir))
            return PoolExtractor(preprocess)

    monkeypatch.setattr(source, "load", fake_load)
    monkeypatch.setattr(fid, "FeatureExtractor", FakeExtractorClass)
    config = tiny_infogan_config(dataset="mnist")
    config.eval.num_samples = 64
    config.fid.update(num_real=64, cache_dir=str(tmp_path), preprocess="pytorch_fid")
    setup = make_trial(config).setup
    evaluator = evaluate.make_evaluator(make_trial(config))
    assert (evaluator.main_metric, evaluator.higher_is_better) == ("fid", False)
    assert loads == ["mnist"] and built == [(None, "pytorch_fid", str(tmp_path))]
    for key in ("weights_sha256", "preprocess", "num_real", "num_fake",
                "reference_stats_sha256"):
        assert key in evaluator.setup
    assert evaluator.setup["num_fake"] == 64 and evaluator.setup["preprocess"] == "pytorch_fid"
    # the real images themselves: FID ≈ 0, precision = recall = 1
    real = evaluator.evaluate_samples(test_images[:64].astype(np.float32) / 255)
    assert real["fid"] < 1e-8 and real["precision"] == real["recall"] == 1.0
    assert abs(real["kid"]) < 1e-3 and real["status"] == "ok"
    # a trial group: one dict per trial, an untrained generator is far from the data
    states = init_states(setup, [0, 1], [make_trial(config).hparams] * 2)
    results = evaluator.evaluate_group(states)
    assert len(results) == 2
    for r in results:
        assert r["status"] == "ok" and r["fid"] > 10 * max(real["fid"], 1e-6)
        assert np.isfinite(r["kid"]) and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    # evaluated in passes of ceil(K / local devices) trials (4 devices here: one at a time),
    # each trial's numbers are its own alone
    assert evaluators.trial_passes(2, jax.local_device_count()) == [(0, 1), (1, 1)]
    assert evaluators.trial_passes(48, 8) == [(i, 6) for i in range(0, 48, 6)]
    assert evaluators.trial_passes(47, 8) == [*[(i, 6) for i in range(0, 42, 6)], (42, 5)]
    alone = evaluator.evaluate_group(jax.tree.map(lambda a: a[1:], states))[0]
    assert alone["fid"] == pytest.approx(results[1]["fid"], rel=1e-6)
    broken = states.replace(g_params=jax.tree.map(lambda a: a * np.nan, states.g_params))
    assert evaluator.evaluate_group(broken)[0] == {"fid": np.inf, "status": "nonfinite"}
    # a second evaluator reuses the cached reference (the dataset is not loaded again)
    again = evaluate.make_evaluator(make_trial(config))
    assert loads == ["mnist"] and again.setup == evaluator.setup
    config.eval.num_samples = 8
    with pytest.raises(ValueError, match="eval.num_samples=8"):
        evaluate.make_evaluator(make_trial(config))


@pytest.mark.filterwarnings("ignore:fid.inception_weights")  # no IS: the stand-in has no fc
def test_evaluators_of_one_resources_share_what_they_build(tmp_path, monkeypatch):
    """Two groups' evaluators made with one `EvalResources` (a sweep's) build the extractor,
    read the reference, put its real sides on the device and build the generate → features
    program once, and measure what evaluators of their own measure; a new `EvalResources` (a
    later run) starts from nothing but the reference file."""
    from gancmp.data import source
    from gancmp.metrics import device_eval
    from gancmp.metrics.resources import EvalResources
    from gancmp.train import evaluation
    from gancmp.train.state import init_states
    from tests.helpers import tiny_infogan_config

    test_images = _fake_images(80, seed=1)
    fake = source.DataSource("mnist", (28, 28, 1), "array", {"train": _fake_images(8)},
                             test_images)
    loads, built, programs = [], [], []
    monkeypatch.setattr(source, "load", lambda name, data_dir=None, seed=0: (
        loads.append(name) or fake))

    class Extractors:
        @staticmethod
        def from_file(path=None, preprocess="tf1_legacy", **kw):
            built.append(path)
            return PoolExtractor(preprocess)

    class CountedFeatures(device_eval.GroupFeatures):
        def __init__(self, *args, **kwargs):
            programs.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(fid, "FeatureExtractor", Extractors)
    monkeypatch.setattr(device_eval, "GroupFeatures", CountedFeatures)
    config = tiny_infogan_config(dataset="mnist")
    config.eval.update(num_samples=32, metrics="fid,prdc")
    config.fid.update(num_real=64, cache_dir=str(tmp_path))
    trials = [make_trial(config)]
    config.lr = 2 * config.lr  # another group of the same generator
    trials.append(make_trial(config))
    shared = EvalResources()
    rows = []
    for seed, trial in enumerate(trials):
        states = init_states(trial.setup, [seed], [trial.hparams])
        rows.append(evaluation.make_evaluator(trial, shared).evaluate_group(states)[0])
        assert (len(loads), len(built), len(programs)) == (1, 1, 1)
    assert shared.counts() == {"extractors": 1, "references": 1, "real_sides": 1,
                               "prdc_real": 1, "programs": 1, "polygons": 0}
    assert rows[0]["fid"] > 0 and rows[0]["density"] >= 0 and rows[0] != rows[1]
    alone = evaluation.make_evaluator(trials[1])  # its own resources: the same numbers
    again = alone.evaluate_group(init_states(trials[1].setup, [1], [trials[1].hparams]))[0]
    assert again.pop("status") == rows[1].pop("status") == "ok"
    assert again == pytest.approx(rows[1], rel=1e-6)
    assert (len(loads), len(built), len(programs)) == (1, 2, 2)  # the reference file is read

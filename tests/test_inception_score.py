"""The Inception Score at every checkpoint: the score on logits worked out by hand, the converted
weights keeping the classifier, the network's logits from the same pass as pool3, and image
evaluations (and a tiny image trial's eval rows) carrying the score."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp.metrics import fid, score
from gancmp.metrics import inception as mi
from gancmp.metrics import inception_score as IS
from gancmp.metrics.features import FeatureExtractor
from gancmp.nets import inception as net
from gancmp.trial import make_trial


def test_uniform_logits_score_one():
    result = IS.inception_score_from_logits(np.zeros((100, 1008)))
    assert result.mean == pytest.approx(1.0, abs=1e-12) and result.std == pytest.approx(0.0)


@pytest.mark.parametrize("classes", [2, 5, 10])
def test_balanced_one_hot_logits_score_the_number_of_classes(classes):
    """p(y|x) one-hot, p(y) uniform over `classes` in every split: KL = log(classes) for every
    example, so the score is exactly `classes` (logits of 60 make the softmax one-hot to
    e^−60)."""
    n = 10 * classes * 3  # 10 splits, each holding every class 3 times
    logits = np.zeros((n, 1008))
    logits[np.arange(n), np.arange(n) % classes] = 60.0
    result = IS.inception_score_from_logits(logits)
    assert result.mean == pytest.approx(classes, rel=1e-9) and result.std < 1e-9


def test_conversion_keeps_the_classifier(tmp_path):
    sd = mi.random_state_dict(0)
    variables = mi.convert_state_dict(sd)
    fc = variables["params"]["fc"]
    assert np.array_equal(fc["kernel"], sd["fc.weight"].T) and fc["kernel"].shape == (2048, 1008)
    assert np.array_equal(fc["bias"], sd["fc.bias"]) and mi.has_classifier(variables)
    dst = tmp_path / "w.npz"
    mi.save_variables(variables, str(dst), {"source_sha256": "ab"})
    loaded, _ = mi.load_inception_variables(str(dst))
    assert np.array_equal(loaded["params"]["fc"]["kernel"], fc["kernel"])
    assert np.array_equal(score.classifier_weights(str(dst)), sd["fc.weight"])  # `gancmp is`
    # a state dict without the classifier still converts (pool3 only), as before
    pool3 = mi.convert_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")})
    assert not mi.has_classifier(pool3)


def _version1_file(path, variables):
    """A converted file as gancmp wrote it before the classifier was kept: version 1, no fc."""
    flat = {"/".join(k): np.asarray(v) for k, v in _flatten(variables).items() if k[1] != "fc"}
    flat["__meta__"] = np.array(json.dumps({"format": mi.FORMAT, "version": 1,
                                            "source_sha256": "cd"}))
    np.savez(path, **flat)


def _flatten(tree, prefix=()):
    out = {}
    for k, v in tree.items():
        out.update(_flatten(v, (*prefix, k)) if isinstance(v, dict) else {(*prefix, k): v})
    return out


def test_an_old_converted_file_gives_features_without_logits(tmp_path):
    path = tmp_path / "old.npz"
    _version1_file(path, mi.convert_state_dict(mi.random_state_dict(1)))
    variables, sha = mi.load_inception_variables(str(path))
    assert sha == "cd" and not mi.has_classifier(variables)
    extractor = FeatureExtractor(variables, batch_size=2, devices=jax.local_devices()[:1])
    assert not extractor.has_logits
    with pytest.raises(ValueError, match="convert-inception"):
        extractor.features_and_logits(np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(score.ScoreError, match="no classifier layer.*convert-inception"):
        score.classifier_weights(str(path))


def test_a_stale_cached_conversion_is_redone_from_the_cached_pth(tmp_path, monkeypatch):
    variables = mi.convert_state_dict(mi.random_state_dict(1))
    _version1_file(tmp_path / mi.CONVERTED_NAME, variables)
    raw = tmp_path / mi.FID_WEIGHTS_NAME
    raw.write_bytes(b"stand-in for the downloaded .pth")
    monkeypatch.setattr(mi, "sha256_file", lambda p: mi.FID_WEIGHTS_SHA256_PREFIX + "0" * 56)
    calls = []

    def convert(src, dst):
        calls.append(src)
        mi.save_variables(variables, dst, {"source_sha256": "ef"})

    monkeypatch.setattr(mi, "convert_inception", convert)
    loaded, sha = mi.load_inception_variables(None, cache_dir=str(tmp_path))
    assert calls == [str(raw)] and sha == "ef" and mi.has_classifier(loaded)
    mi.load_inception_variables(None, cache_dir=str(tmp_path))
    assert len(calls) == 1  # converted once; the new file is used as it is


def test_network_logits_come_from_the_same_pass_as_pool3():
    """logits = pool3 · kernel (no bias); pool3 itself is what the features-only network gives.
    At 75×75 (the smallest input Inception-v3 takes) to stay cheap; the layers are the same."""
    variables = jax.tree.map(jnp.asarray, mi.convert_state_dict(mi.random_state_dict(2)))
    x = jax.random.uniform(jax.random.key(0), (2, 75, 75, 3), minval=-1.0, maxval=1.0)
    both = jax.jit(net.FIDInceptionV3(logits=True).apply)
    alone = jax.jit(net.FIDInceptionV3().apply)
    pool3, logits = both(variables, x)
    assert pool3.shape == (2, 2048) and logits.shape == (2, net.NUM_CLASSES)
    np.testing.assert_allclose(pool3, alone(variables, x), rtol=1e-6, atol=1e-6)
    kernel = np.asarray(variables["params"]["fc"]["kernel"], np.float64)
    np.testing.assert_allclose(logits, np.asarray(pool3, np.float64) @ kernel, rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="output_block 3"):
        net.FIDInceptionV3(output_block=2, logits=True).init(jax.random.key(0), x)


class LogitExtractor:
    """Stand-in FeatureExtractor with a classifier: 4×4 mean-pooled grey images as 16-d features;
    logits one-hot (60) on class round(3·mean pixel) of 1008, so images of constant value
    v ∈ {0, ⅓, ⅔, 1} fall in four classes."""

    has_logits = True
    batch_size = 50

    @property
    def provenance(self):
        return {"weights_sha256": "0" * 64, "weights_source": "test", "network": "pool+class",
                "preprocess": "tf1_legacy", "feature_dim": 16}

    def __call__(self, images):
        x = np.asarray(images, np.float32)
        n, h, w, _ = x.shape
        return x.mean(-1).reshape(n, 4, h // 4, 4, w // 4).mean((2, 4)).reshape(n, 16)

    def features_and_logits(self, images):
        x = np.asarray(images, np.float32)
        logits = np.zeros((len(x), 1008), np.float32)
        logits[np.arange(len(x)), np.rint(3 * x.mean((1, 2, 3))).astype(int)] = 60.0
        return self(x), logits


class PoolOnly(LogitExtractor):
    has_logits = False

    def features_and_logits(self, images):
        raise AssertionError("an extractor without a classifier is never asked for logits")


def _image_trial(tmp_path, monkeypatch, extractor_cls, **overrides):
    from gancmp.data import source
    from tests.helpers import tiny_infogan_config

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 28, 28, 1), dtype=np.uint8)
    fake = source.DataSource("mnist", (28, 28, 1), "array", {"train": images}, images[:64])
    monkeypatch.setattr(source, "load", lambda name, data_dir=None, seed=0: fake)

    class Extractors:
        @staticmethod
        def from_file(*args, **kwargs):
            return extractor_cls()

    monkeypatch.setattr(fid, "FeatureExtractor", Extractors)
    config = tiny_infogan_config(dataset="mnist", **overrides)
    config.eval.num_samples = 40
    config.fid.update(num_real=64, cache_dir=str(tmp_path / "cache"))
    return config


def test_image_evaluations_carry_the_inception_score(tmp_path, monkeypatch):
    from gancmp.train import evaluation

    config = _image_trial(tmp_path, monkeypatch, LogitExtractor)
    evaluator = evaluation.make_evaluator(make_trial(config))
    assert evaluator.setup["inception_score"] == {"num_splits": 1, "logits": IS.LOGITS}
    # 40 constant images, values cycling through the four classes: one split (v1's) of all 40
    values = np.tile(np.arange(4) / 3, 10).astype(np.float32)
    samples = np.broadcast_to(values[:, None, None, None], (40, 28, 28, 1)).copy()
    result = evaluator.evaluate_samples(samples)
    assert result["inception_score"] == pytest.approx(4.0, rel=1e-9)
    assert "inception_score_std" not in result and "fid" in result
    # weights without the classifier: one warning, FID as before, no Inception Score
    config = _image_trial(tmp_path, monkeypatch, PoolOnly)
    with pytest.warns(UserWarning, match="no classifier layer.*convert-inception"):
        plain = evaluation.make_evaluator(make_trial(config))
    assert plain.setup["inception_score"] is None
    assert "inception_score" not in plain.evaluate_samples(samples)


def _numpy_is_one_split(logits: np.ndarray) -> float:
    """v1's Inception Score (TF-GAN `classifier_score`, one split): exp(mean_x KL(p(y|x) ‖ p̄))
    with p̄ the mean of p(y|x) over all samples, in float64."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_p = np.log(np.maximum(p, 1e-300))
    p_bar = p.mean(0)
    return float(np.exp(np.mean(np.sum(p * (log_p - np.log(p_bar)), axis=1))))


def test_a_trials_inception_score_is_one_split_as_v1(tmp_path, monkeypatch):
    """The trial evaluator's IS equals a numpy reference of v1's one-split statistic over all
    samples, and differs from the 10-split mean (which is lower here)."""
    from gancmp.train import evaluation

    config = _image_trial(tmp_path, monkeypatch, LogitExtractor)
    evaluator = evaluation.make_evaluator(make_trial(config))
    # 30 images of class 0, then classes 1, 2, 3, 1, 2, 3, ...: uneven classes, uneven splits
    classes = np.concatenate([np.zeros(30, int), np.arange(10) % 3 + 1])
    samples = np.broadcast_to((classes / 3).astype(np.float32)[:, None, None, None],
                              (40, 28, 28, 1)).copy()
    logits = LogitExtractor().features_and_logits(samples)[1]
    want = _numpy_is_one_split(logits)
    got = evaluator.evaluate_samples(samples)["inception_score"]
    assert got == pytest.approx(want, rel=1e-5)
    p_bar = np.bincount(classes, minlength=4) / 40  # one-hot p(y|x): IS = exp(H(p̄))
    assert want == pytest.approx(np.exp(-np.sum(p_bar * np.log(p_bar))), rel=1e-6)
    ten = IS.inception_score_from_logits(logits, 10).mean
    assert ten < got - 0.3


def test_a_tiny_image_trial_records_the_inception_score_at_every_checkpoint(tmp_path,
                                                                            monkeypatch):
    from gancmp.train import loop
    from gancmp.train.workdir import read_evals

    config = _image_trial(tmp_path, monkeypatch, LogitExtractor, eval_every=4)
    workdir = tmp_path / "trial"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the weights have a classifier: nothing to warn about
        record = loop.train_trial(make_trial(config), str(workdir), progress=False)[0]
    assert record.status == "finished" and [e["step"] for e in record.evals] == [4, 8]
    for e in record.evals:
        assert 1.0 <= e["inception_score"] <= 4.0 + 1e-9 and "inception_score_std" not in e
        assert np.isfinite(e["fid"])
    assert record.metric_setup["inception_score"]["num_splits"] == 1
    on_disk = read_evals(str(workdir))
    assert all("inception_score" in rows[0] for rows in on_disk.values())


def test_the_extractor_gives_features_and_logits_in_one_pass():
    """The real extractor (random weights with the classifier): the features of
    `features_and_logits` are those of a plain call, the logits pool3 · fc.weightᵀ."""
    sd = mi.random_state_dict(4)
    extractor = FeatureExtractor(mi.convert_state_dict(sd), batch_size=2,
                                 devices=jax.local_devices()[:1])
    assert extractor.has_logits
    images = np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    feats, logits = extractor.features_and_logits(images)  # 2 batches, the last one padded
    assert feats.shape == (3, 2048) and logits.shape == (3, 1008)
    np.testing.assert_allclose(feats, extractor(images), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logits, IS.logits_from_pool3(feats, sd["fc.weight"]), rtol=1e-4,
                               atol=1e-4)

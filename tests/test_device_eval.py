"""Evaluation on the device: the jnp metrics equal the numpy float64 references, the chunked
generate → features pass equals the unchunked one, and the compiled evaluation programs of
CelebA-64 at K = 16 fit a device's memory (shapes only)."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp.metrics import device_eval, evaluators, fid, kid, ondevice, precision_recall
from gancmp.metrics import inception_score as IS
from gancmp.train import samples as samples_lib
from gancmp.train import step as step_lib
from gancmp.train.state import init_states
from gancmp.trial import make_trial
from tests.helpers import load_config, tiny_infogan_config

GiB = 2 ** 30


def _features(n, d, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.gamma(2.0, 0.3, (n, d)) * scale).astype(np.float32)


def test_device_kid_and_precision_recall_equal_numpy():
    real, fake = _features(203, 24, 0), _features(187, 24, 1, scale=1.15)
    args = {"num_subsets": 12, "subset_size": 90, "seed": 7}
    want = kid.kernel_inception_distance(real, fake, **args)
    real_idx, fake_idx = ondevice.kid_subsets(args["seed"], args["num_subsets"],
                                              args["subset_size"], len(real), len(fake))
    terms = ondevice.kid_real_terms(jnp.asarray(real), jnp.asarray(real_idx))
    masks = ondevice.subset_masks(real_idx, len(real)), ondevice.subset_masks(fake_idx, len(fake))
    assert want.mean > 0.01  # a real difference, not rounding noise
    for k in (1, 3):
        np.testing.assert_allclose(  # row blocks of 64: padded, not a multiple of n
            np.sqrt(ondevice.knn_radii_sq(jnp.asarray(fake), k, 64)),
            precision_recall.knn_radii(fake, k), rtol=1e-4)
        ref = precision_recall.precision_recall(real, fake, k=k)
        got = ondevice.precision_recall_kid(jnp.asarray(real), ondevice.knn_radii_sq(real, k),
                                            terms, masks[0], jnp.asarray(fake), masks[1], k,
                                            block=64)
        assert 0 < ref.precision < 1 and 0 < ref.recall < 1
        assert float(got.precision) == pytest.approx(ref.precision, rel=1e-4)
        assert float(got.recall) == pytest.approx(ref.recall, rel=1e-4)
        values = np.asarray(got.kid_values, np.float64)
        assert values.mean() == pytest.approx(want.mean, rel=1e-4)
        assert values.std() == pytest.approx(want.std, rel=1e-3)

    mu, sigma = ondevice.moments(jnp.asarray(fake))
    np.testing.assert_allclose(mu, fake.mean(0, dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(sigma, np.cov(fake.astype(np.float64), rowvar=False),
                               rtol=1e-4, atol=1e-6)


def test_inception_score_from_chunked_sums_equals_the_logits_version():
    logits = np.random.default_rng(2).normal(0, 3, (1003, 1008)).astype(np.float32)
    want = IS.inception_score_from_logits(logits, 10)
    p_sum, plogp = 0, 0
    for start in range(0, 1003, 128):  # chunks that straddle the splits; 3 samples in none
        index = jnp.arange(start, min(start + 128, 1003))
        a, b = ondevice.is_split_sums(jnp.asarray(logits[start:start + 128]), index, 1003, 10)
        p_sum, plogp = p_sum + np.asarray(a, np.float64), plogp + np.asarray(b, np.float64)
    got = ondevice.inception_score_from_sums(p_sum, plogp, 1003)
    assert got == (pytest.approx(want.mean, rel=1e-4), pytest.approx(want.std, rel=1e-3))


class PoolFeatures:
    """A tiny jnp feature network: 7×7 mean pooling of grey images → 16-d features, and
    logits = 10 · features · W [16, 1008]; `apply` is traced into the chunk program as the real
    extractor's is."""

    dims, has_logits = 16, True

    def __init__(self):
        self.variables = {"w": jnp.asarray(np.random.default_rng(3).normal(0, 2, (16, 1008)),
                                           jnp.float32)}

    def apply(self, variables, images, logits=False):
        n = images.shape[0]
        x = images.mean(-1).reshape(n, 4, 7, 4, 7).mean((2, 4)).reshape(n, 16)
        return x, (10 * x @ variables["w"] if logits else None)


class GeneratorState(NamedTuple):
    """What sampling needs of a stacked TrainState (G's params and batch-norm statistics)."""

    g_params: dict
    g_state: dict


def test_chunked_evaluation_equals_unchunked(monkeypatch):
    config = tiny_infogan_config(dataset="mnist")
    setup = make_trial(config).setup
    g, _ = setup.networks()
    z_init = jnp.zeros((2, setup.z_dim))
    variables = jax.vmap(lambda key: g.init(key, z_init, train=False))(
        jax.random.split(jax.random.key(0), 2))
    # params ×5: images far from v1's near-constant 0.5 at initialisation, so features vary
    states = GeneratorState(jax.tree.map(lambda a: 5 * a, variables.pop("params")), variables)
    n = 50
    z = step_lib.eval_latents(5, n, setup.z_dim, setup.method.prior)
    ex = PoolFeatures()
    gen = samples_lib.generator_of(setup)
    samples = evaluators.generate_group(gen, states, z, chunk=13)  # the host reference
    want = jax.vmap(lambda x: ex.apply(ex.variables, x, logits=True))(jnp.asarray(samples))
    want_is = [IS.inception_score_from_logits(np.asarray(lg), 5) for lg in want[1]]
    # the device loop in segments of 3 chunks (3, 3, 1): each segment's features to the host
    monkeypatch.setattr(device_eval, "SEGMENT_BYTES", 3 * 2 * 8 * 16 * 4)
    for loop in ("python", "device"):  # 4 devices: 8 samples per trial per chunk, 7 chunks
        gf = device_eval.GroupFeatures(gen, ex, n, z, chunk=7, logits=True, num_splits=5,
                                       loop=loop)
        carry = gf(states)
        assert gf.num_chunks == 7 and gf.chunk == 8 and np.asarray(carry["finite"]).all()
        assert gf.segment_length(2) == 3
        feats = np.asarray(carry["features"]).reshape(2, -1, 16)[:, :n]
        np.testing.assert_allclose(feats, want[0], rtol=1e-5, atol=1e-6)
        for i, ref in enumerate(want_is):
            got = ondevice.inception_score_from_sums(np.asarray(carry["p_sum"][i], np.float64),
                                                     np.asarray(carry["plogp_sum"][i]), n)
            assert ref.mean > 1.5 and ref.std > 1e-3
            assert got == (pytest.approx(ref.mean, rel=1e-4), pytest.approx(ref.std, rel=1e-3))

    # the metrics of the chunked features equal numpy's of the unchunked ones
    real_feats = np.asarray(want[0][0])[::-1] * 1.1 + 0.01
    stats = fid.FeatureStats().update(real_feats)
    reference = fid.ReferenceStats(*stats.statistics(), real_feats, n, {}, "r", None)
    kid_args = {"num_subsets": 4, "subset_size": 20, "seed": 1}
    real = device_eval.real_side(reference, n, 3, kid_args)
    rows = device_eval.finish(carry, device_eval.group_metrics(real, carry["features"], n),
                              reference, n, 5)
    for row, x in zip(rows, np.asarray(want[0], np.float64), strict=True):
        mu, sigma = fid.FeatureStats().update(x).statistics(min_samples=2)
        assert row["fid"] == pytest.approx(
            fid.frechet_distance(reference.mu, reference.sigma, mu, sigma), rel=1e-4)
        assert row["kid"] == pytest.approx(
            kid.kernel_inception_distance(real_feats, x, **kid_args).mean, rel=1e-3, abs=1e-6)
        pr = precision_recall.precision_recall(real_feats, x, k=3)
        assert (row["precision"], row["recall"]) == (pytest.approx(pr.precision),
                                                     pytest.approx(pr.recall))


def _memory(compiled) -> int:
    """Bytes a compiled program needs on its device: arguments + outputs − donated + temps."""
    m = compiled.memory_analysis()
    return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
            + m.temp_size_in_bytes)


def test_celeba_evaluation_at_16_trials_fits_4_gib_per_device():
    """The real Inception-v3 (zero weights of its shapes, with the classifier) and CelebA-64's
    DCGAN at K = 16, N = 10,000, as an accelerator runs them (whole per-device batch per network
    pass, the chunk loop on the device): compiled on CPU for one device, never run."""
    from gancmp.metrics.features import FeatureExtractor
    from gancmp.nets import inception as net

    config = load_config("celeba_dcgan")
    setup = make_trial(config, num_devices=1).setup
    k, n = 16, 10_000
    states = jax.eval_shape(lambda: init_states(setup, list(range(k)),
                                                [make_trial(config).hparams] * k))
    variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), net.variable_shapes(True))
    device = jax.local_devices()[:1]
    extractor = FeatureExtractor(variables, micro_batch=0, devices=device, cpu_ops=False)
    assert extractor.has_logits and extractor.micro_batch is None
    z = step_lib.eval_latents(0, n, setup.z_dim, setup.method.prior)
    gf = device_eval.GroupFeatures(samples_lib.generator_of(setup), extractor, n, z,
                                   chunk=extractor.batch_size // k, logits=True, num_splits=10,
                                   loop="device", devices=device)
    features_pass = _memory(gf.lower(k, states).compile())
    shape = functools.partial(jax.ShapeDtypeStruct, dtype=jnp.float32)
    real = device_eval.RealSide(shape((n, 2048)), shape((n,)), shape((100, n)),
                                shape((100, n)), shape((100,)), 3,
                                (("num_subsets", 100), ("seed", 0), ("subset_size", 1000)))
    metrics = _memory(device_eval.group_metrics.lower(real, gf.features_shape(k), n).compile())
    features_bytes = k * gf.num_chunks * gf.chunk * 2048 * 4  # the kept features
    assert features_pass < 4 * GiB and metrics < 4 * GiB, (features_pass / GiB, metrics / GiB)
    assert metrics > features_bytes  # the metrics program holds the features, ...
    assert features_pass < features_bytes  # ... the features pass does not: they go to the host

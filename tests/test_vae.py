"""The VAE baseline (compare_gan v1 `gans/VAE.py`): its ELBO terms by hand, its update, its place
in the registry and the sweep selections, and a tiny polygon trial trained and scored."""

import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gancmp import latents, losses, methods
from gancmp.config import ConfigError
from gancmp.data import synthetic
from gancmp.sweep import study as study_lib
from gancmp.train import group as group_lib
from gancmp.train import loop
from gancmp.train import step as step_lib
from gancmp.train.workdir import RESULT_FILE
from gancmp.trial import make_trial
from tests.helpers import (
    group_of,
    load_config,
    loss_trajectory,
    tiny_image_data,
    tiny_infogan_config,
)


def test_kl_is_the_closed_form_for_a_hand_picked_gaussian():
    # μ = (1, 0, −2), log σ² = (0, log 4, −2): KL = ½ Σ (μ² + σ² − log σ² − 1)
    mean = jnp.array([[1.0, 0.0, -2.0]])
    log_var = jnp.array([[0.0, math.log(4.0), -2.0]])
    by_hand = 0.5 * ((1 + 1 - 0 - 1) + (0 + 4 - math.log(4) - 1) + (4 + math.exp(-2) + 2 - 1))
    got = losses.gaussian_kl(mean, jnp.exp(0.5 * log_var))
    assert got.shape == (1,) and float(got[0]) == pytest.approx(by_hand, rel=1e-6)
    # the prior itself: no divergence
    assert float(losses.gaussian_kl(jnp.zeros((1, 5)), jnp.ones((1, 5)))[0]) == pytest.approx(
        0.0, abs=1e-6)


def test_bernoulli_nll_by_hand():
    """Summed over pixels, averaged over channels (v1 sums axes 1, 2); p clipped at 1e−8."""
    x = jnp.array([1.0, 0.0, 1.0, 0.0]).reshape(1, 2, 2, 1)
    p = jnp.array([0.8, 0.3, 0.5, 0.0]).reshape(1, 2, 2, 1)
    by_hand = -(math.log(0.8) + math.log(0.7) + math.log(0.5) + math.log(1.0 - 1e-8))
    assert float(losses.bernoulli_nll(x, p)[0]) == pytest.approx(by_hand, rel=1e-6)
    two = jnp.concatenate([p, jnp.full_like(p, 0.5)], axis=-1)  # 2 channels: their mean
    expected = 0.5 * (by_hand + 2 * math.log(2.0) + 2 * math.log(2.0))
    assert float(losses.bernoulli_nll(jnp.concatenate([x, x], -1), two)[0]) == pytest.approx(
        expected, rel=1e-6)
    assert float(losses.bernoulli_nll(x, jnp.zeros_like(x))[0]) == pytest.approx(
        -2 * math.log(1e-8), rel=1e-4)  # finite at p = 0 (clipped)


def test_the_vae_method_is_one_registry_entry():
    vae = methods.get("VAE")
    assert (vae.trainer, vae.discriminator, vae.prior, vae.loss) == (
        "vae", "encoder", "normal", "vae")
    assert vae.hparams()["lr"] == 5e-5 and vae.hparams()["beta1"] == 0.5  # v1 VAEHyperParams
    assert all(methods.get(n).trainer == "gan" for n in methods.PAPER_METHODS)
    with pytest.raises(ValueError, match="'vae' trainer and the 'encoder' discriminator"):
        methods.register(methods.Method("HALF_VAE", "vae", trainer="vae"))
    assert "HALF_VAE" not in methods.names()


@pytest.mark.parametrize("overrides, field", [
    (dict(dataset="ring8", arch="mlp"), "config.method"),
    (dict(dataset="cifar10", arch="dcgan"), "config.arch"),
])
def test_vae_is_refused_off_images_or_off_infogan_in_one_line(overrides, field):
    config = load_config("ring8_mlp", method="VAE", **overrides)
    with pytest.raises(ConfigError) as info:
        make_trial(config)
    message = str(info.value)
    assert message.startswith(field) and "\n" not in message and "VAE" in message


def test_polygons_config_takes_the_vae():
    setup = make_trial(load_config("polygons_infogan", method="VAE")).setup
    decoder, encoder = setup.networks()
    x = jnp.zeros((2, 28, 28, 1))
    variables = encoder.init(jax.random.key(0), x, train=False)
    mean, std = encoder.apply(variables, x, train=False)
    assert mean.shape == std.shape == (2, 64) and bool(jnp.all(std > 0))
    # the encoder's head: 2·z_dim units on the InfoGAN D's 1024-unit body
    assert variables["params"]["Dense_1"]["kernel"].shape == (1024, 128)
    z = jnp.zeros((2, 64))
    out = decoder.apply(decoder.init(jax.random.key(1), z, train=False), z, train=False)
    assert out.shape == (2, 28, 28, 1)


def _elbo(setup, state, images, eps):
    """Batch mean of the negative ELBO at fixed ε, training-mode batch norm (as the step)."""
    g, d = setup.networks()
    (mean, std), _ = d.apply({"params": state.d_params, **state.d_state}, images, train=True,
                             mutable=["batch_stats"])
    recon, _ = g.apply({"params": state.g_params, **state.g_state}, mean + std * eps, train=True,
                       mutable=["batch_stats"])
    return float(jnp.mean(losses.bernoulli_nll(images, recon) + losses.gaussian_kl(mean, std)))


def test_one_vae_step_lowers_the_elbo_loss_on_a_fixed_batch():
    """A data set of exactly one batch, two vmapped trials (two learning rates): after one update
    the negative ELBO of that batch is lower for both, at ε = 0 and at a fixed draw of ε; the
    encoder lives in D's slot, the decoder in G's, and the step counts one D update."""
    config = tiny_infogan_config(method="VAE", steps_per_call=1)
    setup = make_trial(config, num_devices=1).setup
    data = tiny_image_data(n=setup.batch_size)
    hp = make_trial(config).hparams
    hps = [dict(hp, lr=1e-3), dict(hp, lr=3e-4)]
    group = group_lib.create_group(group_of(config, [0, 1], hps, like=setup), data.arrays)
    before = jax.device_get(group.states)
    after, metrics = group.train_fn(group.states, group.arrays)
    after, metrics = jax.device_get((after, metrics))
    assert set(metrics) == {"loss", "nll", "kl"}
    np.testing.assert_allclose(metrics["loss"], metrics["nll"] + metrics["kl"], rtol=1e-5)
    images = jnp.asarray(data.arrays["train"], jnp.float32) / 255.0
    eps = latents.sample(jax.random.key(7), (setup.batch_size, setup.z_dim), "normal")
    for i in range(2):
        one = lambda tree, i=i: jax.tree.map(lambda a: a[i], tree)  # noqa: E731
        s0, s1 = one(before), one(after)
        assert int(s1.step) == 1
        assert s0.d_params["Dense_1"]["kernel"].shape[-1] == 2 * setup.z_dim  # the encoder
        for e in (jnp.zeros_like(eps), eps):
            assert _elbo(setup, s1, images, e) < _elbo(setup, s0, images, e)


def test_vae_four_devices_equal_one_device():
    """The update is written in the pmap model like the GANs': batch statistics and gradients
    averaged over devices, ε drawn per global example."""
    config = tiny_infogan_config(method="VAE", lr=1e-4)
    data = tiny_image_data()
    one, _ = loss_trajectory(config, 1, calls=4, data=data)
    four, _ = loss_trajectory(config, 4, calls=4, data=data)
    for x, y in zip(one, four, strict=True):
        for name in x:
            np.testing.assert_allclose(x[name], y[name], rtol=1e-5, atol=1e-4, err_msg=name)


def test_eval_noise_follows_the_prior():
    uniform = np.asarray(step_lib.eval_latents(3, 4000, 8))
    normal = np.asarray(step_lib.eval_latents(3, 4000, 8, "normal"))
    assert uniform.min() >= -1 and uniform.max() <= 1
    assert abs(normal.std() - 1) < 0.03 and np.abs(normal).max() > 2.5
    # the uniform draw is the one every GAN evaluation used before priors had names
    same = jax.random.uniform(jax.random.key(3), (4000, 8), minval=-1.0, maxval=1.0)
    assert np.array_equal(uniform, np.asarray(same))


def test_tiny_polygon_vae_trial_trains_and_is_scored(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "SPLITS", {"train": 64, "test": 8, "heldout": 400})
    config = tiny_infogan_config(method="VAE", data_dir=str(tmp_path / "data"), eval_every=4,
                                 lr=1e-3)
    config.eval.update(num_samples=64, bank_size=1_000, calibration_size=300, recall_size=8,
                       steps=10, restarts=1)
    workdir = tmp_path / "trial"
    record = loop.train_trial(make_trial(config), str(workdir), progress=False)[0]
    assert record.status == "finished" and record.steps == 8
    assert [e["step"] for e in record.evals] == [4, 8]
    for e in record.evals:
        assert e["status"] == "ok" and 0 <= e["precision"] <= 1 and 0 <= e["recall"] <= 1
        assert e["f1"] == pytest.approx(0.0 if e["precision"] + e["recall"] == 0 else
                                        2 * e["precision"] * e["recall"]
                                        / (e["precision"] + e["recall"]))
    assert record.best["metric"] == "f1" and record.method == "VAE"
    assert set(record.final_losses) == {"loss", "nll", "kl"}
    assert json.loads((workdir / RESULT_FILE).read_text())["best"] == record.best


def _study(methods_selection: str, trial_config: str = "ring8_mlp"):
    s = ml_collections.ConfigDict()
    s.name = "s"
    s.trial = load_config(trial_config)
    s.methods = methods_selection
    s.phases = [ml_collections.ConfigDict(dict(name="p", mode="tuned", range="wide",
                                               num_settings=2, seeds=[0]))]
    sweep = ml_collections.ConfigDict()
    sweep.name, sweep.seed, sweep.imports, sweep.studies = "x", 0, "", [s]
    return sweep, s


def test_sweep_selections():
    assert study_lib.method_names("paper") == [*methods.PAPER_METHODS, "VAE"]  # v1's "gan8"
    assert study_lib.method_names("paper_gans") == list(methods.PAPER_METHODS)
    sweep, ring = _study("all")
    assert "VAE" not in study_lib.method_names("all", ring.trial)  # 2-D data: not for the VAE
    assert "VAE" in study_lib.method_names("all")
    study_lib.validate(sweep)
    sweep, _ = _study("paper")
    with pytest.raises(ConfigError, match="study 's' methods: config.method: VAE trains on"):
        study_lib.validate(sweep)
    sweep, polygons = _study("paper", "polygons_infogan")
    study_lib.validate(sweep)
    trials = study_lib.expand_phase(sweep, polygons, polygons.phases[0], [])
    vae = [t for t in trials if t.method == "VAE"]
    assert len(trials) == 8 * 2 and len(vae) == 2
    assert {t.hparams["disc_iters"] for t in vae} == {1}

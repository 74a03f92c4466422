"""Where gancmp follows compare_gan v1 (the paper's code) because it changes results: the
generator update's z, BEGAN's D without batch norm, the checkpoint cadence, the seeds phase,
the data order, TF1's Adam and the conv initialiser."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gancmp import losses, methods
from gancmp.config import ConfigError, load_config_file
from gancmp.sweep import space
from gancmp.sweep.study import expand_phase, seeds_phase_seeds, validate
from gancmp.train import group as group_lib
from gancmp.train import loop, schedule
from gancmp.train import step as step_lib
from gancmp.train.state import make_optimizer
from gancmp.trial import make_trial
from tests.helpers import ROOT, group_of, load_config, tiny_image_data, tiny_infogan_config

# ---------------------------------------------------------------- the generator update's z


def test_only_wgan_gp_resamples_z_for_the_generator():
    resampling = {m for m in methods.PAPER_METHODS if methods.get(m).resample_z_for_g}
    assert resampling == {"WGAN_GP"}
    config = load_config("ring8_mlp", method="NS_GAN")
    assert not make_trial(config).setup.resample_z_for_g
    config.resample_z_for_g = True  # the option: fresh z for any method
    assert make_trial(config).setup.resample_z_for_g
    assert make_trial(load_config("ring8_mlp", method="WGAN_GP")).setup.resample_z_for_g


def test_generator_latents_are_the_last_discriminator_updates():
    key = jax.random.key_data(jax.random.key(3))
    positions = jnp.arange(8)
    reuse = make_trial(load_config("ring8_mlp", method="NS_GAN", disc_iters=5,
                                   num_d_steps=100)).setup
    fresh = make_trial(load_config("ring8_mlp", method="WGAN_GP", num_d_steps=100)).setup
    done = jnp.asarray(10)  # the G update after D updates 5..9 (0-based) of the second iteration
    d_z = [step_lib.d_latents(key, s, positions, reuse.z_dim) for s in range(10)]
    z = step_lib.g_latents(reuse, key, done, positions)
    np.testing.assert_array_equal(z, d_z[9])
    assert all(not np.allclose(z, d_z[s]) for s in range(9))
    z_fresh = step_lib.g_latents(fresh, key, done, positions)
    assert z_fresh.shape == (8, fresh.z_dim)
    assert all(not np.allclose(z_fresh, d) for d in d_z)


@pytest.mark.parametrize("resample", [False, True])
def test_generator_loss_is_computed_on_the_last_discriminator_z(resample):
    """An iteration (2 D updates, 1 G update) of NS-GAN after 20 others (so that G's samples
    depend on z); its logged G loss recomputed by hand from G before it and D after its two D
    updates, on its second D update's z (v1) or, when resampling, on the G stream's z."""
    config = load_config("ring8_mlp", method="NS_GAN", disc_iters=2, num_d_steps=60,
                         checkpoint_every=60, batch_size=16, steps_per_call=1, lr=0.01,
                         resample_z_for_g=resample)
    setup = make_trial(config, num_devices=1).setup
    group = group_lib.create_group(group_of(config, [7], like=setup), {})
    states = group.states
    for _ in range(20):
        states, _ = group.train_fn(states, group.arrays)
    before = jax.device_get(jax.tree.map(lambda x: x[0], states))
    states, metrics = group.train_fn(states, group.arrays)
    after = jax.device_get(jax.tree.map(lambda x: x[0], states))
    g, d = setup.networks()
    positions = jnp.arange(16)
    assert int(before.step) == 40
    last_d_z = step_lib.d_latents(before.key, 41, positions, setup.z_dim)

    def g_loss_on(z):
        fake, _ = g.apply({"params": before.g_params, **before.g_state}, z, train=True,
                          mutable=list(before.g_state))
        d_fake = d.apply({"params": after.d_params}, fake, train=True)
        return float(losses.apply("ns", d_fake, d_fake)[1])

    logged = float(np.asarray(metrics["g_loss"])[0, 0])
    on_last = g_loss_on(last_d_z)
    if resample:
        fresh_z = step_lib.g_latents(setup, before.key, jnp.asarray(42), positions)
        np.testing.assert_allclose(logged, g_loss_on(fresh_z), rtol=1e-5)
        assert abs(logged - on_last) > 1e-3, (logged, on_last)
    else:
        np.testing.assert_allclose(logged, on_last, rtol=1e-5)


# ---------------------------------------------------------------- BEGAN's D


@pytest.mark.parametrize("range_name", space.RANGES)
def test_began_default_setting_has_no_batch_norm_in_d(range_name):
    """v1 `params.py` BEGANHyperParams: discriminator_batchnorm False in both ranges."""
    setting0 = space.sample_settings(methods.get("BEGAN"), range_name, 3, seed=0)[0]
    assert setting0["d_batch_norm"] is False
    assert not make_trial(load_config("ring8_mlp", method="BEGAN", d_batch_norm=None,
                                      disc_iters=1)).setup.d_batch_norm


# ---------------------------------------------------------------- checkpoints and device calls


def test_paper_checkpoints_every_five_epochs_and_at_the_end():
    """v1: `5 * epoch // 64` D updates (3,906 for 50k examples, 12,656 for CelebA's 162k) and
    the end of the budget; v1's checkpoint at loop step 15,624 holds 15,625 updates, its final
    model, so here MNIST's last interval checkpoint is the end."""
    sweep = load_config_file(os.path.join(ROOT, "configs", "sweeps", "lucic2018.py"))
    steps = {s.name: schedule.checkpoint_steps(s.trial.num_d_steps, s.trial.checkpoint_every, 1)
             for s in sweep.studies}
    assert steps["mnist"] == steps["fashion_mnist"] == [3906, 7812, 11718, 15625]
    assert steps["cifar10"] == [3906 * k for k in range(1, 21)] + [78_125]
    assert steps["celeb_a"] == [12_656 * k for k in range(1, 9)] + [101_250]
    # disc_iters 5: the interval rounds down to whole iterations (5 D + 1 G updates)
    assert schedule.checkpoint_steps(15_625, 3_906, 5) == [3905, 7810, 11715, 15625]
    # an interval checkpoint more than one iteration before the end stays (CIFAR-10: 5 updates)
    assert schedule.checkpoint_steps(26, 6, 2) == [6, 12, 18, 26]
    assert schedule.checkpoint_steps(28, 6, 2)[-2:] == [24, 28]


@pytest.mark.parametrize("disc_iters, fixed_count, main, tail, calls",
                         [(1, False, 100, 100, 3 * 40 + 40), (5, False, 100, 100, 3 * 8 + 8),
                          (1, True, 93, 1, 3 * 42 + 43), (5, True, 71, 1, 3 * 11 + 12)])
def test_calls_land_on_every_checkpoint(disc_iters, fixed_count, main, tail, calls):
    """MNIST on an accelerator (up to 100 iterations per call), checkpoints at 3,906 · k for
    k = 1..3 and 15,625. The count an argument (TPU), one program: 3,906 = 39 · 100 + 6
    iterations between checkpoints and 3,907 = 39 · 100 + 7 in the last stretch (at
    `disc_iters` 5: 781 = 7 · 100 + 81 and 782 = 7 · 100 + 82). A fixed count per program
    (`config.loop_count="fixed"`), a program per call size: 3,906 = 42 · 93 and 3,907 = 42 · 93
    + 1 (at 5: 781 = 11 · 71 and 782 = 11 · 71 + 1)."""
    plan = schedule.plan(15_625, 3_906, disc_iters, target=100, unroll=False,
                         count_argument=not fixed_count)
    assert (plan.main, plan.tail, plan.count_argument) == (main, tail, not fixed_count)
    step, ends = 0, []
    while step < plan.total:
        step += plan.iterations_at(step) * disc_iters
        ends.append(step)
    want = schedule.checkpoint_steps(15_625, 3_906, disc_iters)
    assert [s for s in ends if plan.is_checkpoint(s)] == want and set(want) <= set(ends)
    assert len(ends) == calls


def test_loop_checkpoints_on_a_budget_that_is_not_a_multiple_of_the_interval(tmp_path):
    """25 D updates, checkpoints every 6 and at 25 (24, one update before the end, is not
    taken: `schedule.checkpoint_steps`); 28 at disc_iters 2: an interval of 7 rounds down to
    6, and 24 is more than one iteration before the end."""
    seen = []
    config = load_config("ring8_mlp", num_d_steps=25, checkpoint_every=6, batch_size=32)
    loop.train_group(group_of(config, [0]), str(tmp_path / "a"), progress=False,
                     on_checkpoint=lambda step, states: seen.append(step))
    assert seen == [6, 12, 18, 25]
    seen.clear()
    config = load_config("ring8_mlp", num_d_steps=28, checkpoint_every=7, disc_iters=2,
                         batch_size=32)
    loop.train_group(group_of(config, [0]), str(tmp_path / "b"), progress=False,
                     on_checkpoint=lambda step, states: seen.append(step))
    assert seen == [6, 12, 18, 24, 28]


# ---------------------------------------------------------------- seeds phase and data order


def _phase_records(sweep, study, phase):
    """Finished records of every trial of a tuned phase, setting 1 of each method the best."""
    trials = expand_phase(sweep, study, phase, [])
    return [{"study": study.name, "phase": phase.name, "phase_size": len(trials),
             "trial_id": t.trial_id, "method": t.method, "setting": t.setting, "seed": t.seed,
             "hparams": dict(t.hparams), "best": {"score": float(t.setting == 1)}}
            for t in trials]


@pytest.mark.parametrize("protocol, seeds", [("v1", [1, 2, 3]),
                                             ("independent", [1000, 1001, 1002])])
def test_seeds_phase_seeds(protocol, seeds):
    """The best setting (of a phase run with seed 0) re-run with fresh seeds: never the selected
    run's own seed 0 (issue 24, item 5: v1's retrained seed 0 was close to a fresh draw)."""
    sweep = ml_collections.ConfigDict(dict(name="t", seed=0, max_trials_per_group=4, imports=""))
    study = ml_collections.ConfigDict(dict(name="ring8", methods="NS_GAN,WGAN"))
    study.trial = load_config("ring8_mlp", num_d_steps=20, checkpoint_every=10)
    tuned = ml_collections.ConfigDict(dict(name="tuned", mode="tuned", range="narrow",
                                           num_settings=3, seeds=[0]))
    phase = ml_collections.ConfigDict(dict(name="seeds", mode="seeds", source="tuned",
                                           num_seeds=3, seed_protocol=protocol))
    sweep.studies = [study]
    study.phases = [tuned, phase]
    validate(sweep)
    trials = expand_phase(sweep, study, phase, _phase_records(sweep, study, tuned))
    by_method = {}
    for t in trials:
        assert t.setting == 1
        by_method.setdefault(t.method, []).append(t.seed)
    assert by_method == {"NS_GAN": seeds, "WGAN": seeds}
    phase.seed_protocol = "v2"
    with pytest.raises(ConfigError, match="seed_protocol: unknown 'v2'"):
        validate(sweep)


def test_seeds_phase_seeds_skip_the_selected_runs_seed():
    assert seeds_phase_seeds("v1", 3, exclude=(1,)) == [0, 2, 3]
    assert seeds_phase_seeds("v1", 3, exclude=(7,)) == [0, 1, 2]
    assert seeds_phase_seeds("independent", 2, exclude=(1000,)) == [1001, 1002]


def test_a_fixed_data_order_seed_gives_trials_of_other_seeds_the_same_batches():
    data = tiny_image_data(n=64)
    positions = jnp.arange(16)

    def batches(seed, **overrides):
        setup = make_trial(tiny_infogan_config(num_devices=1, **overrides)).setup
        key = jax.random.key_data(jax.random.key(seed))
        return np.stack([setup.sampler.batch(data.arrays, step_lib.data_key(setup, key), s, 16,
                                             positions) for s in range(6)])

    own_3, own_5, own_0 = batches(3), batches(5), batches(0)
    assert not np.allclose(own_3, own_5)  # by default each seed has its own order
    np.testing.assert_array_equal(batches(3, data_order_seed=0), own_0)
    np.testing.assert_array_equal(batches(5, data_order_seed=0), own_0)
    with pytest.raises(ConfigError, match="config.data_order_seed"):
        make_trial(tiny_infogan_config(data_order_seed=-1))


# ---------------------------------------------------------------- TF1 Adam, conv initialiser


def _tf1_adam(grads, lr, b1, b2, eps=1e-8):
    """TF1 `AdamOptimizer`'s updates by hand (float64): lr_t = lr·√(1−β2^t)/(1−β1^t),
    θ ← θ − lr_t·m/(√v + ε)."""
    m, v, out = 0.0, 0.0, []
    for t, g in enumerate(grads.astype(np.float64), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        out.append(-lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps))
    return np.stack(out)


def test_adam_is_tf1s():
    """Gradients down to 1e-9, where ε matters: the trainer's Adam follows TF1's to float32
    rounding, and optax's plain ε (on √v̂) would not."""
    rng = np.random.default_rng(0)
    grads = (rng.normal(size=(8, 5)) * np.array([1e-9, 1e-8, 1e-7, 1e-3, 1.0])).astype(np.float32)
    hp = {"lr": jnp.float32(1e-3), "beta1": jnp.float32(0.5), "beta2": jnp.float32(0.999)}
    want = _tf1_adam(grads, 1e-3, 0.5, 0.999)

    def run(tx_for):
        params = jnp.zeros(5)
        opt = tx_for(None).init(params)
        out = []
        for g in grads:
            updates, opt = tx_for(opt).update(jnp.asarray(g), opt, params)
            params = optax.apply_updates(params, updates)
            out.append(updates)
        return np.stack(out)

    np.testing.assert_allclose(run(lambda opt: make_optimizer(hp, opt)), want, rtol=1e-5)
    plain = run(lambda opt: optax.adam(1e-3, b1=0.5, b2=0.999))
    assert np.max(np.abs(plain[:, 0] - want[:, 0]) / np.abs(want[:, 0])) > 0.1


def test_conv_kernels_are_truncated_normals_as_v1s():
    """v1 `ops.py`: conv2d kernels ~ truncated N(0, 0.02) (within ±0.04, stddev 0.02 · 0.880),
    deconv2d and linear ~ N(0, 0.02); the parameter tree is the InfoGAN's as before."""
    setup = make_trial(load_config("mnist_infogan")).setup
    g, d = setup.networks()
    d_params = d.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False)["params"]
    g_params = g.init(jax.random.key(0), jnp.zeros((1, 64)), train=False)["params"]
    assert sorted(d_params) == ["BatchNorm_0", "BatchNorm_1", "Conv_0", "Conv_1", "Dense_0",
                                "Dense_1"]
    conv = np.asarray(d_params["Conv_1"]["kernel"])  # [4, 4, 64, 128]
    assert conv.shape == (4, 4, 64, 128) and np.abs(conv).max() <= 0.04
    np.testing.assert_allclose(conv.std(), 0.02 * 0.8796, rtol=0.02)
    dense = np.asarray(d_params["Dense_0"]["kernel"])
    assert np.abs(dense).max() > 0.06 and abs(dense.std() - 0.02) < 2e-4
    deconv = np.asarray(jax.tree.leaves(g_params["ConvTranspose2x_0"])[-1])
    assert deconv.ndim == 4 and np.abs(deconv).max() > 0.06


def _recon_means(setup, g, d, state, step: int, data) -> tuple[float, float]:
    """L(x), L(G(z)) of trial 0 of `state` on the batch and z of D update `step` (0-based): a
    training-mode forward pass, as v1's `update_k` runs its graph."""
    one = jax.tree.map(lambda a: a[0], state)
    positions = jnp.arange(setup.batch_size)
    real = setup.sampler.batch(data, step_lib.data_key(setup, one.key), step, setup.batch_size,
                               positions)
    z = step_lib.d_latents(one.key, step, positions, setup.z_dim)
    fake, _ = step_lib._apply(g, one.g_params, one.g_state, z)
    d_real, _ = step_lib._apply(d, one.d_params, one.d_state, real)
    d_fake, _ = step_lib._apply(d, one.d_params, one.d_state, fake)
    return float(jnp.mean(d_real)), float(jnp.mean(d_fake))


def test_began_k_follows_v1_two_iterations_by_hand():
    """v1 updates k after the D and the G update, from a fresh forward pass of the *updated*
    networks on the same batch and z (`BEGAN.py` L162–171 via `abstract_gan.py` L218):
    k₁ = k₀ + λ(γ·L₁(x₀) − L₁(G₁(z₀))), k₂ = k₁ + λ(γ·L₂(x₁) − L₂(G₂(z₁))), k₀ = 0, with Lᵢ, Gᵢ
    the networks after iteration i. Not the D step's own pre-update errors (the former rule)."""
    assert methods.get("BEGAN").loss_state_update == "fresh"
    config = load_config("ring8_mlp", method="BEGAN", num_d_steps=2, checkpoint_every=2,
                         batch_size=16, num_devices=1, steps_per_call=1, disc_iters=1,
                         lambda_k=0.05, gamma=0.6)
    setup = make_trial(config).setup
    from gancmp.data import source as data_source

    data = data_source.load(setup.dataset)
    group = group_lib.create_group(group_of(config, [0], like=setup), data.arrays)
    g, d = setup.networks()
    current, k, trajectory = group.states, 0.0, []
    states = [jax.device_get(current)]  # the train function donates its input
    for _ in range(2):
        current, metrics = group.train_fn(current, group.arrays)
        states.append(jax.device_get(current))
        trajectory.append(float(np.asarray(metrics["loss_state"])[0, 0]))
    arrays = group.arrays
    for i in (1, 2):
        l_real, l_fake = _recon_means(setup, g, d, states[i], i - 1, arrays)
        k = k + 0.05 * (0.6 * l_real - l_fake)
        assert trajectory[i - 1] == pytest.approx(k, rel=1e-5, abs=1e-9)
        assert float(np.asarray(states[i].loss_state)[0]) == pytest.approx(k, rel=1e-5, abs=1e-9)
    # the former rule (the D step's errors, before its update) is a different signal
    l_real, l_fake = _recon_means(setup, g, d, states[0], 0, arrays)
    assert abs(0.05 * (0.6 * l_real - l_fake) - trajectory[0]) > 1e-4 * abs(trajectory[0])


def test_vae_narrow_default_has_no_d_batch_norm_as_v1():
    """v1 `params.VAEHyperParams` (L198–211): the narrow range's default has D batch norm off
    (`AddRange("discriminator_batchnorm", False, [True, False])`), the wide range's on
    (`GetDefaultWideRange`); both ranges still search {True, False}."""
    vae = methods.get("VAE")
    narrow = space.sample_settings(vae, "narrow", 40, seed=0)
    wide = space.sample_settings(vae, "wide", 40, seed=0)
    assert narrow[0]["d_batch_norm"] is False and wide[0]["d_batch_norm"] is True
    assert narrow[0] == {**wide[0], "d_batch_norm": False}  # nothing else differs
    assert {s["d_batch_norm"] for s in narrow[1:]} == {True, False}
    # the other paper methods keep one default in both ranges (v1's)
    for name in methods.PAPER_METHODS:
        m = methods.get(name)
        first = {r: space.sample_settings(m, r, 1, seed=0)[0] for r in ("wide", "narrow")}
        assert first["wide"] == first["narrow"] == m.hparams()
    assert methods.get("BEGAN").hparams()["d_batch_norm"] is False

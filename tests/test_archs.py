"""The dcgan, sndcgan and resnet architectures: output shapes, parameter counts against the
reference layer lists, spectral normalisation (power iteration converges to the top singular
value; its state is updated by D steps only), and one train step of every method on the MLP, of
the methods that reach into D (penalties, BEGAN) on dcgan and of every new architecture with
NS_GAN (pairwise coverage, to keep compile time down).

Programs here run once, on tiny networks, so they are compiled for compile time, not speed: XLA:CPU
backend optimisation level 0 without the fusion emitters compiles a train step about 5× faster
than the defaults (and runs it slower, which does not matter here).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gancmp import losses, methods, nets
from gancmp.config import ConfigError, base_config
from gancmp.nets import flops
from gancmp.train import step as step_lib
from gancmp.train.state import init_state
from gancmp.trial import make_trial, method_fits
from tests.helpers import ROOT, load_config

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
NEW_ARCHS = ("dcgan", "sndcgan", "resnet")
Z_DIM = 128


def _shapes(module, x):
    """Variables of `module` as ShapeDtypeStructs (nothing is computed)."""
    return jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))


def _count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


# --- shapes and parameter counts ------------------------------------------------------------

@pytest.mark.parametrize("arch", NEW_ARCHS)
@pytest.mark.parametrize("shape", [(32, 32, 3), (64, 64, 3), (32, 32, 1)])
def test_output_shapes(arch, shape):
    if not nets.supports(arch, shape):
        assert arch == "resnet" and shape[0] == 64
        return
    kinds = ["classifier", "autoencoder"] if nets.get(arch).has_autoencoder else ["classifier"]
    z, x = jnp.zeros((2, Z_DIM)), jnp.zeros((2, *shape))
    for kind in kinds:
        g, d = nets.build(arch, shape, discriminator=kind)
        images = jax.eval_shape(lambda v, g=g: g.apply(v, z, train=False), _shapes(g, z))
        out = jax.eval_shape(lambda v, d=d: d.apply(v, x, train=False), _shapes(d, x))
        assert images.shape == (2, *shape) and out.shape == (2,)


def _conv(k: int, c_in: int, c_out: int) -> int:
    """A k×k (transposed) convolution's kernel and bias."""
    return k * k * c_in * c_out + c_out


def _bn(c: int) -> int:
    return 2 * c  # scale and offset


def _dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _dcgan_counts(h: int, c: int) -> tuple[int, int, int]:
    """compare_gan v1 dcgan_architecture: G, D (with batch norm), and our DCGAN-style BEGAN AE."""
    s = (h // 16) ** 2
    g = (_dense(Z_DIM, 512 * s) + _bn(512)
         + _conv(5, 512, 256) + _bn(256) + _conv(5, 256, 128) + _bn(128)
         + _conv(5, 128, 64) + _bn(64) + _conv(5, 64, c))
    encoder = (_conv(5, c, 64) + _conv(5, 64, 128) + _bn(128) + _conv(5, 128, 256) + _bn(256)
               + _conv(5, 256, 512) + _bn(512))
    d = encoder + _dense(512 * s, 1)
    ae = (encoder + _dense(512 * s, 64) + _bn(64)
          + _dense(64, 512 * s) + _bn(512)
          + _conv(5, 512, 256) + _bn(256) + _conv(5, 256, 128) + _bn(128)
          + _conv(5, 128, 64) + _bn(64) + _conv(5, 64, c))
    return g, d, ae


def _sndcgan_counts(h: int, c: int) -> tuple[int, int]:
    """compare_gan sn_generator / sn_discriminator (SNGAN's standard CNN)."""
    s = (h // 8) ** 2
    g = (_dense(Z_DIM, 512 * s) + _bn(512 * s)  # batch norm on the FC output, per unit
         + _conv(4, 512, 256) + _bn(256) + _conv(4, 256, 128) + _bn(128)
         + _conv(4, 128, 64) + _bn(64) + _conv(3, 64, c))
    d = (_conv(3, c, 64) + _conv(4, 64, 128) + _conv(3, 128, 128) + _conv(4, 128, 256)
         + _conv(3, 256, 256) + _conv(4, 256, 512) + _conv(3, 512, 512) + _dense(512 * s, 1))
    return g, d


def _resnet_counts(c: int) -> tuple[int, int]:
    """SNGAN's CIFAR ResNet (Table 4 and the authors' code: 1×1 learnable shortcuts)."""
    g_block = _bn(256) + _conv(3, 256, 256) + _bn(256) + _conv(3, 256, 256) + _conv(1, 256, 256)
    g = _dense(Z_DIM, 4 * 4 * 256) + 3 * g_block + _bn(256) + _conv(3, 256, c)
    optimized = _conv(3, c, 128) + _conv(3, 128, 128) + _conv(1, c, 128)
    down = 2 * _conv(3, 128, 128) + _conv(1, 128, 128)
    plain = 2 * _conv(3, 128, 128)
    d = optimized + down + 2 * plain + _dense(128, 1)
    return g, d


@pytest.mark.parametrize("shape", [(32, 32, 3), (64, 64, 3), (32, 32, 1)])
def test_parameter_counts_match_the_reference_layers(shape):
    h, c = shape[0], shape[2]
    z, x = jnp.zeros((1, Z_DIM)), jnp.zeros((1, *shape))

    def counts(arch, **kw):
        g, d = nets.build(arch, shape, **kw)
        return _count(_shapes(g, z)["params"]), _count(_shapes(d, x)["params"])

    g_exp, d_exp, ae_exp = _dcgan_counts(h, c)
    assert counts("dcgan") == (g_exp, d_exp)
    assert counts("dcgan", discriminator="autoencoder")[1] == ae_exp
    d_no_bn = d_exp - _bn(128) - _bn(256) - _bn(512)
    assert counts("dcgan", d_batch_norm=False)[1] == d_no_bn
    assert counts("dcgan", spectral_norm=True)[1] == d_no_bn  # SN replaces D's batch norm
    assert counts("sndcgan") == _sndcgan_counts(h, c)
    if h == 32:
        assert counts("resnet") == _resnet_counts(c)
    if shape == (32, 32, 3):  # the published sizes, as a cross-check of the formulas
        assert counts("resnet") == (4_276_739, 1_053_825)  # SNGAN CIFAR: ≈4.3M and ≈1.0M


def test_width_multiplier_scales_every_channel_count():
    g, d = nets.build("sndcgan", (32, 32, 3), width=0.25)
    g_vars = _shapes(g, jnp.zeros((1, Z_DIM)))
    d_vars = _shapes(d, jnp.zeros((1, 32, 32, 3)))
    g_kernels = {leaf.shape for leaf in jax.tree.leaves(g_vars["params"]) if leaf.ndim > 1}
    assert g_kernels == {(128, 2048), (4, 4, 128, 64), (4, 4, 64, 32), (4, 4, 32, 16),
                         (3, 3, 16, 3)}
    assert d_vars["params"]["Conv_6"]["kernel"].shape == (3, 3, 128, 128)


def test_flops_count_spectrally_normalised_layers():
    """The analytic FLOP counter sees through nn.SpectralNorm (same count with and without)."""
    x = jnp.zeros((2, 32, 32, 3))
    for arch in ("dcgan", "sndcgan", "resnet"):
        macs = []
        for sn in (False, True):
            _, d = nets.build(arch, (32, 32, 3), spectral_norm=sn, d_batch_norm=False)
            macs.append(flops.forward_macs(d, _shapes(d, x), x, train=False))
        assert macs[0] == macs[1] > 0
    _, d = nets.build("sndcgan", (32, 32, 3))
    expected = 2 * sum(  # per example: output pixels × k·k·c_in × c_out, plus the FC
        (32 // s_total) ** 2 * k * k * c_in * c_out
        for (k, c_in, c_out, s_total) in [
            (3, 3, 64, 1), (4, 64, 128, 2), (3, 128, 128, 2), (4, 128, 256, 4),
            (3, 256, 256, 4), (4, 256, 512, 8), (3, 512, 512, 8)]) + 2 * 4 * 4 * 512
    assert flops.forward_macs(d, _shapes(d, x), x, train=False) == expected


# --- which architectures BEGAN can use, and what each accepts ---------------------------------

@pytest.mark.parametrize("arch", ["sndcgan", "resnet"])
def test_began_on_an_architecture_without_autoencoder_is_a_clear_error(arch):
    message = rf"{arch}.*BEGAN.*infogan, mlp, dcgan"
    with pytest.raises(ValueError, match=message):
        nets.build(arch, (32, 32, 3), discriminator="autoencoder")
    config = base_config()
    config.update(dict(dataset="cifar10", arch=arch, method="BEGAN"))
    with pytest.raises(ConfigError, match=rf"config.arch: method BEGAN.*{message}"):
        make_trial(config)  # caught with the config, before anything is built


def test_supports():
    for arch in ("dcgan", "sndcgan"):
        assert all(nets.supports(arch, s) for s in [(32, 32, 3), (64, 64, 3), (32, 32, 1)])
        assert not any(nets.supports(arch, s) for s in [(28, 28, 1), (48, 48, 3), (2,)])
    assert nets.supports("resnet", (32, 32, 3)) and nets.supports("resnet", (32, 32, 1))
    assert not nets.supports("resnet", (64, 64, 3)) and not nets.supports("resnet", (28, 28, 1))
    assert nets.names() == ["infogan", "mlp", "dcgan", "sndcgan", "resnet"]
    assert all(nets.get(arch).data for arch in nets.names())  # every one says what it takes
    assert not nets.supports("unknown", (32, 32, 3))
    with pytest.raises(KeyError, match="unknown arch 'unknown'; known: infogan, mlp, dcgan"):
        nets.build("unknown", (32, 32, 3))


# --- spectral normalisation -----------------------------------------------------------------

def _sn_layers(params, stats):
    """(kernel, stored σ) of every spectrally normalised layer: Flax keeps u and σ of layer L in
    'batch_stats'/…/SpectralNorm_i/'L/kernel/{u,sigma}', beside L's params in the same scope."""
    for name, sub in stats.items():
        if name.startswith("SpectralNorm"):
            layer = next(iter(sub)).split("/")[0]
            yield params[layer]["kernel"], sub[f"{layer}/kernel/sigma"]
        else:
            yield from _sn_layers(params[name], sub)


def _random_variables(module, x, seed=0):
    """Variables with the module's shapes filled on the host (no init program to compile):
    kernels ~ N(0, 0.02) as initialised, u ~ N(0, 1), everything else as Flax initialises."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if name.endswith("kernel']") or name.endswith("/u']"):
            scale = 1.0 if name.endswith("/u']") else 0.02
            return jnp.asarray(rng.normal(0, scale, leaf.shape), leaf.dtype)
        if name.endswith("sigma']") or name.endswith("scale']") or name.endswith("var']"):
            return jnp.ones(leaf.shape, leaf.dtype)
        return jnp.zeros(leaf.shape, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, _shapes(module, x))


@pytest.mark.parametrize("arch", NEW_ARCHS)
def test_power_iteration_makes_every_layer_1_lipschitz(arch):
    """After some D training-mode calls (one power-iteration step each), every spectrally
    normalised layer's kernel, as a [k·k·c_in, c_out] matrix divided by the stored σ, has top
    singular value ≈ 1; inference-mode calls leave the stored u and σ untouched."""
    _, d = nets.build(arch, (32, 32, 3), width=0.125, spectral_norm=True)
    x = jnp.zeros((1, 32, 32, 3))
    variables = _random_variables(d, x)
    params, stats = variables["params"], {"batch_stats": variables["batch_stats"]}

    def iterate(stats):
        def one(_, s):
            return d.apply({"params": params, **s}, x, train=True, mutable=["batch_stats"])[1]
        return jax.lax.fori_loop(0, 40, one, stats)

    stats = jax.jit(iterate)(stats)  # (default optimisation: 40 forward passes run fast)
    layers = list(_sn_layers(params, stats["batch_stats"]))
    assert len(layers) == {"dcgan": 5, "sndcgan": 8, "resnet": 11}[arch]  # every D layer
    for kernel, sigma in layers:
        matrix = np.asarray(kernel).reshape(-1, kernel.shape[-1]) / float(sigma)
        top = np.linalg.svd(matrix, compute_uv=False)[0]
        assert top == pytest.approx(1.0, abs=0.02)
    # train=False writes nothing (tracing would fail: the collection is not mutable here)
    jax.eval_shape(lambda v: d.apply(v, x, train=False), {"params": params, **stats})


# --- one train step: every method on dcgan, every new architecture with NS_GAN ----------------

_INITS: dict = {}


def _one_step(arch: str, method: str, num_devices: int):
    """One iteration (one D update, one G update) of a tiny trial: on dcgan, sndcgan and resnet
    1/16 of the channels, batch 4, random 32×32×3 images; on the MLP batch 8 of 2-D points.
    Returns (setup, metrics, state before, state after) of the single trial, on the host."""
    config = base_config()
    images = arch != "mlp"
    config.update(dict(dataset="cifar10" if images else "ring8", arch=arch, method=method,
                       batch_size=4 if images else 8, z_dim=16, disc_iters=1, bn_momentum=0.9,
                       num_devices=num_devices))
    if images:
        config.width_multiplier = 0.0625
    setup = make_trial(config).setup
    hp = make_trial(config).hparams
    keys = jax.random.key_data(jax.random.key(0))[None]
    hparams = {k: jnp.asarray([hp[k]], jnp.float32) for k in setup.method.numeric_names()}
    # The init program depends on the networks, the loss state and which hyperparameters the
    # method has; their values are inputs, so methods that share those share one compiled init.
    group = (arch, setup.method.discriminator, setup.d_batch_norm,
             losses.spec(setup.method.loss).stateful, tuple(sorted(hparams)))
    if group not in _INITS:
        init = jax.jit(jax.vmap(lambda k, h: init_state(setup, k, h)))
        _INITS[group] = init.lower(keys, hparams).compile(FAST_COMPILE)
    states = _INITS[group](keys, hparams)
    before = jax.device_get(states)
    mesh = step_lib.make_mesh(num_devices)
    replicated = NamedSharding(mesh, P())
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8) if images
             else rng.normal(size=(64, 2)).astype(np.float32))
    data = jax.device_put({"train": train}, replicated)
    states = jax.device_put(states, replicated)
    fn = step_lib.make_train_fn(setup, mesh, steps_per_call=1)
    one = np.int32(1)
    states, metrics = fn.lower(states, data, one).compile(FAST_COMPILE)(states, data, one)
    metrics = {k: np.asarray(v)[0, 0] for k, v in jax.device_get(metrics).items()}
    first = lambda tree: jax.tree.map(lambda a: np.asarray(a)[0], tree)  # noqa: E731
    return setup, metrics, first(before), first(jax.device_get(states))


def _assert_finite(metrics, state):
    for name, value in metrics.items():
        assert np.isfinite(value), name
    for leaf in jax.tree.leaves((state.g_params, state.d_params, state.d_state)):
        assert np.all(np.isfinite(leaf))


def _assert_one_update_of_both(before, after):
    assert int(after.step) == 1
    for net in ("g_params", "d_params"):
        changed = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b),
                                               getattr(before, net), getattr(after, net)))
        assert any(changed), net


# Pairwise coverage: every method on the MLP (a loss is a function of D's outputs, whatever the
# network), and on dcgan the methods whose computation reaches into D itself: a gradient
# penalty (differentiated through D's input, with its batch norm) or BEGAN's auto-encoder D.
# The VAE has its own tests on infogan.
@pytest.mark.parametrize("method", [n for n in methods.names()
                                    if method_fits(methods.get(n), "ring8", "mlp")])
def test_every_method_trains_one_step_on_the_mlp(method):
    _, metrics, before, after = _one_step("mlp", method, num_devices=1)
    _assert_finite(metrics, after)
    _assert_one_update_of_both(before, after)


DCGAN_METHODS = [n for n in methods.names() if method_fits(methods.get(n), "cifar10", "dcgan")
                 and (methods.get(n).penalty or methods.get(n).discriminator != "classifier")]


def test_the_methods_that_reach_into_d_are_the_penalised_ones_and_began():
    assert {"WGAN_GP", "DRAGAN", "NS_R1", "BEGAN"} <= set(DCGAN_METHODS)
    assert not {"NS_GAN", "WGAN", "HINGE", "VAE"} & set(DCGAN_METHODS)


@pytest.mark.parametrize("method", DCGAN_METHODS)
def test_methods_that_reach_into_d_train_one_step_on_dcgan(method):
    _, metrics, before, after = _one_step("dcgan", method, num_devices=1)
    _assert_finite(metrics, after)
    _assert_one_update_of_both(before, after)
    if methods.get(method).penalty:
        assert metrics["penalty"] > 0


@pytest.mark.parametrize("arch", ["sndcgan", "resnet"])
def test_every_new_architecture_trains_one_step(arch):
    """NS_GAN, 2 devices (cross-device batch norm in G; D's spectral-norm state stays replicated).
    The stored u and σ are exactly those of the two D calls of the D update (real batch, fake
    batch) with the pre-update kernels: the G update does not advance them."""
    setup, metrics, before, after = _one_step(arch, "NS_GAN", num_devices=2)
    _assert_finite(metrics, after)
    _, d = setup.networks()
    x = jnp.zeros((1, 32, 32, 3))

    def two_d_calls(params, state):
        for _ in range(2):
            _, state = d.apply({"params": params, **state}, x, train=True,
                               mutable=["batch_stats"])
        return state

    expected = jax.jit(two_d_calls).lower(before.d_params, before.d_state).compile(
        FAST_COMPILE)(before.d_params, before.d_state)
    assert jax.tree.structure(expected) == jax.tree.structure(after.d_state)
    for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(after.d_state), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(before.d_state), jax.tree.leaves(after.d_state), strict=True))


@pytest.mark.parametrize("name", sorted(
    f[:-3] for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py")))
def test_every_trial_config_is_valid(name):
    """Each trial config in configs/ passes the same validation as `gancmp train`."""
    config = load_config(name)
    setup = make_trial(config).setup
    assert setup.arch == config.arch and setup.dataset == config.dataset
    assert config.num_d_steps % config.checkpoint_every == 0  # every checkpoint on a call boundary
    assert step_lib.plan_calls(make_trial(config)).main >= 1

"""The accelerators' fast matmul modes emulated on a CPU (`gancmp.emulation`, the `emulated_*`
names of `gancmp.precision`): a layer's output and gradients equal the hand-rounded computation
and differ from float32; explicit HIGHEST and code outside the scope are untouched; the names
exist on a CPU only and a trained trial records its mode."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp import emulation, precision
from gancmp.nets import layers
from gancmp.nets.common import Dense
from gancmp.train import group as group_lib
from gancmp.trial import make_trial
from tests.helpers import group_of, load_config

HIGHEST = jax.lax.Precision.HIGHEST


def _bf16(x):
    return np.asarray(jnp.asarray(x, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32))


def _tf32(x):
    """Round half to even to 11 significant bits, with numpy's frexp (not the bit trick)."""
    x = np.asarray(x, np.float64)
    m, e = np.frexp(x)                                   # x = m · 2^e, 0.5 ≤ |m| < 1
    return (np.round(m * 2.0**11) * 2.0 ** (e - 11)).astype(np.float32)


def test_roundings_match_their_formats():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=1000) * 10.0 ** rng.integers(-3, 4, 1000)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(emulation.round_tf32(jnp.asarray(x))), _tf32(x))
    np.testing.assert_array_equal(np.asarray(emulation.round_bf16(jnp.asarray(x))), _bf16(x))
    # ties to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 (11 bits); 1 + 3·2^-11 rounds up
    ties = jnp.asarray([1 + 2.0**-11, 1 + 3 * 2.0**-11], jnp.float32)
    np.testing.assert_array_equal(np.asarray(emulation.round_tf32(ties)), [1.0, 1 + 2.0**-9])
    hi, lo = emulation.split_bf16(jnp.asarray(x))
    assert np.max(np.abs((np.asarray(hi) + np.asarray(lo) - x) / x)) < 2.0**-16


@pytest.fixture(scope="module")
def dense_case():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    layer = Dense(3)
    params = layer.init(jax.random.key(0), x)
    params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)  # non-zero bias
    return layer, params, x


@pytest.mark.parametrize("name,rnd", [("emulated_bfloat16", _bf16),
                                      ("emulated_tensorfloat32", _tf32)])
def test_dense_output_and_gradients_are_the_hand_rounded_products(dense_case, name, rnd):
    layer, params, x = dense_case
    w, b = (np.asarray(params["params"][k], np.float64) for k in ("kernel", "bias"))
    c = np.random.default_rng(2).normal(size=(8, 3)).astype(np.float32)  # the cotangent

    def loss(p, x):
        return jnp.sum(layer.apply(p, x) * c)

    with precision.scope(name):
        out = jax.jit(layer.apply)(params, x)
        gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    exact = x.astype(np.float64) @ w + b
    expected = rnd(x).astype(np.float64) @ rnd(w) + b      # rounded operands, exact products
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert np.max(np.abs(out - exact)) > 1e2 * np.max(np.abs(out - expected))
    # backward products: rounded cotangent against the rounded forward operands
    np.testing.assert_allclose(gp["params"]["kernel"], rnd(x).T.astype(np.float64) @ rnd(c),
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(gx, rnd(c).astype(np.float64) @ rnd(w).T, rtol=0, atol=1e-6)
    np.testing.assert_allclose(gp["params"]["bias"], c.sum(0), rtol=1e-6)
    with precision.scope("float32"):                        # the float32 scope: exact
        np.testing.assert_allclose(jax.jit(layer.apply)(params, x), exact, rtol=0, atol=1e-5)


@pytest.mark.parametrize("module", [layers.Conv(4, (5, 5), strides=(2, 2), padding="SAME"),
                                    layers.ConvTranspose(4, (4, 4), strides=(2, 2),
                                                         padding="SAME"),
                                    nn.Conv(4, (3, 3), padding="SAME")])
def test_convolutions_are_the_hand_rounded_convolutions(module):
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 6, 6, 3)), jnp.float32)
    params = module.init(jax.random.key(1), x)
    rounded = jax.tree.map(lambda p: jnp.asarray(_bf16(p)), params)
    with precision.scope("float32"):
        exact = module.apply(params, x)
        expected = module.apply(rounded, jnp.asarray(_bf16(x)))  # biases are 0 at init
    with precision.scope("emulated_bfloat16"):
        out = module.apply(params, x)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert np.max(np.abs(out - exact)) > 1e-4


def test_explicit_highest_and_outside_code_are_untouched(dense_case):
    _, _, x = dense_case
    w = jnp.asarray(np.random.default_rng(4).normal(size=(5, 2)), jnp.float32)
    dims = (((1,), (0,)), ((), ()))
    original = jax.lax.dot_general
    exact = jax.lax.dot_general(x, w, dims, precision=HIGHEST)
    with precision.scope("emulated_bfloat16"):
        assert jax.lax.dot_general is not original
        kept = jax.lax.dot_general(x, w, dims, precision=HIGHEST)   # a metric network's ask
        deferred = jax.lax.dot_general(x, w, dims)
    np.testing.assert_array_equal(kept, exact)
    assert not np.array_equal(deferred, exact)
    assert jax.lax.dot_general is original                          # restored on exit
    np.testing.assert_array_equal(jax.lax.dot_general(x, w, dims), exact)


def test_emulated_names_exist_on_cpu_only():
    for name in precision.EMULATED:
        assert precision.resolve_training(name, "cpu") == name
        for backend in ("tpu", "cuda"):
            with pytest.raises(ValueError, match=rf"^'{name}' on (tpu|gpu); allowed on"):
                precision.resolve_training(name, backend)
        # elsewhere (a metric network, `gancmp bench --fid_precision`) they do not exist
        with pytest.raises(ValueError, match=rf"^'{name}' on cpu; allowed on cpu: auto, float32$"):
            precision.resolve(name, "cpu")
    with pytest.raises(ValueError, match="unknown emulated mode 'float16'"):
        with emulation.intercept("float16"):
            pass


def test_a_trial_trains_at_the_emulated_precision_and_its_setup_names_it():
    """A data-parallel ring8 group (2 devices, shard_map) at float32 and at emulated bf16: the
    setup carries the name (what `train/loop.py` writes into the record), the losses are finite,
    close to float32's and not equal to them."""
    out = {}
    for name in ("float32", "emulated_bfloat16"):
        config = load_config("ring8_mlp", num_d_steps=4, checkpoint_every=4, batch_size=32,
                             num_devices=2, matmul_precision=name)
        setup = make_trial(config).setup
        assert setup.matmul_precision == name
        group = group_lib.create_group(group_of(config, [0], like=setup), {})
        _, metrics = group.train_fn(group.states, group.arrays)
        out[name] = jax.device_get(metrics)
    for key, value in out["float32"].items():
        emulated = out["emulated_bfloat16"][key]
        assert np.all(np.isfinite(emulated))
        np.testing.assert_allclose(emulated, value, rtol=0.05, atol=0.02)
    assert any(not np.array_equal(out["emulated_bfloat16"][k], v)
               for k, v in out["float32"].items())


def test_lucic2018_states_its_training_precision_and_margins():
    """The paper's config names its training arithmetic in every study and fixes an equivalence
    margin for each study's main metric (issue 24, item 1 and item 10)."""
    import os

    from gancmp.config import load_config_file
    from gancmp.report.build import study_margins

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sweep = load_config_file(os.path.join(root, "configs", "sweeps", "lucic2018.py"))
    for study in sweep.studies:
        assert study.trial.matmul_precision == "auto"  # the choice its comment measures
    assert study_margins(sweep) == {"mnist": {"fid": 0.6}, "fashion_mnist": {"fid": 1.6},
                                    "cifar10": {"fid": 2.0}, "celeb_a": {"fid": 2.8},
                                    "triangles": {"f1": 0.05}}

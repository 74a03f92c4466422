"""Penalties on a linear discriminator, whose input gradient is known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from gancmp import penalties

W = jnp.array([[[0.6]], [[0.8]]])  # [2, 1, 1], ‖W‖ = 1
SHAPE = (4, 2, 1, 1)


def linear_d(w):
    return lambda x: jnp.sum(x * w, axis=(1, 2, 3))


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_wgan_gp_on_linear_d(scale):
    w = scale * W
    real = jax.random.uniform(jax.random.key(0), SHAPE)
    fake = jax.random.uniform(jax.random.key(1), SHAPE)
    pen = penalties.wgan_gp(linear_d(w), real, fake, jax.random.key(2))
    # ∇x D = w everywhere, so s = sqrt(1e-4 + ‖w‖²) = sqrt(1e-4 + scale²) for every x̃
    expected = (np.sqrt(1e-4 + scale**2) - 1.0) ** 2
    np.testing.assert_allclose(pen, expected, rtol=1e-5, atol=1e-8)


def test_r1_on_linear_d():
    real = jax.random.normal(jax.random.key(0), SHAPE)
    pen = penalties.r1(linear_d(3 * W), real, real, jax.random.key(1))
    np.testing.assert_allclose(pen, 9.0, rtol=1e-6)


def test_dragan_uses_sigmoid_gradient():
    # D(x) = w·x with w = 0: σ(D) = ½ and ∇σ(D) = σ'(0)·w = 0, so s = sqrt(1e-4) = 0.01
    real = jax.random.normal(jax.random.key(0), SHAPE)
    pen = penalties.dragan(linear_d(0 * W), real, real, jax.random.key(1))
    np.testing.assert_allclose(pen, (0.01 - 1) ** 2, rtol=1e-6)
    # w = 12·e₀ and a constant real batch (std 0, so x̃ = x = 0, unperturbed): D(x̃) = 0, so
    # ∇σ(D) = σ'(0)·w = ¼·12·e₀ = 3·e₀ and s = sqrt(1e-4 + 9)
    w = 12 * jnp.array([[[1.0]], [[0.0]]])
    real = jnp.zeros(SHAPE)
    pen = penalties.dragan(linear_d(w), real, real, jax.random.key(2))
    np.testing.assert_allclose(pen, (np.sqrt(1e-4 + 9.0) - 1) ** 2, rtol=1e-5)


@pytest.mark.parametrize("name", penalties.names())
def test_every_penalty_over_devices_equals_one_batch(name):
    """Each registered penalty, called with the one signature on 4 devices' slices (`axis_name`),
    averages to its value on the whole batch: per-example keys give each example its draws, and
    DRAGAN's noise scale is the std of the global batch (the slices' own stds differ 8×)."""
    n, b = 4, 8
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(b))
    scale = jnp.repeat(jnp.array([0.5, 1.0, 2.0, 4.0]), b // n).reshape(b, 1, 1, 1)
    real = scale * jax.random.normal(jax.random.key(1), (b, 2, 1, 1))
    fake = jax.random.normal(jax.random.key(2), (b, 2, 1, 1))
    d = lambda x: jnp.sum(jnp.sin(3 * x), axis=(1, 2, 3))  # noqa: E731
    fn = penalties.get(name)
    whole = fn(d, real, fake, keys)
    mesh = Mesh(np.asarray(jax.devices()[:n]), ("devices",))
    split = jax.shard_map(
        lambda r, f, k: jax.lax.pmean(fn(d, r, f, k, "devices"), "devices"), mesh=mesh,
        in_specs=(P("devices"),) * 3, out_specs=P())(real, fake, keys)
    np.testing.assert_allclose(split, whole, rtol=1e-5)


def test_registry_errors_name_the_known_penalties():
    with pytest.raises(KeyError, match="registered: dragan, r1, wgan_gp"):
        penalties.get("nope")


def test_per_example_keys_match_the_batch_they_slice():
    """Per-example keys give each example its own α, independent of how the batch is split."""
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(4))
    real = jax.random.normal(jax.random.key(1), SHAPE)
    fake = jax.random.normal(jax.random.key(2), SHAPE)
    d = lambda x: jnp.sum(jnp.sin(x), axis=(1, 2, 3))  # noqa: E731
    whole = penalties.wgan_gp(d, real, fake, keys)
    halves = [penalties.wgan_gp(d, real[s], fake[s], keys[s]) for s in (slice(0, 2), slice(2, 4))]
    np.testing.assert_allclose(whole, np.mean(halves), rtol=1e-6)


def test_clip_weights_clips_every_leaf():
    params = {"dense": {"kernel": jnp.array([-2.0, 0.005, 3.0])}, "bn": {"scale": jnp.ones(2)}}
    out = penalties.clip_weights(params, 0.01)
    np.testing.assert_allclose(out["dense"]["kernel"], [-0.01, 0.005, 0.01])
    np.testing.assert_allclose(out["bn"]["scale"], [0.01, 0.01])

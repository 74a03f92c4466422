"""Penalties on a linear discriminator, whose input gradient is known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
    np.testing.assert_allclose(penalties.r1(linear_d(3 * W), real), 9.0, rtol=1e-6)


def test_dragan_uses_sigmoid_gradient():
    # D(x) = w·x with w = 0: σ(D) = ½ and ∇σ(D) = σ'(0)·w = 0, so s = sqrt(1e-4) = 0.01
    real = jax.random.normal(jax.random.key(0), SHAPE)
    pen = penalties.dragan(linear_d(0 * W), real, jax.random.key(1))
    np.testing.assert_allclose(pen, (0.01 - 1) ** 2, rtol=1e-6)
    # w = 12·e₀ and real points ⟂ w, unperturbed (std overridden to 0): D(x̃) = 0, so
    # ∇σ(D) = σ'(0)·w = ¼·12·e₀ = 3·e₀ and s = sqrt(1e-4 + 9)
    w = 12 * jnp.array([[[1.0]], [[0.0]]])
    real = jnp.zeros(SHAPE).at[:, 1].set(1.0)
    pen = penalties.dragan(linear_d(w), real, jax.random.key(2), std=jnp.float32(0.0))
    np.testing.assert_allclose(pen, (np.sqrt(1e-4 + 9.0) - 1) ** 2, rtol=1e-5)


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

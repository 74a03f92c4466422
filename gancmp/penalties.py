"""Penalties and constraints that need the discriminator function (λ-free: the trainer scales them).

`d_fn` maps a batch `[B, ...]` to discriminator outputs `[B]` (logits). Gradients with respect to
the input are taken of `sum(d_fn(x))`, as `tf.gradients` did in compare_gan v1 (`WGAN_GP.py`,
`DRAGAN.py`).

Random draws take either one typed key (`jax.random.key`; all B values come from it) or a batch of
B typed keys, one per example; per-example keys let a device-parallel trainer draw exactly what a single-device run
draws for the same global example, whatever the device count.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
DFn = Callable[[Array], Array]


def _uniform(key: Array, batch: int, shape: tuple[int, ...] = ()) -> Array:
    """U[0, 1) draws of shape [batch, *shape] from one typed key or from `batch` per-example keys."""
    if key.ndim == 0:
        return jax.random.uniform(key, (batch, *shape))
    if key.shape[0] != batch:
        raise ValueError(f"got {key.shape[0]} per-example keys for a batch of {batch}")
    return jax.vmap(lambda k: jax.random.uniform(k, shape))(key)


def _slopes(d_fn: DFn, x: Array) -> Array:
    """Per-example gradient norms sqrt(1e-4 + Σ (∂ sum D / ∂x)²), shape [B] (v1's epsilon)."""
    grads = jax.grad(lambda v: jnp.sum(d_fn(v)))(x)
    return jnp.sqrt(1e-4 + jnp.sum(jnp.square(grads), axis=tuple(range(1, x.ndim))))


def _interpolate(a: Array, b: Array, alpha: Array) -> Array:
    """a + α(b − a) with one α per example; α has shape [B]."""
    return a + alpha.reshape(alpha.shape + (1,) * (a.ndim - 1)) * (b - a)


def wgan_gp(d_fn: DFn, real: Array, fake: Array, key: Array) -> Array:
    """WGAN-GP penalty (Gulrajani et al. 2017): E[(s − 1)²].

    s = sqrt(1e-4 + Σ(∇x̃ D(x̃))²) per example, x̃ = x + α(G(z) − x), α ~ U[0, 1] per example,
    D = logits (critic values).
    """
    alpha = _uniform(key, real.shape[0])
    x_hat = _interpolate(real, jax.lax.stop_gradient(fake), alpha)
    return jnp.mean(jnp.square(_slopes(d_fn, x_hat) - 1.0))


def dragan(d_fn: DFn, real: Array, key: Array, std: Array | None = None) -> Array:
    """DRAGAN penalty (Kodali et al. 2017), as compare_gan v1: E[(s − 1)²] around the data.

    x_p = x + 0.5·std(x)·U[0, 1) (std over the whole batch, all elements), x̃ = x + α(x_p − x),
    α ~ U[0, 1] per example, and s is the gradient norm of **σ(D(x̃))** (probabilities, as v1).
    `std` overrides the batch std: a device-parallel trainer passes the std of the global batch.
    """
    k_noise, k_alpha = _split(key)
    if std is None:
        std = jnp.std(real)
    noise = _uniform(k_noise, real.shape[0], real.shape[1:])
    x_p = real + 0.5 * std * noise
    x_hat = _interpolate(real, x_p, _uniform(k_alpha, real.shape[0]))
    return jnp.mean(jnp.square(_slopes(lambda v: jax.nn.sigmoid(d_fn(v)), x_hat) - 1.0))


def r1(d_fn: DFn, real: Array) -> Array:
    """R1 penalty (Mescheder et al. 2018): E[Σ (∇x D(x))²] on real data (λ-free, no ½)."""
    grads = jax.grad(lambda v: jnp.sum(d_fn(v)))(real)
    return jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, real.ndim))))


def clip_weights(params, clip: Array | float):
    """WGAN weight clipping: every leaf of `params` (all D variables, batch-norm scale and offset
    included, as v1) clipped to [−clip, clip]. Pure function on the parameter pytree."""
    return jax.tree.map(lambda p: jnp.clip(p, -clip, clip), params)


def _split(key: Array) -> tuple[Array, Array]:
    """Splits one key or a batch of per-example keys into two of the same kind."""
    if key.ndim == 0:
        a, b = jax.random.split(key)
        return a, b
    pairs = jax.vmap(jax.random.split)(key)
    return pairs[:, 0], pairs[:, 1]


# Uniform calls for the trainer: (d_fn, real, fake, key, real_std) -> penalty. `real_std` is the
# std of the global real batch (DRAGAN's noise scale), so device-parallel runs equal single ones.
PENALTIES: dict[str, Callable[[DFn, Array, Array, Array, Array], Array]] = {
    "wgan_gp": lambda d_fn, real, fake, key, real_std: wgan_gp(d_fn, real, fake, key),
    "dragan": lambda d_fn, real, fake, key, real_std: dragan(d_fn, real, key, std=real_std),
    "r1": lambda d_fn, real, fake, key, real_std: r1(d_fn, real),
}

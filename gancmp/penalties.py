"""Penalties and constraints that need the discriminator function (λ-free: the trainer scales them).

Every penalty has one signature, `fn(d_fn, real, fake, key, axis_name=None) -> scalar`, and is
registered by name (`register`, `get`), so the trainer calls any of them the same way:
`d_fn` maps a batch `[B, ...]` to discriminator outputs `[B]` (logits); `real`, `fake` are this
device's slices `[B, ...]` of the global batches (a penalty may ignore either); `key` is one typed
key or B per-example keys (below); `axis_name` is the device axis inside a device-parallel step
(None outside one). Batch statistics a penalty needs (DRAGAN's std) are those of the global batch,
reduced over `axis_name`, so a device-parallel run computes what a single-device run does.

Gradients with respect to the input are taken of `sum(d_fn(x))`, as `tf.gradients` did in
compare_gan v1 (`WGAN_GP.py`, `DRAGAN.py`); with batch norm in D that sum couples the examples of
the batch, and inside a device-parallel step `axis_name` makes it the sum over the global batch.

Random draws take either one typed key (`jax.random.key`; all B values come from it) or a batch of
B typed keys, one per example; per-example keys let a device-parallel trainer draw exactly what a
single-device run draws for the same global example, whatever the device count.

Variants other libraries use are keyword-only options of the same function, static (Python
values), their defaults v1's: `wgan_gp(target=, one_sided=, eps=)` (TF-GAN's options),
`dragan(on_logits=, eps=)`, `r1(scale=, on="real" | "fake")` (R2 on fakes). A method that uses a
variant registers it under its own name, e.g. `register("r2", functools.partial(r1, on="fake"))`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
DFn = Callable[[Array], Array]


def _uniform(key: Array, batch: int, shape: tuple[int, ...] = ()) -> Array:
    """U[0, 1) draws [batch, *shape] from one typed key or from `batch` per-example keys."""
    if key.ndim == 0:
        return jax.random.uniform(key, (batch, *shape))
    if key.shape[0] != batch:
        raise ValueError(f"got {key.shape[0]} per-example keys for a batch of {batch}")
    return jax.vmap(lambda k: jax.random.uniform(k, shape))(key)


def _input_grad(d_fn: DFn, x: Array, axis_name: str | None) -> Array:
    """∂(Σ D(x))/∂x. Inside a device-mapped step (`axis_name`) the sum runs over the global
    batch, so batch-norm coupling across devices is differentiated as on a single device."""
    def total(v):
        s = jnp.sum(d_fn(v))
        return s if axis_name is None else jax.lax.psum(s, axis_name)
    return jax.grad(total)(x)


def _slopes(d_fn: DFn, x: Array, axis_name: str | None = None, eps: float = 1e-4) -> Array:
    """Per-example gradient norms sqrt(eps + Σ (∂ sum D / ∂x)²), shape [B] (v1's eps: 1e-4)."""
    grads = _input_grad(d_fn, x, axis_name)
    return jnp.sqrt(eps + jnp.sum(jnp.square(grads), axis=tuple(range(1, x.ndim))))


def _interpolate(a: Array, b: Array, alpha: Array) -> Array:
    """a + α(b − a) with one α per example; α has shape [B]."""
    return a + alpha.reshape(alpha.shape + (1,) * (a.ndim - 1)) * (b - a)


def _check(name: str, value: object, ok: Callable[[Any], bool], allowed: str) -> None:
    """ValueError naming option `name` and what it allows, when a static `value` fails `ok`
    (options are static: methods bind them with `functools.partial`)."""
    if isinstance(value, str | int | float) and not ok(value):
        raise ValueError(f"{name}: must be {allowed}, got {value!r}")


def wgan_gp(d_fn: DFn, real: Array, fake: Array, key: Array, axis_name: str | None = None, *,
            target: float = 1.0, one_sided: bool = False, eps: float = 1e-4) -> Array:
    """WGAN-GP penalty (Gulrajani et al. 2017): E[(s/target − 1)²].

    s = sqrt(eps + Σ(∇x̃ D(x̃))²) per example, x̃ = x + α(G(z) − x), α ~ U[0, 1] per example,
    D = logits (critic values). The options are TF-GAN's `wasserstein_gradient_penalty`
    (there `epsilon=1e-10`): `target` the gradient norm aimed at, in TF-GAN's form s/target − 1
    (so the penalty is target⁻² (s − target)²); `one_sided` penalises only s > target,
    E[max(0, s/target − 1)²] (Petzka et al. 2018); `eps` defaults to v1's 1e-4 (StudioGAN's
    `cal_grad_penalty` takes none: eps = 0).
    """
    _check("wgan_gp target", target, lambda t: t > 0, "> 0")
    _check("wgan_gp eps", eps, lambda e: e >= 0, ">= 0")
    alpha = _uniform(key, real.shape[0])
    x_hat = _interpolate(real, jax.lax.stop_gradient(fake), alpha)
    slopes = _slopes(d_fn, x_hat, axis_name, eps)
    excess = (slopes if target == 1.0 else slopes / target) - 1.0
    if one_sided:
        excess = jnp.maximum(excess, 0.0)
    return jnp.mean(jnp.square(excess))


def _batch_std(x: Array, axis_name: str | None) -> Array:
    """Std over all elements of the global batch, in two passes (the mean, then the mean squared
    deviation from it: `jnp.std`'s and v1's `tf.nn.moments`' arithmetic); inside a
    device-parallel step (every device holds an equal slice) each pass averages over devices."""
    def mean(v: Array) -> Array:
        return jnp.mean(v) if axis_name is None else jax.lax.pmean(jnp.mean(v), axis_name)
    return jnp.sqrt(mean(jnp.square(x - mean(x))))


def dragan(d_fn: DFn, real: Array, fake: Array, key: Array, axis_name: str | None = None, *,
           on_logits: bool = False, eps: float = 1e-4) -> Array:
    """DRAGAN penalty (Kodali et al. 2017), as compare_gan v1: E[(s − 1)²] around the data.

    x_p = x + 0.5·std(x)·U[0, 1) (std over the whole global batch, all elements),
    x̃ = x + α(x_p − x), α ~ U[0, 1] per example, and s = sqrt(eps + ‖∇ σ(D(x̃))‖²), the gradient
    norm of the **probabilities σ(D)** (v1). `on_logits=True` takes it of the logits D(x̃)
    instead, as StudioGAN's `cal_dra_penalty` (which also has eps = 0) and the DRAGAN authors'
    code do. `fake` is not used.
    """
    _check("dragan eps", eps, lambda e: e >= 0, ">= 0")
    k_noise, k_alpha = _split(key)
    std = _batch_std(real, axis_name)
    noise = _uniform(k_noise, real.shape[0], real.shape[1:])
    x_p = real + 0.5 * std * noise
    x_hat = _interpolate(real, x_p, _uniform(k_alpha, real.shape[0]))
    of = d_fn if on_logits else (lambda v: jax.nn.sigmoid(d_fn(v)))
    return jnp.mean(jnp.square(_slopes(of, x_hat, axis_name, eps) - 1.0))


R1_ON = ("real", "fake")


def r1(d_fn: DFn, real: Array, fake: Array, key: Array, axis_name: str | None = None, *,
       scale: float = 1.0, on: str = "real") -> Array:
    """R1 penalty (Mescheder et al. 2018): scale · E[Σ (∇x D(x))²] on the real batch; `key` is
    not used.

    `scale` defaults to 1 (λ-free, no ½: the trainer's penalty_weight is the whole factor);
    StudioGAN's `cal_r1_reg` and StyleGAN2 take ½ (scale=0.5), the paper's γ/2 with γ = their
    weight. `on="fake"` is R2, the same penalty on the generated batch (`fake`, treated as a
    constant input) instead of the real one; a method uses it as a registered penalty, e.g.
    `register("r2", functools.partial(r1, on="fake"))`.
    """
    _check("r1 on", on, lambda o: o in R1_ON, f"one of {', '.join(R1_ON)}")
    x = real if on == "real" else jax.lax.stop_gradient(fake)
    grads = _input_grad(d_fn, x, axis_name)
    norms = jnp.sum(jnp.square(grads), axis=tuple(range(1, x.ndim)))
    return jnp.mean(norms) if scale == 1.0 else scale * jnp.mean(norms)


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


Penalty = Callable[..., Array]  # (d_fn, real, fake, key, axis_name=None) -> scalar
_REGISTRY: dict[str, Penalty] = {}


def register(name: str, fn: Penalty) -> Penalty:
    """Registers penalty `fn` (the module docstring's signature) under `name`; returns `fn`."""
    if name in _REGISTRY and _REGISTRY[name] is not fn:
        raise ValueError(f"penalty {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def get(name: str) -> Penalty:
    """The penalty registered under `name`; a clear error lists the registered names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown penalty {name!r}; registered: {', '.join(names())}") from None


def names() -> list[str]:
    """Registered penalty names, sorted."""
    return sorted(_REGISTRY)


register("wgan_gp", wgan_gp)
register("dragan", dragan)
register("r1", r1)

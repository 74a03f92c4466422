"""Pieces shared by the networks: initialisers, activations, channel scaling, batch norm and
spectral norm.

Spectral normalisation (Miyato et al. 2018) uses Flax's `nn.SpectralNorm`: its power-iteration
vector u and the estimate σ of every wrapped kernel live in the 'batch_stats' collection, next to
batch-norm statistics, so the train state carries them in `d_state` like any running statistic.
They are updated only when the layer is called with `train=True` and the collection is mutable and
kept (the train step's D updates); evaluation (`train=False`) runs the power iteration from the
stored u without writing it, and the G update discards D's collections.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gancmp.nets import dense

# compare_gan v1 (`gans/ops.py`): every weight ~ N(0, 0.02), biases 0; except that v1's
# `conv2d` (L71–79) draws its kernels from `tf.truncated_normal_initializer(stddev=0.02)`: N(0,
# 0.02) redrawn outside ±2σ, stddev not rescaled, which is exactly JAX's `truncated_normal`
# (its default bounds ±2, `stddev` that of the untruncated normal). `linear` and `deconv2d` use
# the plain normal.
WEIGHT_INIT = nn.initializers.normal(stddev=0.02)
CONV_INIT = nn.initializers.truncated_normal(stddev=0.02)
BIAS_INIT = nn.initializers.zeros
BN_EPSILON = 1e-3  # v1's batch norm (`gans/ops.py`)

Dense = functools.partial(nn.Dense, kernel_init=WEIGHT_INIT, bias_init=BIAS_INIT,
                          dot_general=dense.dense_dot_general)


def lrelu(x: jax.Array, leak: float = 0.2) -> jax.Array:
    """max(x, leak·x), v1's `lrelu`."""
    return jax.nn.leaky_relu(x, leak)


def squash(a: jax.Array) -> jax.Array:
    """v1's DCGAN output activation 0.5·tanh(a) + 0.5 (= σ(2a)): logits → [0, 1]."""
    return 0.5 * jnp.tanh(a) + 0.5


def channels(n: int, multiplier: float) -> int:
    """The paper's channel (or unit) count `n` scaled by `config.width_multiplier` (1.0 = the
    paper's), rounded, at least 1."""
    return max(1, round(n * multiplier))


def batch_norm(train: bool, momentum: float, axis_name: str | None,
               epsilon: float = BN_EPSILON) -> nn.BatchNorm:
    """Batch norm with learned scale and offset, decay `momentum` (0.999 in the paper) and
    `epsilon` (v1's 1e-3 unless an architecture says otherwise).

    In training mode the statistics are those of the current batch, averaged over the devices of
    `axis_name` so that a device-parallel run equals a single-device run; at sampling time
    (train=False) the running averages are used.
    """
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                        axis_name=axis_name if train else None)


def optional_bn(enabled: bool, train: bool, momentum: float, axis_name: str | None,
                epsilon: float = BN_EPSILON) -> Callable[[jax.Array], jax.Array]:
    """A fresh `batch_norm` layer applied to its input if `enabled`, else the identity."""
    if not enabled:
        return lambda x: x
    return lambda x: batch_norm(train, momentum, axis_name, epsilon)(x)


def spectral_layer(module: nn.Module, x: jax.Array, *, spectral_norm: bool,
                   train: bool) -> jax.Array:
    """`module(x)`, with its kernel divided by its largest singular value if `spectral_norm`.

    The kernel [..., c_out] is treated as the matrix [prod(...), c_out] (compare_gan's and Flax's
    convention) and σ is estimated with one power-iteration step per call (SNGAN's setting); u
    and σ are written only when `train`.
    """
    if spectral_norm:
        return nn.SpectralNorm(module, n_steps=1)(x, update_stats=train)
    return module(x)

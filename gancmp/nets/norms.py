"""Normalisation wrappers shared by the dcgan, sndcgan and resnet networks.

Spectral normalisation (Miyato et al. 2018) uses Flax's `nn.SpectralNorm`: its power-iteration
vector u and the estimate σ of every wrapped kernel live in the 'batch_stats' collection, next to
batch-norm statistics, so the train state carries them in `d_state` like any running statistic.
They are updated only when the layer is called with `train=True` and the collection is mutable and
kept (the train step's D updates); evaluation (`train=False`) runs the power iteration from the
stored u without writing it, and the G update discards D's collections.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax


def layer(module: nn.Module, x: jax.Array, *, spectral_norm: bool, train: bool) -> jax.Array:
    """`module(x)`, with its kernel divided by its largest singular value if `spectral_norm`.

    The kernel [..., c_out] is treated as the matrix [prod(...), c_out] (compare_gan's and Flax's
    convention) and σ is estimated with one power-iteration step per call (SNGAN's setting).
    """
    if spectral_norm:
        return nn.SpectralNorm(module, n_steps=1)(x, update_stats=train)
    return module(x)


def batch_norm(train: bool, momentum: float, axis_name: str | None,
               epsilon: float) -> nn.BatchNorm:
    """Batch norm with learned scale and offset; training mode uses the batch's statistics,
    averaged over the devices of `axis_name`, inference the running averages (decay `momentum`)."""
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                        axis_name=axis_name if train else None)


def optional_bn(enabled: bool, train: bool, momentum: float, axis_name: str | None,
                epsilon: float) -> Callable[[jax.Array], jax.Array]:
    """A fresh batch-norm layer applied to its input if `enabled`, else the identity."""
    if not enabled:
        return lambda x: x
    return lambda x: batch_norm(train, momentum, axis_name, epsilon)(x)

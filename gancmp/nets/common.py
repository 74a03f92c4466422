"""Pieces shared by the paper's networks: initialisers, activation, batch norm."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

# compare_gan v1 (`gans/ops.py`): every weight ~ N(0, 0.02), biases 0.
WEIGHT_INIT = nn.initializers.normal(stddev=0.02)
BIAS_INIT = nn.initializers.zeros


def lrelu(x: jax.Array, leak: float = 0.2) -> jax.Array:
    """max(x, leak·x), v1's `lrelu`."""
    return jax.nn.leaky_relu(x, leak)


def batch_norm(train: bool, momentum: float, axis_name: str | None) -> nn.BatchNorm:
    """v1's batch norm: decay `momentum` (0.999 in the paper), eps 1e-3, learned scale and offset.

    In training mode the statistics are those of the current batch, averaged over the devices of
    `axis_name` so that a device-parallel run equals a single-device run; at sampling time
    (train=False) the running averages are used.
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=1e-3,
        axis_name=axis_name if train else None,
    )


Dense = functools.partial(nn.Dense, kernel_init=WEIGHT_INIT, bias_init=BIAS_INIT)

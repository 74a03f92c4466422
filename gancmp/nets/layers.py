"""4×4 stride-2 transposed convolution with the parameters of `nn.ConvTranspose`.

(Interim: computes with `nn.ConvTranspose` itself; the sub-pixel reformulation replaces it.)
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax


class ConvTranspose2x(nn.Module):
    """[B, H, W, C] → [B, 2H, 2W, features]; params 'kernel' [4, 4, C, features], 'bias'."""

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding="SAME",
                                kernel_init=self.kernel_init, bias_init=self.bias_init,
                                use_bias=self.use_bias, name=None)(x)

"""The paper's networks: InfoGAN-style G and D for every dataset (compare_gan v1
`gans/abstract_gan.py`), and BEGAN's auto-encoder discriminator (v1 `gans/BEGAN.py`).

Images are NHWC float32 in [0, 1]; H and W must be divisible by 4. `width` scales every channel
count (1.0 = the paper's networks; smaller for quick CPU studies). Discriminator outputs are
logits of shape [B]. The 4×4 stride-2 transposed convolutions are `ConvTranspose2x`, which has the
parameters and outputs of `nn.ConvTranspose(f, (4, 4), (2, 2), 'SAME')` but a fast gradient on
XLA:CPU (see `layers.py`). Weights ~ N(0, 0.02), convolution kernels truncated at ±2σ (v1's
`conv2d`, `gans/ops.py` L71–79; `common.CONV_INIT`), biases 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gancmp.nets.common import (
    BIAS_INIT,
    CONV_INIT,
    WEIGHT_INIT,
    Dense,
    batch_norm,
    channels,
    lrelu,
    optional_bn,
)
from gancmp.nets.layers import ConvTranspose2x

Conv4x4s2 = functools.partial(
    nn.Conv, kernel_size=(4, 4), strides=(2, 2), padding="SAME",
    kernel_init=CONV_INIT, bias_init=BIAS_INIT,
)
Deconv4x4s2 = functools.partial(ConvTranspose2x, kernel_init=WEIGHT_INIT, bias_init=BIAS_INIT)


class InfoGANGenerator(nn.Module):
    """z [B, z_dim] → images [B, H, W, C] in [0, 1].

    FC1024–BN–act → FC(128·H/4·W/4)–BN–act → deconv64 4×4 s2–BN–act → deconv C 4×4 s2 → σ, with
    act = lReLU (the GANs' G); the VAE's decoder is this network with ReLU (v1 `VAE.decoder`).
    """

    image_shape: tuple[int, int, int]
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0
    activation: Callable[[jax.Array], jax.Array] = lrelu

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        h, w, c = self.image_shape
        act = self.activation
        bn = functools.partial(batch_norm, train, self.bn_momentum, self.bn_axis)
        ch = functools.partial(channels, multiplier=self.width)
        x = act(bn()(Dense(ch(1024))(z)))
        x = act(bn()(Dense(ch(128) * (h // 4) * (w // 4))(x)))
        x = x.reshape(z.shape[0], h // 4, w // 4, ch(128))
        x = act(bn()(Deconv4x4s2(ch(64))(x)))
        return jax.nn.sigmoid(Deconv4x4s2(c)(x))


def discriminator_features(x: jax.Array, norm: Callable[[jax.Array], jax.Array],
                           width: float) -> jax.Array:
    """The InfoGAN D's body, called inside a compact module (its layers are that module's):
    images [B, H, W, C] → conv64 4×4 s2–lReLU → conv128 4×4 s2–norm–lReLU → FC1024–norm–lReLU,
    [B, 1024·width]. The D puts a 1-unit head on it, the VAE's encoder a (μ, σ) head."""
    ch = functools.partial(channels, multiplier=width)
    x = lrelu(Conv4x4s2(ch(64))(x))
    x = lrelu(norm(Conv4x4s2(ch(128))(x)))
    x = x.reshape(x.shape[0], -1)
    return lrelu(norm(Dense(ch(1024))(x)))


class InfoGANDiscriminator(nn.Module):
    """images [B, H, W, C] → logits [B].

    conv64 4×4 s2–lReLU → conv128 4×4 s2–[BN]–lReLU → FC1024–[BN]–lReLU → FC1; BN if `batch_norm`.
    """

    batch_norm: bool = True
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = optional_bn(self.batch_norm, train, self.bn_momentum, self.bn_axis)
        features = discriminator_features(x, norm, self.width)
        return Dense(1)(features)[:, 0]


class AutoEncoderDiscriminator(nn.Module):
    """BEGAN's discriminator: images [B, H, W, C] → per-example L1 reconstruction error [B].

    Encoder conv64 4×4 s2–lReLU → conv128 4×4 s2 → FC64–[BN]–lReLU (the code); decoder
    FC(128·H/4·W/4)–[BN]–lReLU → deconv64 4×4 s2–[BN]–lReLU → deconv C 4×4 s2 → σ. The error is
    mean |AE(x) − x| over pixels, so its batch mean is v1's `reduce_mean(abs(out − x))`.
    """

    batch_norm: bool = True
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        b, h, w, c = x.shape
        norm = optional_bn(self.batch_norm, train, self.bn_momentum, self.bn_axis)
        ch = functools.partial(channels, multiplier=self.width)
        y = lrelu(Conv4x4s2(ch(64))(x))
        y = Conv4x4s2(ch(128))(y).reshape(b, -1)
        code = lrelu(norm(Dense(ch(64))(y)))
        y = lrelu(norm(Dense(ch(128) * (h // 4) * (w // 4))(code)))
        y = y.reshape(b, h // 4, w // 4, ch(128))
        y = lrelu(norm(Deconv4x4s2(ch(64))(y)))
        recon = jax.nn.sigmoid(Deconv4x4s2(c)(y))
        return jnp.mean(jnp.abs(recon - x), axis=(1, 2, 3))


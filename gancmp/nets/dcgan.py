"""DCGAN (Radford et al. 2016) as in compare_gan v1 (`src/gans/dcgan_architecture.py`), for
32×32 and 64×64 images, and an auto-encoder discriminator in the same style for BEGAN.

Layer sizes follow the v1 code: G projects z to (H/16)×(W/16)×512 and doubles the resolution four
times with 5×5 stride-2 transposed convolutions (512 → 256 → 128 → 64 → C); D mirrors it with
5×5 stride-2 convolutions (64 → 128 → 256 → 512) and one linear unit. Batch norm as v1's
`batch_norm_dcgan` (ε 1e-5, learned scale and offset; the decay is `config.bn_momentum`, v1 used
0.9 for this architecture). Weights ~ N(0, 0.02) (convolution kernels truncated at ±2σ, as v1's
`conv2d`), biases 0. The output is v1's 0.5·tanh(a) + 0.5 = σ(2a), in [0, 1]. `width` scales
every channel count (1.0 = the reference).

Differences from v1 that do not change the parameter count: v1's convolutions pad with TF's
'SAME' rule and its transposed convolutions are the gradient of a convolution; here they are
`nn.Conv` / `nn.ConvTranspose` with padding 'SAME' (same shapes and parameters). The transposed
convolutions are `layers.ConvTranspose`, a drop-in `nn.ConvTranspose` (same parameter tree and
output) computed as a sub-pixel convolution, whose kernel gradient is fast on XLA:CPU; the
convolutions are `layers.Conv`, a drop-in `nn.Conv` (same parameter tree and output) computed as
a stride-1 3×3 convolution on the space-to-depth input, which XLA:CPU runs on its fast path.
"""

from __future__ import annotations

import functools

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
    spectral_layer,
    squash,
)
from gancmp.nets.layers import Conv, ConvTranspose

BN_EPSILON = 1e-5  # v1's batch_norm_dcgan

Conv5x5s2 = functools.partial(Conv, kernel_size=(5, 5), strides=(2, 2), padding="SAME",
                              kernel_init=CONV_INIT, bias_init=BIAS_INIT)
Deconv5x5s2 = functools.partial(ConvTranspose, kernel_size=(5, 5), strides=(2, 2),
                                padding="SAME", kernel_init=WEIGHT_INIT, bias_init=BIAS_INIT)

# Channels of G's layers from the projection to the last hidden layer; D uses them reversed.
G_CHANNELS = (512, 256, 128, 64)


class DCGANGenerator(nn.Module):
    """z [B, z_dim] → images [B, H, W, C] in [0, 1]; H, W divisible by 16.

    FC(512·H/16·W/16) → reshape → BN–ReLU → [deconv 5×5 s2 (256, 128, 64)–BN–ReLU] →
    deconv C 5×5 s2 → 0.5·tanh + 0.5.
    """

    image_shape: tuple[int, int, int]
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        h, w, c = self.image_shape
        bn = functools.partial(batch_norm, train, self.bn_momentum, self.bn_axis,
                               BN_EPSILON)
        ch = [channels(n, self.width) for n in G_CHANNELS]
        x = Dense(ch[0] * (h // 16) * (w // 16))(z)
        x = nn.relu(bn()(x.reshape(z.shape[0], h // 16, w // 16, ch[0])))
        for n in ch[1:]:
            x = nn.relu(bn()(Deconv5x5s2(n)(x)))
        return squash(Deconv5x5s2(c)(x))


class DCGANDiscriminator(nn.Module):
    """images [B, H, W, C] → logits [B]; H, W divisible by 16.

    conv64 5×5 s2–lReLU → [conv 5×5 s2 (128, 256, 512)–norm–lReLU] → flatten → FC1, lReLU slope
    0.2. The norm is batch norm if `batch_norm`; with `spectral_norm` every layer's kernel is
    spectrally normalised instead (v1's `discriminator_normalization` = "spectral_norm"), and no
    batch norm is used.
    """

    batch_norm: bool = True
    spectral_norm: bool = False
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sn = functools.partial(spectral_layer, spectral_norm=self.spectral_norm, train=train)
        norm = optional_bn(self.batch_norm and not self.spectral_norm, train,
                                 self.bn_momentum, self.bn_axis, BN_EPSILON)
        ch = [channels(n, self.width) for n in reversed(G_CHANNELS)]
        x = lrelu(sn(Conv5x5s2(ch[0]), x))
        for n in ch[1:]:
            x = lrelu(norm(sn(Conv5x5s2(n), x)))
        return sn(Dense(1), x.reshape(x.shape[0], -1))[:, 0]


class DCGANAutoEncoderDiscriminator(nn.Module):
    """BEGAN's discriminator in DCGAN style: images [B, H, W, C] → per-example L1 reconstruction
    error [B]; H, W divisible by 16.

    compare_gan v1 used one small auto-encoder for every architecture (`gans/BEGAN.py`, our
    `infogan.AutoEncoderDiscriminator`); this one is built from the DCGAN layers instead, with
    v1's BEGAN bottleneck of 64 units (× `width`).
    Encoder: the DCGAN discriminator's convolutions (5×5 s2, 64 → 128 → 256 → 512, lReLU 0.2,
    batch norm after all but the first if `batch_norm`) → FC64–[BN]–lReLU (the code).
    Decoder: the DCGAN generator's layers (FC(512·H/16·W/16)–[BN]–lReLU → deconv 5×5 s2 256,
    128, 64 –[BN]–lReLU → deconv C 5×5 s2 → 0.5·tanh + 0.5).
    The error is mean |AE(x) − x| over pixels, so its batch mean is v1's
    `reduce_mean(abs(out − x))`.
    """

    batch_norm: bool = True
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0
    code_dim: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        b, h, w, c = x.shape
        norm = optional_bn(self.batch_norm, train, self.bn_momentum, self.bn_axis,
                                 BN_EPSILON)
        ch = [channels(n, self.width) for n in G_CHANNELS]
        y = lrelu(Conv5x5s2(ch[-1])(x))
        for n in reversed(ch[:-1]):
            y = lrelu(norm(Conv5x5s2(n)(y)))
        code = lrelu(norm(Dense(channels(self.code_dim, self.width))(y.reshape(b, -1))))
        y = Dense(ch[0] * (h // 16) * (w // 16))(code).reshape(b, h // 16, w // 16, ch[0])
        y = lrelu(norm(y))
        for n in ch[1:]:
            y = lrelu(norm(Deconv5x5s2(n)(y)))
        recon = squash(Deconv5x5s2(c)(y))
        return jnp.mean(jnp.abs(recon - x), axis=(1, 2, 3))

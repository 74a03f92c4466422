"""The SNGAN ResNet for 32×32 images (Miyato et al. 2018, Table 4; the authors' CIFAR-10 code).

G: FC(4·4·256) → reshape → 3 up-blocks (256 → 256) → BN–ReLU → conv C 3×3 → sigmoid.
  Up-block: BN–ReLU–nearest 2× upsample–conv 3×3–BN–ReLU–conv 3×3, plus the shortcut
  upsample–conv 1×1.
D: optimised first block (3 → 128, down) → block (128, down) → 2 blocks (128) → ReLU → global
  sum pooling → FC1.
  Optimised block: conv 3×3–ReLU–conv 3×3–2×2 mean pool, plus the shortcut mean pool–conv 1×1.
  Block: ReLU–conv 3×3–ReLU–conv 3×3[–mean pool], plus the shortcut conv 1×1[–mean pool] when it
  downsamples, the identity otherwise.
Every D layer is spectrally normalised when `spectral_norm` (the default, as SNGAN); with it off,
`batch_norm` puts batch norm before each ReLU inside D's blocks (compare_gan v1's option).

Project conventions over the SNGAN code: the output is a sigmoid (images in [0, 1], as compare_gan
v1's `resnet_cifar_generator`), weights ~ N(0, 0.02) and biases 0, batch norm ε 1e-5 with decay
`config.bn_momentum`. compare_gan v1's own `resnet_cifar` variant differs (3×3 shortcut
convolutions in every block, zero-insertion upsampling, mean instead of sum pooling) and is not
what this module builds. `width` scales every channel count.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from gancmp.nets.common import (
    BIAS_INIT,
    WEIGHT_INIT,
    Dense,
    batch_norm,
    channels,
    optional_bn,
    spectral_layer,
)

BN_EPSILON = 1e-5
G_CHANNELS = 256
D_CHANNELS = 128
BOTTOM = 4  # G's first feature map is 4×4; three up-blocks make 32×32

Conv = functools.partial(nn.Conv, padding="SAME", kernel_init=WEIGHT_INIT, bias_init=BIAS_INIT)


def upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2× upsampling: [B, H, W, C] → [B, 2H, 2W, C]."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample(x: jax.Array) -> jax.Array:
    """2×2 mean pooling, stride 2: [B, H, W, C] → [B, H/2, W/2, C]."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class GBlock(nn.Module):
    """[B, H, W, C_in] → [B, 2H, 2W, features]."""

    features: int
    train: bool
    bn_momentum: float
    bn_axis: str | None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        bn = functools.partial(batch_norm, self.train, self.bn_momentum, self.bn_axis,
                               BN_EPSILON)
        h = Conv(self.features, (3, 3))(upsample(nn.relu(bn()(x))))
        h = Conv(self.features, (3, 3))(nn.relu(bn()(h)))
        return h + Conv(self.features, (1, 1))(upsample(x))


class DBlock(nn.Module):
    """[B, H, W, C_in] → [B, H/2, W/2, features] if `down`, else [B, H, W, features].

    `optimized`: SNGAN's first block (no ReLU before the first convolution; the shortcut pools
    before its 1×1 convolution).
    """

    features: int
    down: bool
    optimized: bool
    train: bool
    spectral_norm: bool
    batch_norm: bool
    bn_momentum: float
    bn_axis: str | None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        sn = functools.partial(spectral_layer, spectral_norm=self.spectral_norm, train=self.train)
        norm = functools.partial(optional_bn, self.batch_norm and not self.spectral_norm,
                                 self.train, self.bn_momentum, self.bn_axis, BN_EPSILON)
        pool = downsample if self.down else (lambda y: y)
        h = x if self.optimized else nn.relu(norm()(x))
        h = sn(Conv(self.features, (3, 3)), h)
        h = pool(sn(Conv(self.features, (3, 3)), nn.relu(norm()(h))))
        if self.optimized:
            shortcut = sn(Conv(self.features, (1, 1)), downsample(x))
        elif self.down or x.shape[-1] != self.features:
            shortcut = pool(sn(Conv(self.features, (1, 1)), x))
        else:
            shortcut = x
        return h + shortcut


class ResNetGenerator(nn.Module):
    """z [B, z_dim] → images [B, 32, 32, C] in [0, 1]."""

    image_shape: tuple[int, int, int]
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        h, w, c = self.image_shape
        n = channels(G_CHANNELS, self.width)
        x = Dense(BOTTOM * BOTTOM * n)(z).reshape(z.shape[0], BOTTOM, BOTTOM, n)
        for _ in range(3):
            x = GBlock(n, train, self.bn_momentum, self.bn_axis)(x)
        x = nn.relu(batch_norm(train, self.bn_momentum, self.bn_axis, BN_EPSILON)(x))
        return jax.nn.sigmoid(Conv(c, (3, 3))(x))


class ResNetDiscriminator(nn.Module):
    """images [B, 32, 32, C] → logits [B]."""

    batch_norm: bool = False
    spectral_norm: bool = True
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        n = channels(D_CHANNELS, self.width)
        block = functools.partial(DBlock, n, train=train, spectral_norm=self.spectral_norm,
                                  batch_norm=self.batch_norm, bn_momentum=self.bn_momentum,
                                  bn_axis=self.bn_axis)
        x = block(down=True, optimized=True)(x)
        x = block(down=True, optimized=False)(x)
        x = block(down=False, optimized=False)(x)
        x = block(down=False, optimized=False)(x)
        x = jnp.sum(nn.relu(x), axis=(1, 2))
        return spectral_layer(Dense(1), x, spectral_norm=self.spectral_norm, train=train)[:, 0]

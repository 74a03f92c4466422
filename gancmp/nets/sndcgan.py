"""SNDCGAN: the "standard CNN" of SNGAN (Miyato et al. 2018, Table 3) as compare_gan implements it
(v1 `src/gans/dcgan_architecture.py` `sn_generator` / `sn_discriminator`, v3
`architectures/sndcgan.py`), for 32×32 and 64×64 images.

G: FC(512·H/8·W/8)–BN–ReLU → reshape → [deconv 4×4 s2 (256, 128, 64)–BN–ReLU] → deconv C 3×3
s1 → (tanh + 1)/2. D (inputs mapped to [−1, 1] first, as v1): conv 3×3 s1 64, 4×4 s2 128,
3×3 s1 128, 4×4 s2 256, 3×3 s1 256, 4×4 s2 512, 3×3 s1 512, each followed by lReLU(0.1), then
flatten → FC1; every layer's kernel spectrally normalised. These are the channel counts of
compare_gan and of the SNGAN authors' code; the paper's Table 3 lists 64, 64, 128, 128, 256, 256,
512 instead.

Details: G's first batch norm acts on the FC output before the reshape (per unit, as v1 and the
SNGAN code), with ε 2e-5; the decay is `config.bn_momentum` (v1: 0.9). G's last layer, a 3×3
stride-1 transposed convolution in v1, is the equivalent 3×3 'SAME' convolution here (same
function class and parameter count). Weights ~ N(0, 0.02) (v1's conv2d/linear default), biases 0.
`width` scales every channel count.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from gancmp.nets.common import (
    BIAS_INIT,
    WEIGHT_INIT,
    Dense,
    batch_norm,
    channels,
    lrelu,
    optional_bn,
    spectral_layer,
    squash,
)
from gancmp.nets.layers import ConvTranspose2x

G_BN_EPSILON = 2e-5  # v1's sn_generator
D_BN_EPSILON = 1e-5  # only when spectral norm is off and batch norm on (not in v1)
LEAK = 0.1

Conv = functools.partial(nn.Conv, padding="SAME", kernel_init=WEIGHT_INIT, bias_init=BIAS_INIT)
Deconv4x4s2 = functools.partial(ConvTranspose2x, kernel_init=WEIGHT_INIT, bias_init=BIAS_INIT)

# D's layers: (kernel size, stride, channels).
D_LAYERS = ((3, 1, 64), (4, 2, 128), (3, 1, 128), (4, 2, 256), (3, 1, 256), (4, 2, 512),
            (3, 1, 512))
G_CHANNELS = (512, 256, 128, 64)


class SNDCGANGenerator(nn.Module):
    """z [B, z_dim] → images [B, H, W, C] in [0, 1]; H, W divisible by 8."""

    image_shape: tuple[int, int, int]
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        h, w, c = self.image_shape
        bn = functools.partial(batch_norm, train, self.bn_momentum, self.bn_axis,
                               G_BN_EPSILON)
        ch = [channels(n, self.width) for n in G_CHANNELS]
        x = nn.relu(bn()(Dense(ch[0] * (h // 8) * (w // 8))(z)))
        x = x.reshape(z.shape[0], h // 8, w // 8, ch[0])
        for n in ch[1:]:
            x = nn.relu(bn()(Deconv4x4s2(n)(x)))
        return squash(Conv(c, (3, 3))(x))


class SNDCGANDiscriminator(nn.Module):
    """images [B, H, W, C] in [0, 1] → logits [B]; H, W divisible by 8.

    `spectral_norm` (the architecture's point, on by default) normalises every kernel; with it
    off, `batch_norm` adds batch norm after every convolution but the first.
    """

    batch_norm: bool = False
    spectral_norm: bool = True
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sn = functools.partial(spectral_layer, spectral_norm=self.spectral_norm, train=train)
        use_bn = self.batch_norm and not self.spectral_norm
        x = 2.0 * x - 1.0
        for i, (k, s, n) in enumerate(D_LAYERS):
            x = sn(Conv(channels(n, self.width), (k, k), strides=(s, s)), x)
            if i > 0:
                x = optional_bn(use_bn, train, self.bn_momentum, self.bn_axis,
                                      D_BN_EPSILON)(x)
            x = lrelu(x, LEAK)
        return sn(Dense(1), x.reshape(x.shape[0], -1))[:, 0]

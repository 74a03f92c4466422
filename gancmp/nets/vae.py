"""The VAE baseline's networks (compare_gan v1 `gans/VAE.py`), on the InfoGAN architecture.

The encoder is the InfoGAN discriminator's body (conv64 4×4 s2–lReLU → conv128 4×4 s2–[BN]–lReLU
→ FC1024–[BN]–lReLU, batch norm as D's, `d_batch_norm`) with a 2·z_dim head: the first half is
the mean μ of q(z | x), the second, through 1e−6 + softplus, its standard deviation σ (v1's
head; not a log-variance). The decoder is the InfoGAN generator with ReLU in place of lReLU and
batch norm always on (v1 `VAE.decoder`), ending in a sigmoid: Bernoulli probabilities per pixel.

In a trial the encoder sits in the discriminator's slot of the train state and the decoder in the
generator's, so checkpoints, trial vmapping, resume, evaluation and sampling (G = decoder, fed
z ~ N(0, I)) work as for a GAN.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from gancmp.nets.common import Dense, optional_bn
from gancmp.nets.infogan import InfoGANGenerator, discriminator_features


class VAEEncoder(nn.Module):
    """images [B, H, W, C] in [0, 1] → (μ [B, z_dim], σ [B, z_dim]) of q(z | x); σ > 0."""

    z_dim: int = 64
    batch_norm: bool = True
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        norm = optional_bn(self.batch_norm, train, self.bn_momentum, self.bn_axis)
        features = discriminator_features(x, norm, self.width)  # its layers first: Dense_0 = FC1024
        gaussian = Dense(2 * self.z_dim)(features)
        mean, raw_std = gaussian[:, :self.z_dim], gaussian[:, self.z_dim:]
        return mean, 1e-6 + jax.nn.softplus(raw_std)


# z [B, z_dim] → Bernoulli probabilities [B, H, W, C]; takes InfoGANGenerator's fields.
VAEDecoder = functools.partial(InfoGANGenerator, activation=jax.nn.relu)

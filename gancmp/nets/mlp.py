"""Small fully connected G and D for 2-D data (the unrolled-GAN / VEEGAN toy setting)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gancmp.nets.common import Dense, batch_norm


class MLPGenerator(nn.Module):
    """z [B, z_dim] → points [B, out_dim]; `depth` hidden ReLU layers of `width`, linear output."""

    out_dim: int = 2
    width: int = 128
    depth: int = 2

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        x = z
        for _ in range(self.depth):
            x = jax.nn.relu(Dense(self.width)(x))
        return Dense(self.out_dim)(x)


class MLPDiscriminator(nn.Module):
    """points [B, d] → logits [B]; `depth` hidden ReLU layers of `width`, optional batch norm."""

    width: int = 128
    depth: int = 2
    batch_norm: bool = False
    bn_momentum: float = 0.999
    bn_axis: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for _ in range(self.depth):
            x = Dense(self.width)(x)
            if self.batch_norm:
                x = batch_norm(train, self.bn_momentum, self.bn_axis)(x)
            x = jax.nn.relu(x)
        return Dense(1)(x)[:, 0]


class MLPAutoEncoderDiscriminator(nn.Module):
    """BEGAN's discriminator for 2-D data: points [B, d] → per-example L1 reconstruction error [B].

    Encoder: `depth` ReLU layers of `width` → linear code of `code_dim`; decoder mirrors it.
    """

    width: int = 128
    depth: int = 2
    code_dim: int = 8
    batch_norm: bool = False
    bn_momentum: float = 0.999
    bn_axis: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = x
        for layer in range(2 * self.depth + 1):
            if layer == self.depth:
                y = Dense(self.code_dim)(y)
                continue
            y = Dense(self.width)(y)
            if self.batch_norm:
                y = batch_norm(train, self.bn_momentum, self.bn_axis)(y)
            y = jax.nn.relu(y)
        recon = Dense(x.shape[-1])(y)
        return jnp.mean(jnp.abs(recon - x), axis=-1)

"""Flax networks, selected by `config.arch`.

`build(arch, ...)` returns a (generator, discriminator) pair of Linen modules. Generators map
z [B, z_dim] to examples; discriminators map examples to [B] outputs (logits, or reconstruction
errors for an auto-encoder discriminator).
"""

from __future__ import annotations

import flax.linen as nn

from gancmp.nets import infogan, mlp

ARCHS = ("infogan", "mlp")
ARCH_DATA = {"infogan": "images [H, W, C] with H and W divisible by 4", "mlp": "2-D points"}


def supports(arch: str, example_shape: tuple[int, ...]) -> bool:
    """Whether `arch` can take examples of this shape."""
    if arch == "mlp":
        return len(example_shape) == 1
    if arch == "infogan":
        return len(example_shape) == 3 and example_shape[0] % 4 == 0 and example_shape[1] % 4 == 0
    return False


def build(
    arch: str,
    example_shape: tuple[int, ...],
    *,
    discriminator: str = "classifier",
    d_batch_norm: bool = True,
    bn_momentum: float = 0.999,
    bn_axis: str | None = None,
    width: float = 1.0,
) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator of `arch` for examples of `example_shape`.

    `discriminator` is "classifier" (logits) or "autoencoder" (BEGAN). `bn_axis` names the device
    axis over which training-mode batch statistics are averaged (None outside a mapped step).
    """
    bn = {"bn_momentum": bn_momentum, "bn_axis": bn_axis}
    if arch == "infogan":
        g = infogan.InfoGANGenerator(tuple(example_shape), width=width, **bn)
        d_cls = (infogan.AutoEncoderDiscriminator if discriminator == "autoencoder"
                 else infogan.InfoGANDiscriminator)
        return g, d_cls(batch_norm=d_batch_norm, width=width, **bn)
    if arch == "mlp":
        w = max(1, round(128 * width))
        g = mlp.MLPGenerator(out_dim=example_shape[0], width=w)
        d_cls = (mlp.MLPAutoEncoderDiscriminator if discriminator == "autoencoder"
                 else mlp.MLPDiscriminator)
        return g, d_cls(width=w, batch_norm=d_batch_norm, **bn)
    raise KeyError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")

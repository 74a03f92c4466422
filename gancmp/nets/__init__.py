"""Flax networks, selected by `config.arch`.

`build(arch, ...)` returns a (generator, discriminator) pair of Linen modules. Generators map
z [B, z_dim] to examples; discriminators map examples to [B] outputs (logits, or reconstruction
errors for an auto-encoder discriminator).
"""

from __future__ import annotations

import flax.linen as nn

from gancmp.nets import dcgan, infogan, mlp, resnet, sndcgan

ARCHS = ("infogan", "mlp", "dcgan", "sndcgan", "resnet")
ARCH_DATA = {
    "infogan": "images [H, W, C] with H and W divisible by 4",
    "mlp": "2-D points",
    "dcgan": "32×32 or 64×64 images with 1 or 3 channels",
    "sndcgan": "32×32 or 64×64 images with 1 or 3 channels",
    "resnet": "32×32 images with 1 or 3 channels",
}
# Architectures with an auto-encoder discriminator (what BEGAN needs).
AUTOENCODER_ARCHS = ("infogan", "mlp", "dcgan")
# Whether D's layers are spectrally normalised when `build` is not told.
SPECTRAL_NORM_DEFAULT = {"infogan": False, "mlp": False, "dcgan": False, "sndcgan": True,
                         "resnet": True}


def supports(arch: str, example_shape: tuple[int, ...]) -> bool:
    """Whether `arch` can take examples of this shape."""
    if arch == "mlp":
        return len(example_shape) == 1
    if len(example_shape) != 3:
        return False
    h, w, c = example_shape
    if arch == "infogan":
        return h % 4 == 0 and w % 4 == 0
    if arch in ("dcgan", "sndcgan"):
        return h == w and h in (32, 64) and c in (1, 3)
    if arch == "resnet":
        return h == w == 32 and c in (1, 3)
    return False


def check_discriminator(arch: str, discriminator: str) -> None:
    """Raises ValueError if `arch` has no discriminator of this kind (an auto-encoder, for BEGAN,
    exists only for `AUTOENCODER_ARCHS`)."""
    if discriminator not in ("classifier", "autoencoder"):
        raise ValueError(f"unknown discriminator {discriminator!r}; "
                         "known: classifier, autoencoder")
    if discriminator == "autoencoder" and arch not in AUTOENCODER_ARCHS:
        raise ValueError(
            f"arch {arch!r} has no auto-encoder discriminator, which BEGAN needs; use one of "
            f"{', '.join(AUTOENCODER_ARCHS)}")


def build(
    arch: str,
    example_shape: tuple[int, ...],
    *,
    discriminator: str = "classifier",
    d_batch_norm: bool = True,
    bn_momentum: float = 0.999,
    bn_axis: str | None = None,
    width: float = 1.0,
    spectral_norm: bool | None = None,
) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator of `arch` for examples of `example_shape`.

    `discriminator` is "classifier" (logits) or "autoencoder" (BEGAN). `bn_axis` names the device
    axis over which training-mode batch statistics are averaged (None outside a mapped step).
    `spectral_norm` (dcgan, sndcgan, resnet classifiers; None: `SPECTRAL_NORM_DEFAULT`)
    normalises every D layer and replaces D's batch norm; its power-iteration state is in D's
    'batch_stats' collection.
    """
    if arch not in ARCHS:
        raise KeyError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    check_discriminator(arch, discriminator)
    sn = SPECTRAL_NORM_DEFAULT[arch] if spectral_norm is None else spectral_norm
    if sn and arch in ("infogan", "mlp"):
        raise ValueError(f"arch {arch!r} has no spectrally normalised discriminator")
    bn = {"bn_momentum": bn_momentum, "bn_axis": bn_axis}
    shape = tuple(example_shape)
    d_kw = {"batch_norm": d_batch_norm, "width": width, **bn}
    if arch == "dcgan":
        g = dcgan.DCGANGenerator(shape, width=width, **bn)
        if discriminator == "autoencoder":
            return g, dcgan.DCGANAutoEncoderDiscriminator(**d_kw)
        return g, dcgan.DCGANDiscriminator(spectral_norm=sn, **d_kw)
    if arch == "sndcgan":
        g = sndcgan.SNDCGANGenerator(shape, width=width, **bn)
        return g, sndcgan.SNDCGANDiscriminator(spectral_norm=sn, **d_kw)
    if arch == "resnet":
        g = resnet.ResNetGenerator(shape, width=width, **bn)
        return g, resnet.ResNetDiscriminator(spectral_norm=sn, **d_kw)
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

"""Flax networks, selected by `config.arch`: one registry entry (`Arch`) per architecture.

`build(arch, ...)` returns a (generator, discriminator) pair of Linen modules. Generators map
z [B, z_dim] to examples; discriminators map examples to [B] outputs (logits, or reconstruction
errors for an auto-encoder discriminator). A VAE's pair (discriminator "encoder") is its decoder,
in the generator's place, and its encoder, mapping examples to (μ, σ) [B, z_dim] each. Adding an
architecture is one `register(Arch(...))`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn

from gancmp.nets import dcgan, infogan, mlp, resnet, sndcgan, vae
from gancmp.nets.common import channels

DISCRIMINATORS = ("classifier", "autoencoder", "encoder")


@dataclasses.dataclass(frozen=True)
class Options:
    """What `build` was asked for, in the form every architecture's builders take.

    `bn` is the batch-norm keywords shared by G and D: {"bn_momentum", "bn_axis"}; `z_dim` sizes
    a VAE encoder's head.
    """

    width: float = 1.0
    bn_momentum: float = 0.999
    bn_axis: str | None = None
    d_batch_norm: bool = True
    spectral_norm: bool = False
    z_dim: int = 64

    @property
    def bn(self) -> dict[str, float | str | None]:
        """{"bn_momentum", "bn_axis"}: the batch-norm keywords of G and D."""
        return {"bn_momentum": self.bn_momentum, "bn_axis": self.bn_axis}


@dataclasses.dataclass(frozen=True)
class Arch:
    """One architecture.

    Attributes:
      name: registry name (`config.arch`), e.g. "dcgan".
      data: the example shapes it takes, in words (used in error messages).
      takes: example shape → whether `data` describes it.
      generator: (example shape, options) → G.
      classifier: options → D with logits [B].
      autoencoder: options → BEGAN's auto-encoder D (reconstruction errors [B]), or None.
      spectral_norm: whether D is spectrally normalised when `build` is not told; None: the
        architecture has no spectrally normalised D.
      encoder, decoder: options → the VAE's encoder ((μ, σ) [B, z_dim] each), and (example
        shape, options) → its decoder; None where the architecture has no VAE.
    """

    name: str
    data: str
    takes: Callable[[tuple[int, ...]], bool]
    generator: Callable[[tuple[int, ...], Options], nn.Module]
    classifier: Callable[[Options], nn.Module]
    autoencoder: Callable[[Options], nn.Module] | None = None
    spectral_norm: bool | None = None
    encoder: Callable[[Options], nn.Module] | None = None
    decoder: Callable[[tuple[int, ...], Options], nn.Module] | None = None

    @property
    def has_autoencoder(self) -> bool:
        """Whether BEGAN (an auto-encoder D) can use this architecture."""
        return self.autoencoder is not None

    @property
    def has_encoder(self) -> bool:
        """Whether the VAE (an encoder in D's place, a decoder in G's) can use it."""
        return self.encoder is not None and self.decoder is not None


_REGISTRY: dict[str, Arch] = {}


def register(arch: Arch) -> Arch:
    """Adds an architecture; a different one under a registered name is a ValueError."""
    if arch.name in _REGISTRY and _REGISTRY[arch.name] != arch:
        raise ValueError(f"arch {arch.name!r} is already registered")
    _REGISTRY[arch.name] = arch
    return arch


def get(name: str) -> Arch:
    """The registered architecture `name`; KeyError listing the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown arch {name!r}; known: {', '.join(names())}") from None


def names() -> list[str]:
    """Registered architecture names, in registration order."""
    return list(_REGISTRY)


def supports(arch: str, example_shape: tuple[int, ...]) -> bool:
    """Whether `arch` can take examples of this shape (False for an unknown arch)."""
    return arch in _REGISTRY and _REGISTRY[arch].takes(tuple(example_shape))


def check_discriminator(arch: str, discriminator: str) -> None:
    """Raises ValueError if `arch` has no discriminator of this kind ("classifier";
    "autoencoder" for BEGAN or "encoder" for the VAE, which only some architectures have)."""
    if discriminator not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {discriminator!r}; "
                         f"known: {', '.join(DISCRIMINATORS)}")
    entry = _REGISTRY.get(arch)
    if discriminator == "autoencoder" and not (entry and entry.has_autoencoder):
        with_ae = [a.name for a in _REGISTRY.values() if a.has_autoencoder]
        raise ValueError(
            f"arch {arch!r} has no auto-encoder discriminator, which BEGAN needs; use one of "
            f"{', '.join(with_ae)}")
    if discriminator == "encoder" and not (entry and entry.has_encoder):
        with_vae = [a.name for a in _REGISTRY.values() if a.has_encoder]
        raise ValueError(f"arch {arch!r} has no VAE encoder and decoder, which the VAE needs; "
                         f"use {', '.join(with_vae)}")


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
    z_dim: int = 64,
) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator of `arch` for examples of `example_shape`.

    `discriminator` is "classifier" (logits) or "autoencoder" (BEGAN). `bn_axis` names the device
    axis over which training-mode batch statistics are averaged (None outside a mapped step).
    `width` scales every channel count (1.0: the reference networks). `spectral_norm` (dcgan,
    sndcgan, resnet classifiers; None: the architecture's default, `Arch.spectral_norm`)
    normalises every D layer and replaces D's batch norm; its power-iteration state is in D's
    'batch_stats' collection. With `discriminator="encoder"` (the VAE) the pair is (decoder,
    encoder of `z_dim`-d latents).
    """
    entry = get(arch)
    check_discriminator(arch, discriminator)
    sn = bool(entry.spectral_norm) if spectral_norm is None else spectral_norm
    if sn and entry.spectral_norm is None:
        raise ValueError(f"arch {arch!r} has no spectrally normalised discriminator")
    options = Options(width=width, bn_momentum=bn_momentum, bn_axis=bn_axis,
                      d_batch_norm=d_batch_norm, spectral_norm=sn, z_dim=z_dim)
    if discriminator == "encoder":
        return entry.decoder(tuple(example_shape), options), entry.encoder(options)
    make_d = entry.autoencoder if discriminator == "autoencoder" else entry.classifier
    return entry.generator(tuple(example_shape), options), make_d(options)


def _image(h_w: Callable[[int, int], bool]) -> Callable[[tuple[int, ...]], bool]:
    """`takes` for images [H, W, C] with C in (1, 3) and `h_w(H, W)`."""
    return lambda s: len(s) == 3 and s[2] in (1, 3) and h_w(s[0], s[1])


def _d(cls: type[nn.Module], spectral: bool = True) -> Callable[[Options], nn.Module]:
    """The builder of a D class that takes batch_norm, width, bn_momentum, bn_axis (and, if
    `spectral`, spectral_norm)."""
    def make(o: Options) -> nn.Module:
        sn = {"spectral_norm": o.spectral_norm} if spectral else {}
        return cls(batch_norm=o.d_batch_norm, width=o.width, **sn, **o.bn)
    return make


def _g(cls: type[nn.Module]) -> Callable[[tuple[int, ...], Options], nn.Module]:
    """The builder of an image G class that takes image_shape, width, bn_momentum, bn_axis."""
    return lambda shape, o: cls(shape, width=o.width, **o.bn)


register(Arch(
    "infogan", "images [H, W, C] with H and W divisible by 4",
    takes=lambda s: len(s) == 3 and s[0] % 4 == 0 and s[1] % 4 == 0,
    generator=_g(infogan.InfoGANGenerator),
    classifier=_d(infogan.InfoGANDiscriminator, spectral=False),
    autoencoder=_d(infogan.AutoEncoderDiscriminator, spectral=False),
    encoder=lambda o: vae.VAEEncoder(z_dim=o.z_dim, batch_norm=o.d_batch_norm, width=o.width,
                                     **o.bn),
    decoder=_g(vae.VAEDecoder),
))
register(Arch(
    "mlp", "2-D points", takes=lambda s: len(s) == 1,
    generator=lambda shape, o: mlp.MLPGenerator(out_dim=shape[0], width=channels(128, o.width)),
    classifier=lambda o: mlp.MLPDiscriminator(
        width=channels(128, o.width), batch_norm=o.d_batch_norm, **o.bn),
    autoencoder=lambda o: mlp.MLPAutoEncoderDiscriminator(
        width=channels(128, o.width), batch_norm=o.d_batch_norm, **o.bn),
))
register(Arch(
    "dcgan", "32×32 or 64×64 images with 1 or 3 channels",
    takes=_image(lambda h, w: h == w and h in (32, 64)),
    generator=_g(dcgan.DCGANGenerator), classifier=_d(dcgan.DCGANDiscriminator),
    autoencoder=_d(dcgan.DCGANAutoEncoderDiscriminator, spectral=False), spectral_norm=False,
))
register(Arch(
    "sndcgan", "32×32 or 64×64 images with 1 or 3 channels",
    takes=_image(lambda h, w: h == w and h in (32, 64)),
    generator=_g(sndcgan.SNDCGANGenerator), classifier=_d(sndcgan.SNDCGANDiscriminator),
    spectral_norm=True,
))
register(Arch(
    "resnet", "32×32 images with 1 or 3 channels", takes=_image(lambda h, w: h == w == 32),
    generator=_g(resnet.ResNetGenerator), classifier=_d(resnet.ResNetDiscriminator),
    spectral_norm=True,
))

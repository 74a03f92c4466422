"""A method is a named combination of a loss, an optional penalty and constraint, the kind of
discriminator it needs, and its authors' default hyperparameters. Each is defined here once.

Hyperparameters a method can use (all numeric ones are per-trial arrays in the train state, so
trials that differ only in them train together under `jax.vmap`):
  lr, beta1, beta2          Adam (shared by G and D, as compare_gan v1)
  disc_iters                D updates per G update (static: splits sweep groups)
  d_batch_norm              batch norm in D (static)
  penalty_weight            λ of the penalty (WGAN_GP, DRAGAN, NS_R1)
  clip                      WGAN weight-clipping bound
  gamma, lambda_k           BEGAN's equilibrium target and k learning rate
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from gancmp import losses, penalties

NUMERIC_HPARAMS = ("lr", "beta1", "beta2", "penalty_weight", "clip", "gamma", "lambda_k")
STATIC_HPARAMS = ("disc_iters", "d_batch_norm")

# Values for hyperparameters a method does not set; only the ones it uses matter.
BASE_DEFAULTS: dict[str, float | int | bool] = {
    "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "disc_iters": 1, "d_batch_norm": True,
    "penalty_weight": 0.0, "clip": 0.0, "gamma": 0.75, "lambda_k": 1e-3,
}


@dataclasses.dataclass(frozen=True)
class Method:
    """One GAN method.

    Attributes:
      name: registry name, e.g. "WGAN_GP".
      loss: name in `gancmp.losses`.
      penalty: name in `gancmp.penalties`, added to D's loss times `penalty_weight`.
      clip_weights: clip every D parameter to [−clip, clip] after each D update (WGAN).
      discriminator: "classifier" (outputs logits) or "autoencoder" (outputs reconstruction
        errors, BEGAN).
      defaults: the authors' defaults, overriding `BASE_DEFAULTS`.
      uses: the method-specific hyperparameters it reads (beyond lr, β1, β2, disc_iters, D BN).
      search: its own search distributions, {range name: {parameter: distribution}}
        (`gancmp.sweep.space`); parameters not listed get the shared ranges.
    """

    name: str
    loss: str
    penalty: str | None = None
    clip_weights: bool = False
    discriminator: Literal["classifier", "autoencoder"] = "classifier"
    defaults: Mapping[str, float | int | bool] = dataclasses.field(default_factory=dict)
    uses: tuple[str, ...] = ()
    search: Mapping[str, Mapping[str, object]] = dataclasses.field(default_factory=dict)

    def hparams(self, overrides: Mapping[str, object] | None = None) -> dict[str, object]:
        """All hyperparameters: base defaults < the method's defaults < non-None overrides."""
        out = {**BASE_DEFAULTS, **self.defaults}
        out.update({k: v for k, v in (overrides or {}).items() if v is not None and k in out})
        return out


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Adds a method; its loss and penalty must already be registered."""
    losses.spec(method.loss)
    if method.penalty is not None:
        penalties.get(method.penalty)
    if method.name in _REGISTRY and _REGISTRY[method.name] != method:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(names())}") from None


def names() -> list[str]:
    return list(_REGISTRY)


# The paper's seven (defaults: the authors' settings, as listed by compare_gan v1).
PAPER_METHODS = ("MM_GAN", "NS_GAN", "LSGAN", "WGAN", "WGAN_GP", "DRAGAN", "BEGAN")

register(Method("MM_GAN", "mm", defaults={"lr": 5e-5, "beta1": 0.0}))
register(Method("NS_GAN", "ns", defaults={"lr": 5e-5, "beta1": 0.0}))
register(Method("LSGAN", "ls", defaults={"lr": 2e-4, "beta1": 0.5}))
register(Method(
    "WGAN", "wgan", clip_weights=True, uses=("clip",),
    defaults={"lr": 5e-5, "beta1": 0.5, "disc_iters": 5, "clip": 0.01},
))
register(Method(
    "WGAN_GP", "wgan", penalty="wgan_gp", uses=("penalty_weight",),
    defaults={"lr": 1e-4, "beta1": 0.5, "disc_iters": 5, "penalty_weight": 10.0,
              "d_batch_norm": False},
))
register(Method(
    "DRAGAN", "ns", penalty="dragan", uses=("penalty_weight",),
    defaults={"lr": 1e-4, "beta1": 0.5, "penalty_weight": 10.0},
))
register(Method(
    "BEGAN", "began", discriminator="autoencoder", uses=("gamma", "lambda_k"),
    defaults={"lr": 1e-4, "beta1": 0.5, "disc_iters": 5, "gamma": 0.75, "lambda_k": 1e-3},
))
# Later losses, under the same protocol.
register(Method("HINGE", "hinge"))
register(Method("RSGAN", "rsgan"))
register(Method("RAGAN", "ragan"))
register(Method(
    "NS_R1", "ns", penalty="r1", uses=("penalty_weight",), defaults={"penalty_weight": 5.0},
))

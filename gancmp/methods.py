"""A method is a named combination of a loss, an optional penalty and constraint, the kind of
discriminator it needs, and its authors' default hyperparameters. Each is defined here once.
Every method but one is a GAN; the paper's VAE baseline is a method whose update rule is not
adversarial (`Method.trainer = "vae"`: its encoder takes D's place, its decoder G's).

Every hyperparameter is declared once, by its owner, with its default and its search ranges:
  - `SHARED`, those of every method: Adam's lr, β1, β2 (shared by G and D, as compare_gan v1),
    and the static `STATIC_HPARAMS` (D updates per G update, batch norm in D), which change the
    compiled program and so split sweep groups;
  - `PENALTY`, the weight λ of a method's penalty, and `CLIP`, WGAN's weight-clipping bound;
  - each registered loss, its own (`gancmp.losses.register(hparams=..., search=...)`: BEGAN's γ
    and λ_k);
  - each method, any name in its `defaults` that none of these declares.
A method carries only its own (`Method.hparams`: the shared ones, its penalty's weight, its clip
bound, its loss's, its own), in its trials' configs, train states, records and sweep ranges, so a
loss or method registered later (a user module named by `config.imports`) changes no other
method's trials. `hparam_defaults()` lists every name declared now (the fields a config may set)
and `numeric_names()` the numeric ones. Numeric hyperparameters are per-trial arrays in the train
state, so trials that differ only in them train together under `jax.vmap`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from gancmp import latents, losses, penalties

Value = float | int | bool


@dataclasses.dataclass(frozen=True)
class HParams:
    """Hyperparameters declared together by one owner.

    Attributes:
      defaults: {name: default value}.
      search: their search distributions, {range name: {name: spec}}, with specs as data for
        `gancmp.sweep.space.parse`: ("log", a, b) = 10^U[a, b], ("uniform", a, b),
        ("choice", v, ...).
    """

    defaults: Mapping[str, Value]
    search: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


# compare_gan v1's defaults and ranges (`src/params.py`); β2 is not searched.
SHARED = HParams(
    defaults={"lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "disc_iters": 1, "d_batch_norm": True},
    search={
        "wide": {"lr": ("log", -5, -2), "beta1": ("uniform", 0, 1),
                 "disc_iters": ("choice", 1, 5), "d_batch_norm": ("choice", True, False)},
        "narrow": {"lr": ("log", -4, -3), "beta1": ("choice", 0.5),
                   "disc_iters": ("choice", 1), "d_batch_norm": ("choice", True, False)},
    },
)
STATIC_HPARAMS = ("disc_iters", "d_batch_norm")
# The trainer adds penalty_weight · penalty to D's loss (penalties are λ-free).
PENALTY = HParams({"penalty_weight": 0.0}, {"wide": {"penalty_weight": ("log", -1, 2)},
                                            "narrow": {"penalty_weight": ("log", -1, 1)}})
CLIP = HParams({"clip": 0.0}, {"wide": {"clip": ("log", -3, 0)},
                               "narrow": {"clip": ("log", -2, 0)}})


@dataclasses.dataclass(frozen=True)
class Method:
    """One GAN method.

    Attributes:
      name: registry name, e.g. "WGAN_GP".
      loss: name in `gancmp.losses`.
      penalty: name in `gancmp.penalties`, added to D's loss times `penalty_weight`.
      clip_weights: clip every D parameter to [−clip, clip] after each D update (WGAN).
      discriminator: "classifier" (outputs logits), "autoencoder" (outputs reconstruction
        errors, BEGAN) or "encoder" (the VAE's: outputs q(z | x)).
      trainer: the update rule, "gan" (`disc_iters` D updates, then one G update) or "vae" (one
        update of encoder and decoder together on the negative ELBO, counted as one D update of
        the budget, its loss "vae" taking each example's negative ELBO; it goes with the
        "encoder" discriminator).
      prior: the latent prior G is sampled from (`gancmp.latents`): "uniform" U[−1, 1] (the
        GANs, v1) or "normal" N(0, I) (the VAE).
      resample_z_for_g: the generator update draws fresh z. False (compare_gan v1's default,
        `gans/abstract_gan.py` `run_single_train_step`, L207–215): G is fed the `batch_z` of the
        D update just before it (the last of the `disc_iters` D updates). Only v1's WGAN_GP
        resamples (its `resample_before_generator`, `gans/WGAN_GP.py` L111–112).
        `config.resample_z_for_g` overrides it per trial.
      loss_state_update: how a stateful loss's state (BEGAN's k) is updated. "fresh"
        (compare_gan v1, the default): after every D update and the G update that may follow
        it, from a fresh forward pass of the updated D and G on the same batch and z
        (`gans/BEGAN.py` L162–171 via `gans/abstract_gan.py` L218;
        `gancmp.train.step.refresh_loss_state`). "d_step": within each D update, from the
        errors of its own loss, before the update (what gancmp did before issue 24): another
        controller signal; register a Method with it to compare.
      defaults: the authors' defaults, overriding those declared elsewhere; a name declared
        nowhere else is the method's own hyperparameter (numeric), with this default.
      search: its own search distributions, {range name: {parameter: spec}} (specs as in
        `HParams`, or `gancmp.sweep.space` distributions); they take precedence over the ranges
        its hyperparameters' owners declare.
      range_defaults: the authors' default of a range where it differs from `defaults`,
        {range name: {parameter: value}}: the first setting of a tuned phase in that range
        (`default_setting`; v1's VAE has D batch norm on in the wide range, off in the narrow).
    """

    name: str
    loss: str
    penalty: str | None = None
    clip_weights: bool = False
    discriminator: Literal["classifier", "autoencoder", "encoder"] = "classifier"
    resample_z_for_g: bool = False
    loss_state_update: Literal["fresh", "d_step"] = "fresh"
    defaults: Mapping[str, Value] = dataclasses.field(default_factory=dict)
    search: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    trainer: Literal["gan", "vae"] = "gan"
    prior: str = "uniform"
    range_defaults: Mapping[str, Mapping[str, Value]] = dataclasses.field(default_factory=dict)

    def __hash__(self) -> int:
        """By name (equal methods have equal names), so that a trial and its setup are
        hashable keys although `defaults` and `search` are dicts."""
        return hash(self.name)

    def declarations(self) -> list[HParams]:
        """What declares the method's hyperparameters, lowest precedence first: the shared ones,
        the penalty weight (with a penalty), the clip bound (with clipping), its loss's, its
        own."""
        spec = losses.spec(self.loss)
        out = [SHARED]
        if self.penalty is not None:
            out.append(PENALTY)
        if self.clip_weights:
            out.append(CLIP)
        return [*out, HParams(spec.hparams, spec.search), HParams(self.defaults, self.search)]

    @property
    def uses(self) -> tuple[str, ...]:
        """The method-specific hyperparameters it reads (beyond lr, β1, β2, disc_iters, D BN)."""
        names = dict.fromkeys(n for h in self.declarations()[1:] for n in h.defaults)
        return tuple(n for n in names if n not in SHARED.defaults)

    def hparams(self, overrides: Mapping[str, object] | None = None) -> dict[str, object]:
        """Its own hyperparameters, and only those (`declarations`: the shared ones, its
        penalty's weight, its clip bound, its loss's, its own): declared defaults < its loss's
        < the method's defaults < non-None `overrides` (names it does not have are ignored)."""
        out: dict[str, object] = {}
        for h in self.declarations():
            out.update(h.defaults)
        out.update({k: v for k, v in (overrides or {}).items() if v is not None and k in out})
        return out

    def default_setting(self, range_name: str) -> dict[str, object]:
        """The authors' default setting in `range_name`: `hparams()` with that range's
        `range_defaults`."""
        return self.hparams(self.range_defaults.get(range_name))

    def numeric_names(self) -> tuple[str, ...]:
        """Its numeric hyperparameters: the leaves of its train state's `hparams` (float32 per
        trial), every one of `hparams()` but `STATIC_HPARAMS`."""
        return tuple(n for n in self.hparams() if n not in STATIC_HPARAMS)

    def ranges(self, range_name: str) -> dict[str, Any]:
        """{parameter: spec} of the method's search space in `range_name`: the declared ranges
        of the hyperparameters it uses, the method's own `search` last."""
        out: dict[str, Any] = {}
        for h in self.declarations():
            out.update(h.search.get(range_name, {}))
        return out


_REGISTRY: dict[str, Method] = {}


def hparam_defaults() -> dict[str, Value]:
    """Every hyperparameter declared now, with its base default (the value a method that does
    not use it carries): shared, penalty weight, clip bound, every registered loss's, every
    registered method's own; the first declaration of a name gives its base default."""
    out: dict[str, Value] = {}
    owners = [SHARED, PENALTY, CLIP, *(HParams(losses.spec(n).hparams) for n in losses.names()),
              *(HParams(m.defaults) for m in _REGISTRY.values())]
    for h in owners:
        for name, value in h.defaults.items():
            out.setdefault(name, value)
    return out


def numeric_names() -> tuple[str, ...]:
    """Names of the numeric hyperparameters declared now: the train state's `hparams`, float32
    scalars per trial (every declared name but `STATIC_HPARAMS`)."""
    return tuple(n for n in hparam_defaults() if n not in STATIC_HPARAMS)


def register(method: Method) -> Method:
    """Adds a method; its loss and penalty must already be registered, its loss may not declare
    a static hyperparameter, and its `search` may only name hyperparameters it has."""
    spec = losses.spec(method.loss)
    if method.penalty is not None:
        penalties.get(method.penalty)
    static = sorted(set(STATIC_HPARAMS) & set(spec.hparams))
    if static:
        raise ValueError(f"method {method.name!r}: its loss {method.loss!r} declares {static}, "
                         "which are static shared hyperparameters, not a loss's own")
    _check_trainer(method)
    has = set(SHARED.defaults) | set(method.uses)
    unknown = sorted({p for r in method.search.values() for p in r} - has)
    if unknown:
        raise ValueError(f"method {method.name!r}: search ranges for {unknown}, which it does "
                         f"not have; it has: {', '.join(sorted(has))}")
    if method.name in _REGISTRY and _REGISTRY[method.name] != method:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def _check_trainer(method: Method) -> None:
    """The VAE's update rule and its encoder go together; the prior must be known."""
    latents.check(method.prior)
    if method.trainer not in TRAINERS:
        raise ValueError(f"method {method.name!r}: unknown trainer {method.trainer!r}; "
                         f"known: {', '.join(TRAINERS)}")
    if (method.trainer == "vae") != (method.discriminator == "encoder"):
        raise ValueError(f"method {method.name!r}: the 'vae' trainer and the 'encoder' "
                         "discriminator go together")
    if method.loss_state_update not in LOSS_STATE_UPDATES:
        raise ValueError(f"method {method.name!r}: unknown loss_state_update "
                         f"{method.loss_state_update!r}; known: {', '.join(LOSS_STATE_UPDATES)}")


def get(name: str) -> Method:
    """The method registered under `name`; a clear error lists the registered names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(names())}") from None


def names() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


TRAINERS = ("gan", "vae")
LOSS_STATE_UPDATES = ("fresh", "d_step")  # `Method.loss_state_update`
# The paper's seven GANs (defaults: the authors' settings, as listed by compare_gan v1).
PAPER_METHODS = ("MM_GAN", "NS_GAN", "LSGAN", "WGAN", "WGAN_GP", "DRAGAN", "BEGAN")
# Its non-adversarial baseline: v1 swept it with the GANs (`ALL_GANS`, the "gan8" experiments)
# and the paper's FID table has its row.
PAPER_BASELINES = ("VAE",)
# compare_gan v1 keeps batch norm out of D where a gradient penalty is taken (narrow range).
_NO_D_BN_NARROW = {"narrow": {"d_batch_norm": ("choice", False)}}

register(Method("MM_GAN", "mm", defaults={"lr": 5e-5, "beta1": 0.0}))
register(Method("NS_GAN", "ns", defaults={"lr": 5e-5, "beta1": 0.0}))
register(Method("LSGAN", "ls", defaults={"lr": 2e-4, "beta1": 0.5}))
register(Method(
    "WGAN", "wgan", clip_weights=True,
    defaults={"lr": 5e-5, "beta1": 0.5, "disc_iters": 5, "clip": 0.01},
))
register(Method(
    "WGAN_GP", "wgan", penalty="wgan_gp", search=_NO_D_BN_NARROW, resample_z_for_g=True,
    defaults={"lr": 1e-4, "beta1": 0.5, "disc_iters": 5, "penalty_weight": 10.0,
              "d_batch_norm": False},
))
register(Method(
    "DRAGAN", "ns", penalty="dragan", search=_NO_D_BN_NARROW,
    defaults={"lr": 1e-4, "beta1": 0.5, "penalty_weight": 10.0},
))
# γ and λ_k: the BEGAN loss's registered defaults. No batch norm in D: v1 `params.py`
# `BEGANHyperParams` (L231–233) sets `discriminator_batchnorm` False for both ranges.
register(Method(
    "BEGAN", "began", discriminator="autoencoder",
    defaults={"lr": 1e-4, "beta1": 0.5, "disc_iters": 5, "d_batch_norm": False},
))
# Later losses, under the same protocol.
register(Method("HINGE", "hinge"))
register(Method("RSGAN", "rsgan"))
register(Method("RAGAN", "ragan"))
register(Method("RAHINGE", "rahinge"))
register(Method("RALSGAN", "ralsgan"))
register(Method("NS_R1", "ns", penalty="r1", defaults={"penalty_weight": 5.0}))
# v1 `params.VAEHyperParams`: lr 5e-5, β1 0.5, shared ranges. v1 drew disc_iters from {1, 5}
# for it too, but its VAE step ignores it (one update per step): pinned to 1 here (set to n,
# each iteration makes n VAE updates; the budget still counts VAE updates). Its narrow range's
# default has D (encoder) batch norm off (L198–211: `AddRange("discriminator_batchnorm", False,
# [True, False])`), the wide range's on (`GetDefaultWideRange`, True).
register(Method(
    "VAE", "vae", discriminator="encoder", trainer="vae", prior="normal",
    defaults={"lr": 5e-5, "beta1": 0.5}, range_defaults={"narrow": {"d_batch_norm": False}},
    search={r: {"disc_iters": ("choice", 1)} for r in ("wide", "narrow")},
))

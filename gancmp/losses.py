"""GAN losses as pure functions of discriminator outputs, and the registry of their names.

Conventions (those of the paper's code, google/compare_gan branch v1, `src/gans/*.py`):
- Inputs are raw discriminator outputs of shape [B]: **logits** where a sigmoid is implied, critic
  values for WGAN, per-example reconstruction errors for BEGAN's auto-encoder discriminator.
- Every loss is a mean over the batch and returns `(d_loss, g_loss)`; both are minimised.
- Cross-entropy terms are written with `softplus` (−log σ(x) = softplus(−x),
  −log(1 − σ(x)) = softplus(x)), never `log(sigmoid(x))`, so they stay finite at any logit.

A stateful loss (BEGAN's k) takes its state and hyperparameters explicitly and returns the new
state: `fn(d_real, d_fake, state, **hparams) -> (d_loss, g_loss, new_state)`. It is registered with
its state's initial value, and `apply` calls both kinds uniformly, so the trainer and the generic
tests never special-case a loss. Adding a loss is one function plus one `register` call.

The conventions of other libraries (TF-GAN, StudioGAN, mimicry) are keyword-only options of the
same function, with v1's behaviour as the default (`ns`/`mm` `label_smoothing`, `ls` `raw`); a
variant that a method uses is registered under its own name (`ls_raw`).

A loss declares its own hyperparameters in that call, once: `hparams` (names and defaults; numeric,
so they are per-trial arrays in the train state) and `search` (their ranges per range name, as data
for `gancmp.sweep.space.parse`). `gancmp.methods` derives from the registry, when asked, every
hyperparameter a trial has, so a loss registered later by a user module takes part in configs,
train states and sweeps like the built-in ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp

Array = jax.Array
OutputKind = Literal["logits", "energy"]


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """A registered loss.

    Attributes:
      name: registry name.
      fn: the loss function (see module docstring for the two signatures).
      output: what D produces: "logits" (higher = more real) or "energy" (lower = more real,
        e.g. BEGAN's reconstruction error).
      init_state: initial loss state for a stateful loss (a float or pytree), None if stateless.
      hparams: names and default values of the hyperparameters the loss takes (keyword arguments
        of `fn`, after the state for a stateful loss).
      search: their search distributions, {range name: {parameter: spec}} with specs as
        `gancmp.sweep.space.parse` reads them, e.g. {"wide": {"gamma": ("uniform", 0, 1)}}.
    """

    name: str
    fn: Callable[..., Any]
    output: OutputKind = "logits"
    init_state: Any = None
    hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)
    search: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def stateful(self) -> bool:
        return self.init_state is not None


_REGISTRY: dict[str, LossSpec] = {}


def register(
    name: str,
    fn: Callable[..., Any],
    *,
    output: OutputKind = "logits",
    init_state: Any = None,
    hparams: Mapping[str, float] | None = None,
    search: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[..., Any]:
    """Registers `fn` under `name` with its hyperparameters' defaults (`hparams`) and search
    ranges (`search`, see `LossSpec`); returns `fn` so it can be used as a plain call."""
    if name in _REGISTRY and _REGISTRY[name].fn is not fn:
        raise ValueError(f"loss {name!r} is already registered")
    undeclared = {p for ranges in (search or {}).values() for p in ranges} - set(hparams or {})
    if undeclared:
        raise ValueError(f"loss {name!r}: search ranges for undeclared hyperparameter(s) "
                         f"{sorted(undeclared)}; declare them in hparams")
    _REGISTRY[name] = LossSpec(name, fn, output, init_state, dict(hparams or {}),
                               {r: dict(v) for r, v in (search or {}).items()})
    return fn


def get(name: str) -> Callable[..., Any]:
    """The loss function registered under `name`."""
    return spec(name).fn


def spec(name: str) -> LossSpec:
    """The full registry entry for `name`; a clear error lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; registered: {', '.join(names())}") from None


def names() -> list[str]:
    """Registered loss names, sorted."""
    return sorted(_REGISTRY)


def apply(
    name: str,
    d_real: Array,
    d_fake: Array,
    state: Any = None,
    hparams: Mapping[str, Array | float] | None = None,
) -> tuple[Array, Array, Any]:
    """Calls any registered loss uniformly: returns `(d_loss, g_loss, new_state)`.

    `d_real`, `d_fake`: [B] discriminator outputs; the losses are scalars. Every loss receives
    those of `hparams` it declares (their defaults otherwise). For a stateless loss the state
    passes through unchanged; a stateful loss receives `state` (its `init_state` when None).
    """
    s = spec(name)
    hp = {k: (hparams or {}).get(k, v) for k, v in s.hparams.items()}
    if not s.stateful:
        d_loss, g_loss = s.fn(d_real, d_fake, **hp)
        return d_loss, g_loss, state
    return s.fn(d_real, d_fake, s.init_state if state is None else state, **hp)


def check(name: str, batch: int = 4) -> None:
    """Checks once, with `jax.eval_shape` (nothing is computed), that the registered loss keeps
    its contract on [batch] float32 inputs: a stateless loss returns `(d_loss, g_loss)`, two
    scalars; a stateful one `(d_loss, g_loss, new_state)`, the new state shaped like its
    `init_state`. Raises ValueError naming the loss and the broken contract."""
    s = spec(name)
    x = jax.ShapeDtypeStruct((batch,), jnp.float32)
    state = () if not s.stateful else (s.init_state,)
    want = "(d_loss, g_loss, new_state)" if s.stateful else "(d_loss, g_loss)"
    try:
        out = jax.eval_shape(lambda r, f, *st: s.fn(r, f, *st, **s.hparams), x, x, *state)
    except Exception as e:  # the user's function: any error is its own
        text = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"loss {name!r}: calling it on [B] discriminator outputs failed "
                         f"({type(e).__name__}: {text[:200]}); a loss takes (d_real, d_fake"
                         f"{', state' if s.stateful else ''}, **hyperparameters)") from None
    if not isinstance(out, tuple) or len(out) != len(want.split(",")):
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise ValueError(f"loss {name!r}: must return {want}, returned {got}"
                         + ("" if s.stateful else " (a loss with state registers its "
                            "init_state)"))
    for label, value in zip(("d_loss", "g_loss"), out[:2], strict=False):
        shape = getattr(value, "shape", None)
        if shape != ():
            raise ValueError(f"loss {name!r}: {label} must be a scalar (the mean over the "
                             f"batch), got shape {shape}")
    if s.stateful:
        old = jax.tree.map(jnp.shape, s.init_state)
        new = jax.tree.map(lambda v: tuple(v.shape), out[2])
        if jax.tree.structure(old) != jax.tree.structure(new) or old != new:
            raise ValueError(f"loss {name!r}: new_state must have the shape of init_state "
                             f"{old}, got {new}")


# --- the losses -------------------------------------------------------------------------------


def _check_smoothing(label_smoothing: Array | float) -> None:
    """A static label smoothing must lie in [0, 1] (a traced one is the caller's to check)."""
    if isinstance(label_smoothing, int | float) and not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing}")


def _real_term(d_real: Array, label_smoothing: Array | float) -> Array:
    """D's cross entropy on real logits with the real label y = 1 − s/2 (TF-GAN's one-sided
    smoothing towards ½, `tf.losses.sigmoid_cross_entropy`): E[y·softplus(−ℓr) +
    (1 − y)·softplus(ℓr)]; exactly E softplus(−ℓr) for a static s = 0."""
    _check_smoothing(label_smoothing)
    if isinstance(label_smoothing, int | float) and label_smoothing == 0:
        return jnp.mean(jax.nn.softplus(-d_real))
    y = 1.0 - 0.5 * label_smoothing
    return jnp.mean(y * jax.nn.softplus(-d_real) + (1.0 - y) * jax.nn.softplus(d_real))


def ns(d_real: Array, d_fake: Array, *, label_smoothing: Array | float = 0.0
       ) -> tuple[Array, Array]:
    """Non-saturating GAN (compare_gan v1 `GAN`).

    D = E[−log σ(ℓr)] + E[−log(1 − σ(ℓf))] = E softplus(−ℓr) + E softplus(ℓf)
    G = E[−log σ(ℓf)] = E softplus(−ℓf)

    `label_smoothing` s (one-sided, D's real term only; default 0, v1's): the real label becomes
    y = 1 − s/2, TF-GAN's convention (smoothed towards ½: s = 0.25 gives 0.875), so D's real
    term is E[y·softplus(−ℓr) + (1 − y)·softplus(ℓr)] and ∂D/∂ℓr = (σ(ℓr) − y)/B. TF-GAN's
    `modified_discriminator_loss` (and `minimax_discriminator_loss`) defaults to s = 0.25; its
    `modified_generator_loss` defaults to no smoothing, as G here never has any.
    """
    d_loss = _real_term(d_real, label_smoothing) + jnp.mean(jax.nn.softplus(d_fake))
    return d_loss, jnp.mean(jax.nn.softplus(-d_fake))


def mm(d_real: Array, d_fake: Array, *, label_smoothing: Array | float = 0.0
       ) -> tuple[Array, Array]:
    """Minimax GAN (compare_gan v1 `GAN_MINMAX`): G minimises the negative of D's fake term.

    D = E softplus(−ℓr) + E softplus(ℓf)
    G = −E[−log(1 − σ(ℓf))] = E[log(1 − σ(ℓf))] = −E softplus(ℓf)

    `label_smoothing`: D's real label y = 1 − s/2, as `ns` (G does not change). TF-GAN's
    `minimax_generator_loss` is the negative of its whole D loss evaluated with the constant
    logit 1 in place of D(x), so it equals this G minus the constant softplus(−1) ≈ 0.3133 (at
    its default s = 0): the same gradients, a shifted value.
    """
    fake_term = jnp.mean(jax.nn.softplus(d_fake))
    return _real_term(d_real, label_smoothing) + fake_term, -fake_term


def ls(d_real: Array, d_fake: Array, *, raw: bool = False) -> tuple[Array, Array]:
    """Least squares GAN on **sigmoid outputs**, as compare_gan v1 `LSGAN`.

    D = ½ E[(σ(ℓr) − 1)²] + ½ E[σ(ℓf)²]
    G = ½ E[(σ(ℓf) − 1)²]

    `raw=True` (registered as `ls_raw`): the same squares on the raw outputs ℓ instead of σ(ℓ),
    as TF-GAN's `least_squares_{discriminator,generator}_loss` (real_label 1, fake_label 0, the
    ½ factors) and StudioGAN's `d_ls`/`g_ls` compute them:
    D = ½ E[(ℓr − 1)²] + ½ E[ℓf²],  G = ½ E[(ℓf − 1)²]; ∂D/∂ℓr = (ℓr − 1)/B, unbounded where the
    sigmoid version saturates.
    """
    p_real, p_fake = (d_real, d_fake) if raw else (jax.nn.sigmoid(d_real), jax.nn.sigmoid(d_fake))
    d_loss = 0.5 * (jnp.mean(jnp.square(p_real - 1.0)) + jnp.mean(jnp.square(p_fake)))
    return d_loss, 0.5 * jnp.mean(jnp.square(p_fake - 1.0))


def ls_raw(d_real: Array, d_fake: Array) -> tuple[Array, Array]:
    """Least squares on raw outputs (TF-GAN, StudioGAN): `ls(..., raw=True)`."""
    return ls(d_real, d_fake, raw=True)


def wgan(d_real: Array, d_fake: Array) -> tuple[Array, Array]:
    """Wasserstein GAN on critic values (compare_gan v1 `WGAN`, `WGAN_GP`).

    D = −E ℓr + E ℓf
    G = −E ℓf
    """
    return -jnp.mean(d_real) + jnp.mean(d_fake), -jnp.mean(d_fake)


def hinge(d_real: Array, d_fake: Array) -> tuple[Array, Array]:
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018).

    D = E relu(1 − ℓr) + E relu(1 + ℓf)
    G = −E ℓf
    """
    d_loss = jnp.mean(jax.nn.relu(1.0 - d_real)) + jnp.mean(jax.nn.relu(1.0 + d_fake))
    return d_loss, -jnp.mean(d_fake)


def rsgan(d_real: Array, d_fake: Array) -> tuple[Array, Array]:
    """Relativistic standard GAN (Jolicoeur-Martineau 2019), pairing example i of each batch.

    D = E[−log σ(ℓr − ℓf)] = E softplus(ℓf − ℓr)
    G = E[−log σ(ℓf − ℓr)] = E softplus(ℓr − ℓf)
    """
    diff = d_real - d_fake
    return jnp.mean(jax.nn.softplus(-diff)), jnp.mean(jax.nn.softplus(diff))


def _relative(d_real: Array, d_fake: Array) -> tuple[Array, Array]:
    """(r, f) = (ℓr − E ℓf, ℓf − E ℓr): each output relative to the other batch's mean."""
    return d_real - jnp.mean(d_fake), d_fake - jnp.mean(d_real)


def ragan(d_real: Array, d_fake: Array) -> tuple[Array, Array]:
    """Relativistic average GAN (Jolicoeur-Martineau 2019).

    With r = ℓr − E ℓf and f = ℓf − E ℓr:
    D = E[−log σ(r)] + E[−log(1 − σ(f))] = E softplus(−r) + E softplus(f)
    G = E[−log σ(f)] + E[−log(1 − σ(r))] = E softplus(−f) + E softplus(r)
    """
    r, f = _relative(d_real, d_fake)
    d_loss = jnp.mean(jax.nn.softplus(-r)) + jnp.mean(jax.nn.softplus(f))
    g_loss = jnp.mean(jax.nn.softplus(-f)) + jnp.mean(jax.nn.softplus(r))
    return d_loss, g_loss


def rahinge(d_real: Array, d_fake: Array) -> tuple[Array, Array]:
    """Relativistic average hinge GAN (RaHingeGAN, Jolicoeur-Martineau 2019).

    With r = ℓr − E ℓf and f = ℓf − E ℓr:
    D = E relu(1 − r) + E relu(1 + f)
    G = E relu(1 + r) + E relu(1 − f)   (G swaps the roles of real and fake, as in `ragan`)

    Written as the paper's sums, like `ragan`; her code (`GAN_losses_iter.py`, loss 8) halves D
    and G, a constant factor.
    """
    r, f = _relative(d_real, d_fake)
    d_loss = jnp.mean(jax.nn.relu(1.0 - r)) + jnp.mean(jax.nn.relu(1.0 + f))
    g_loss = jnp.mean(jax.nn.relu(1.0 + r)) + jnp.mean(jax.nn.relu(1.0 - f))
    return d_loss, g_loss


def ralsgan(d_real: Array, d_fake: Array) -> tuple[Array, Array]:
    """Relativistic average least squares GAN (RaLSGAN, Jolicoeur-Martineau 2019), on raw outputs.

    With r = ℓr − E ℓf and f = ℓf − E ℓr:
    D = E[(r − 1)²] + E[(f + 1)²]
    G = E[(r + 1)²] + E[(f − 1)²]

    The paper's sums, like `ragan`; her code (`GAN_losses_iter.py`, loss 7) halves D and G.
    """
    r, f = _relative(d_real, d_fake)
    d_loss = jnp.mean(jnp.square(r - 1.0)) + jnp.mean(jnp.square(f + 1.0))
    g_loss = jnp.mean(jnp.square(r + 1.0)) + jnp.mean(jnp.square(f - 1.0))
    return d_loss, g_loss


def began(
    recon_err_real: Array,
    recon_err_fake: Array,
    k: Array | float,
    gamma: Array | float,
    lambda_k: Array | float,
    clip_k: bool = False,
) -> tuple[Array, Array, Array]:
    """BEGAN (Berthelot et al. 2017) on per-example auto-encoder reconstruction errors L(·).

    D = L(x) − k·L(G(z)),   G = L(G(z)),   k ← k + λ_k (γ·L(x) − L(G(z))),   k₀ = 0,
    with L the batch means of the inputs. k is treated as a constant by both losses (no gradient
    flows into it). compare_gan v1 did not clip k; the BEGAN paper clips it to [0, 1] (`clip_k`).
    The authors' γ and λ_k are the registered defaults (`_BEGAN_HPARAMS`). Which errors the
    trainer hands the k update is `Method.loss_state_update`'s: by default v1's, a fresh pass of
    the updated networks after the D and G updates (`gancmp.train.step.refresh_loss_state`).
    """
    l_real, l_fake = jnp.mean(recon_err_real), jnp.mean(recon_err_fake)
    k = jax.lax.stop_gradient(jnp.asarray(k, l_real.dtype))
    new_k = k + lambda_k * jax.lax.stop_gradient(gamma * l_real - l_fake)
    if clip_k:
        new_k = jnp.clip(new_k, 0.0, 1.0)
    return l_real - k * l_fake, l_fake, new_k


def began_clipped(recon_err_real: Array, recon_err_fake: Array, k: Array | float,
                  gamma: Array | float, lambda_k: Array | float) -> tuple[Array, Array, Array]:
    """BEGAN with k clipped to [0, 1] after every update, as in the BEGAN paper."""
    return began(recon_err_real, recon_err_fake, k, gamma, lambda_k, clip_k=True)


def bernoulli_nll(x: Array, probs: Array) -> Array:
    """A Bernoulli decoder's −log p(x | z) per example, as compare_gan v1's VAE: images x and
    decoder probabilities [B, H, W, C] in [0, 1], the probabilities clipped to [1e−8, 1 − 1e−8];
    −Σ_{H,W} [x log p + (1 − x) log(1 − p)], averaged over the channels (v1 sums axes 1 and 2
    and takes the mean of the rest, so a colour image counts its three channels' mean). [B]."""
    p = jnp.clip(probs, 1e-8, 1.0 - 1e-8)
    log_lik = x * jnp.log(p) + (1.0 - x) * jnp.log(1.0 - p)
    per_channel = jnp.sum(log_lik, axis=(1, 2))
    return -jnp.mean(per_channel.reshape(per_channel.shape[0], -1), axis=1)


def gaussian_kl(mean: Array, std: Array) -> Array:
    """KL(N(μ, σ²) ‖ N(0, I)) per example from μ, σ [B, z_dim], as v1's VAE:
    ½ Σ (μ² + σ² − log(1e−8 + σ²) − 1). [B]."""
    var = jnp.square(std)
    return 0.5 * jnp.sum(jnp.square(mean) + var - jnp.log(1e-8 + var) - 1.0, axis=1)


def vae(neg_elbo: Array, unused: Array) -> tuple[Array, Array]:
    """The VAE baseline's objective (Kingma & Welling 2014; compare_gan v1 `VAE`) in the loss
    signature: `neg_elbo` [B] is each example's negative ELBO, `bernoulli_nll + gaussian_kl`
    (an energy: lower is more likely), and both returned losses are its batch mean, the one
    objective of encoder and decoder. A VAE has no fake batch: the second input is not used.
    The VAE's trainer (`gancmp.train.step.vae_update`) computes `neg_elbo`."""
    loss = jnp.mean(neg_elbo)
    return loss, loss


register("ns", ns)
register("mm", mm)
register("ls", ls)
register("ls_raw", ls_raw)
register("wgan", wgan)
register("hinge", hinge)
register("rsgan", rsgan)
register("ragan", ragan)
register("rahinge", rahinge)
register("ralsgan", ralsgan)
register("vae", vae, output="energy")
# BEGAN's equilibrium target γ and k learning rate λ_k: the authors' values (the only place they
# are written) and compare_gan v1's ranges.
_BEGAN_HPARAMS = {"gamma": 0.75, "lambda_k": 1e-3}
_BEGAN_SEARCH = {
    "wide": {"lambda_k": ("log", -4, -2), "gamma": ("uniform", 0, 1)},
    "narrow": {"lambda_k": ("choice", 1e-3), "gamma": ("uniform", 0.6, 0.9)},
}
register("began", began, output="energy", init_state=0.0, hparams=_BEGAN_HPARAMS,
         search=_BEGAN_SEARCH)
register("began_clipped", began_clipped, output="energy", init_state=0.0, hparams=_BEGAN_HPARAMS,
         search=_BEGAN_SEARCH)

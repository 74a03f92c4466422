"""The train state of one trial (or, with a leading trial axis, of a vmapped group of trials).

With a generator EMA (`config.g_ema_decay` = β > 0, static: it changes the state's shape) the
state is an `EmaTrainState`, a `TrainState` with one more field, the EMA of G's params; with
β = 0 it is a plain `TrainState`, leaf for leaf what it was before the option existed, so its
checkpoints and numbers are unchanged. The EMA starts at G's initial params and follows
e ← β·e + (1 − β)·θ after every G update (`update_ema`). The EMA generator (`ema_view`) runs
with G's own batch-norm statistics, copied, not averaged: StudioGAN's `EmaStylegan2` copies G's
buffers the same way (its plain `Ema` averages them with β too; its "standing statistics"
recompute them at evaluation time, which gancmp does not do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gancmp import losses, methods
from gancmp.runtime import put_replicated
from gancmp.trial import TrialSetup

Array = jax.Array


@flax.struct.dataclass
class TrainState:
    """Everything a trial needs to continue exactly where it stopped.

    Attributes:
      step: int32 [], discriminator updates done (the budget's unit, as compare_gan v1).
      g_params, d_params: parameters of G and D.
      g_state, d_state: their other variable collections (batch-norm running statistics).
      g_opt, d_opt: optimizer states.
      loss_state: a stateful loss's state (BEGAN's k); a float32 0 for stateless losses.
      key: uint32 [2], the trial's root PRNG key as `jax.random.key_data` (checkpointable).
        Every random draw is derived from it by purpose and step, never by consuming it.
      hparams: float32 [] per numeric hyperparameter of the trial's method
        (`Method.numeric_names()`: the shared ones, its penalty weight or clip bound, its loss's
        and its own); arrays, so trials that differ only in them can be vmapped.
    """

    step: Array
    g_params: Any
    g_state: Any
    d_params: Any
    d_state: Any
    g_opt: Any
    d_opt: Any
    loss_state: Any
    key: Array
    hparams: Mapping[str, Array]


@flax.struct.dataclass
class EmaTrainState(TrainState):
    """A `TrainState` that also holds `g_ema_params`, the exponential moving average of
    `g_params` (same structure)."""

    g_ema_params: Any


def has_ema(state: TrainState) -> bool:
    """Whether `state` (one trial's or stacked) carries a generator EMA."""
    return isinstance(state, EmaTrainState)


def update_ema(state: TrainState, decay: float) -> TrainState:
    """After a G update: e ← decay·e + (1 − decay)·θ on every leaf of G's params (`decay` a
    static float in (0, 1)); a state without EMA comes back unchanged."""
    if not has_ema(state):
        return state
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.g_ema_params,
                       state.g_params)
    return state.replace(g_ema_params=ema)


def ema_view(state: TrainState) -> TrainState:
    """The state with G's params replaced by their EMA, so that anything that generates from a
    state (`step.generate`, the evaluator, the generator loader) uses the EMA generator; G's
    batch-norm statistics (`g_state`) are used as they are. ValueError without an EMA."""
    if not has_ema(state):
        raise ValueError("config.g_ema_decay: this trial keeps no generator EMA (decay 0); "
                         "train with config.g_ema_decay in (0, 1) to get one")
    return state.replace(g_params=state.g_ema_params)


ADAM_EPSILON = 1e-8  # TF1 AdamOptimizer's default, which compare_gan v1 keeps


def make_optimizer(hparams: Mapping[str, Array],
                   opt_state: Any = None) -> optax.GradientTransformation:
    """Adam (the paper's and the only optimizer, for G and D alike) with the trial's lr, β1, β2
    (float32 scalars, possibly traced: the state shape does not depend on them, so one optimizer
    state layout serves every trial of a group), as TF1's `AdamOptimizer` (v1's, e.g.
    `gans/GAN.py` L90–95) computes it: lr_t = lr·√(1−β2^t)/(1−β1^t), update = lr_t·m/(√v + ε).

    optax puts ε on the bias-corrected √v̂ instead: lr·m̂/(√v̂ + ε). The two agree exactly when
    optax's ε is ε/√(1−β2^t) at update t, so ε is that, from the count in `opt_state` (the state
    the returned transformation will update; None when only its `init` is used, which ε does not
    enter).
    """
    eps = ADAM_EPSILON
    if opt_state is not None:
        t = optax.tree_utils.tree_get(opt_state, "count") + 1
        eps = ADAM_EPSILON / jnp.sqrt(1.0 - hparams["beta2"] ** t.astype(jnp.float32))
    return optax.adam(hparams["lr"], b1=hparams["beta1"], b2=hparams["beta2"], eps=eps)


def numeric_hparams(method: methods.Method, hp: Mapping[str, Any]) -> dict[str, Array]:
    """The numeric hyperparameters of a trial of `method` (`Method.numeric_names()`) as float32
    scalars, or [K] arrays when each value of `hp` is a list of K trials' values; other names in
    `hp` are ignored."""
    return {k: jnp.asarray(hp[k], jnp.float32) for k in method.numeric_names()}


def init_state(
    setup: TrialSetup, seed_or_key: int | Array, hparams: Mapping[str, Any],
) -> TrainState:
    """A fresh state for one trial (an `EmaTrainState` when `setup.g_ema_decay` > 0, its EMA
    equal to G's initial params). `seed_or_key`: an int seed or uint32 [2] raw key data;
    jittable and vmappable over both arguments."""
    key_data = (jax.random.key_data(jax.random.key(seed_or_key))
                if isinstance(seed_or_key, int) else seed_or_key)
    k_g, k_d = jax.random.split(jax.random.fold_in(jax.random.wrap_key_data(key_data), 0x1217))
    g, d = setup.networks(bn_axis=None)
    z = jnp.zeros((1, setup.z_dim), jnp.float32)
    x = jnp.zeros((1, *setup.example_shape), jnp.float32)
    g_vars = g.init(k_g, z, train=False)
    d_vars = d.init(k_d, x, train=False)
    g_params, g_state = g_vars["params"], {k: v for k, v in g_vars.items() if k != "params"}
    d_params, d_state = d_vars["params"], {k: v for k, v in d_vars.items() if k != "params"}
    hp = numeric_hparams(setup.method, hparams)
    tx = make_optimizer(hp)
    spec = losses.spec(setup.method.loss)
    loss_state = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32),
                              spec.init_state if spec.stateful else 0.0)
    fields = dict(
        step=jnp.zeros((), jnp.int32), g_params=g_params, g_state=g_state, d_params=d_params,
        d_state=d_state, g_opt=tx.init(g_params), d_opt=tx.init(d_params),
        loss_state=loss_state, key=key_data, hparams=hp,
    )
    if setup.g_ema_decay > 0:
        return EmaTrainState(**fields, g_ema_params=jax.tree.map(jnp.copy, g_params))
    return TrainState(**fields)


def init_states(
    setup: TrialSetup, seeds: list[int], hparams: list[Mapping[str, Any]],
    sharding: NamedSharding | None = None,
) -> TrainState:
    """States of K trials stacked along a leading trial axis, created where they will live:
    with `sharding` (a group's trial sharding, `step.trial_spec`) each device initialises only
    its own trials (no chip ever holds all K; in a multi-process job each process its own
    devices'), else on the default device. Each trial's state is the same either way: its
    draws come from its own key (`jax_threefry_partitionable`)."""
    keys, hp = init_inputs(setup, seeds, hparams)
    if sharding is None:
        return init_program(setup)(keys, hp)
    keys, hp = put_replicated((keys, hp), NamedSharding(sharding.mesh, P()))
    return init_program(setup, sharding)(keys, hp)


def init_program(setup: TrialSetup, sharding: NamedSharding | None = None) -> Any:
    """The jitted initialisation of stacked states: (raw keys uint32 [K, 2], hyperparameters
    {name: float32 [K]}) → states [K], laid out by `sharding` when given."""
    program = jax.vmap(lambda k, h: init_state(setup, k, h))
    return jax.jit(program) if sharding is None else jax.jit(program, out_shardings=sharding)


def init_inputs(setup: TrialSetup, seeds: list[int], hparams: list[Mapping[str, Any]]
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The initialisation's inputs as host arrays: raw keys uint32 [K, 2] and each numeric
    hyperparameter float32 [K]."""
    with jax.ensure_compile_time_eval():  # concrete even under `jax.eval_shape`
        keys = np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in seeds])
    names = setup.method.numeric_names()
    return keys, {k: np.asarray([h[k] for h in hparams], np.float32) for k in names}


def abstract_states(setup: TrialSetup, hparams: dict[str, Any], trials: int) -> Any:
    """The stacked train state of `trials` trials as shapes (nothing is initialised)."""
    keys, hp = init_inputs(setup, list(range(trials)), [hparams] * trials)
    return jax.eval_shape(jax.vmap(lambda k, h: init_state(setup, k, h)), keys, hp)

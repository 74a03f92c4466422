"""The train step: `disc_iters` discriminator updates, then one generator update; for the VAE
(`Method.trainer == "vae"`, chosen once when the step is traced) `disc_iters` updates of encoder
(in D's slot) and decoder (in G's) together instead, each counted as one D update of the budget.

Written in the pmap model: `train_step` is the body that runs on one device with its slice of the
global batch; gradients, batch-norm statistics, the loss state and the logged losses are averaged
with `lax.pmean` over the named device axis. `make_train_fn` maps it over the devices with
`jax.jit(jax.shard_map(...))` (what `jax.pmap` compiles to since JAX 0.8), vmaps it over a leading
trial axis (a group of trials that differ only in numbers), and runs up to `steps_per_call`
iterations per device call in a loop whose count is an argument, gathering each batch on device,
so there is no host round trip inside a call. The state argument is donated. `plan_calls` picks
the iterations per call (`gancmp.train.schedule`); a run's programs are shared by its groups
(`Programs`, owned by the run); `gancmp.train.group` builds everything a group of trials needs
before its first step, for the loop, the benchmark and the tests alike.

The mesh has two axes, `trials` × `devices`. Data parallelism (`config.parallelism = "data"`) is
a 1 × n mesh: each trial's batch is split over the n devices. Trial parallelism ("trials") is
n × 1: the group's stacked states are sharded over the trial axis, each device trains its share
of the trials (vmapped) on whole batches, and every collective over the size-1 `devices` axis is
the identity. One body serves both, so both give the same per-trial results.

Randomness: from the trial's root key, one stream per purpose (data, D step, G step), folded with
the step number and then with the global index of each example, so every example's z, penalty
noise and data index are the same whatever the device count, and resume is exact. The data
stream comes from `config.data_order_seed` instead when that is set (`data_key`); the G update
reuses the last D update's z as compare_gan v1 does, unless the method resamples (`g_latents`).
The stream functions (`d_key`, `d_latents`, `g_latents`, `data_key`, `per_example`) are pure and
come first below.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from gancmp import latents, losses, penalties, precision
from gancmp.config import ConfigError
from gancmp.train import schedule
from gancmp.train.state import TrainState, make_optimizer, update_ema
from gancmp.trial import AXIS, TRIALS, Trial, TrialSetup

Array = jax.Array
Metrics = dict[str, Array]

# The random streams of a trial, all derived from its root key (`TrainState.key`, raw key data).
# Pure functions, called inside the device-mapped step.
_DATA, _D, _G = 0, 1, 2  # purposes of the root key's streams


def _stream(key_data: Array, purpose: int) -> Array:
    """The typed key of stream `purpose` (`_DATA`, `_D`, `_G`) of a trial's root key."""
    return jax.random.fold_in(jax.random.wrap_key_data(key_data), purpose)


def per_example(key: Array, positions: Array) -> Array:
    """One typed key per global example index: [b] keys."""
    return jax.vmap(lambda p: jax.random.fold_in(key, p))(positions)


def _latents(key: Array, positions: Array, z_dim: int) -> Array:
    """z ~ U[−1, 1]^z_dim per example (v1's `z_generator`), [b, z_dim]."""
    keys = per_example(key, positions)
    return jax.vmap(lambda k: jax.random.uniform(k, (z_dim,), minval=-1.0, maxval=1.0))(keys)


def d_key(key_data: Array, d_step: Array) -> Array:
    """The key of D update number `d_step` (0-based, over the whole run): its z from
    `fold_in(·, 0)`, its penalty noise from `fold_in(·, 1)`."""
    return jax.random.fold_in(_stream(key_data, _D), d_step)


def d_latents(key_data: Array, d_step: Array, positions: Array, z_dim: int) -> Array:
    """z of D update number `d_step` (0-based) of the trial with root key `key_data`, at the
    global example indices `positions` [b]: [b, z_dim], U[−1, 1]. Pure."""
    return _latents(jax.random.fold_in(d_key(key_data, d_step), 0), positions, z_dim)


def g_latents(setup: TrialSetup, key_data: Array, d_steps_done: Array,
              positions: Array) -> Array:
    """z of the G update that follows the first `d_steps_done` D updates: [b, z_dim].

    compare_gan v1 (`gans/abstract_gan.py` `run_single_train_step`, L198–216) feeds G the
    `batch_z` of the D update it follows, i.e. the last of the `disc_iters` D updates: here
    `d_latents(key_data, d_steps_done − 1, ...)`. With `setup.resample_z_for_g` (v1's WGAN_GP,
    `resample_before_generator`) G gets fresh z from its own stream, one draw per G update.
    """
    if setup.resample_z_for_g:
        g_step = d_steps_done // setup.disc_iters
        return _latents(jax.random.fold_in(_stream(key_data, _G), g_step), positions, setup.z_dim)
    return d_latents(key_data, d_steps_done - 1, positions, setup.z_dim)


def data_key(setup: TrialSetup, key_data: Array) -> Array:
    """The typed key of a trial's data order: from its own root key, or from
    `setup.data_order_seed` when set (then every trial of that setup sees the batches a trial
    with seed `data_order_seed` sees)."""
    if setup.data_order_seed is not None:
        key_data = jax.random.key_data(jax.random.key(setup.data_order_seed))
    return _stream(key_data, _DATA)


def device_axis(setup: TrialSetup) -> str | None:
    """The mesh axis the step's collectives run over: `AXIS` when a trial's batch is split over
    several devices, else None. Over a one-device axis (trial parallelism, or one device) every
    collective is the identity, but XLA:CPU still copies each operand (an all-reduce of the
    InfoGAN D's 25 MB FC gradient): the step then has none, and computes the same numbers."""
    return AXIS if setup.data_devices > 1 else None


def _pmean(x, axis: str | None):
    """`lax.pmean(x, axis)`, or `x` itself without a device axis."""
    return x if axis is None else jax.lax.pmean(x, axis)


def _per_device(params, axis: str | None):
    """The replicated params marked as varying over the device axis, so that `jax.grad` gives
    this device's gradient. Differentiating the replicated (device-invariant) params directly
    would make shard_map sum the per-device gradients itself (the transpose of the implicit
    broadcast is a psum), n× the mean that the pmap model's `lax.pmean` computes."""
    return params if axis is None else jax.lax.pcast(params, axis, to="varying")


def _replicated(variables, axis: str | None):
    """Network state (batch-norm statistics, spectral-norm vectors) as one replicated value.
    Batch statistics are already averaged over devices by batch norm's `axis_name`; spectral-norm
    vectors are computed from the per-device copy of the params, equal on every device but typed
    as device-varying, and the mean makes them replicated again (exactly: the values are equal)."""
    return _pmean(variables, axis)


def _apply(module: nn.Module, params: Any, state: Mapping[str, Any], x: Array,
           dtype: str = "float32"):
    """Training-mode forward; returns (outputs, updated non-param collections). `dtype`
    "bfloat16": params and input cast to it, outputs back to float32 (statistics stay float32)."""
    if dtype != "float32":
        out, new_state = _apply(module, precision.cast_floats(params, dtype), state,
                                precision.cast_floats(x, dtype))
        new_state = jax.tree.map(lambda n, o: n.astype(o.dtype), new_state, state)
        return precision.cast_floats(out, jnp.float32), new_state
    if not state:
        return module.apply({"params": params}, x, train=True), state
    out, new_state = module.apply({"params": params, **state}, x, train=True,
                                  mutable=list(state))
    return out, new_state


def d_update(setup, g, d, state: TrainState, data, positions) -> tuple[TrainState, Array, Metrics]:
    """One discriminator update on global batch number `state.step`. Returns the new state, this
    device's real batch and the logged values."""
    method, hp, dt, axis = setup.method, state.hparams, setup.compute_dtype, device_axis(setup)
    key = d_key(state.key, state.step)
    real = setup.sampler.batch(data, data_key(setup, state.key), state.step, setup.batch_size,
                               positions)
    z = d_latents(state.key, state.step, positions, setup.z_dim)
    fake, g_state = _apply(g, state.g_params, state.g_state, z, dt)
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(d_params):
        # D sees the real and the fake batch separately: batch statistics per batch, as v1.
        d_real, d_state = _apply(d, d_params, state.d_state, real, dt)
        d_fake, d_state = _apply(d, d_params, d_state, fake, dt)
        d_loss, _, loss_state = losses.apply(method.loss, d_real, d_fake, state.loss_state, hp)
        penalty, total = jnp.zeros(()), d_loss
        if method.penalty is not None:
            d_fn = lambda x: _apply(d, d_params, d_state, x, dt)[0]  # noqa: E731
            pen_keys = per_example(jax.random.fold_in(key, 1), positions)
            penalty = penalties.get(method.penalty)(d_fn, real, fake, pen_keys, axis)
            total = d_loss + hp["penalty_weight"] * penalty
        return total, (d_state, loss_state, d_loss, penalty)

    grads, (d_state, loss_state, d_loss, penalty) = jax.grad(loss_fn, has_aux=True)(
        _per_device(state.d_params, axis))
    if method.loss_state_update == "fresh":  # set after the updates (`refresh_loss_state`)
        loss_state = state.loss_state
    grads = _pmean(grads, axis)
    tx = make_optimizer(hp, state.d_opt)
    updates, d_opt = tx.update(grads, state.d_opt, state.d_params)
    d_params = optax.apply_updates(state.d_params, updates)
    if method.clip_weights:
        d_params = penalties.clip_weights(d_params, hp["clip"])
    state = state.replace(
        step=state.step + 1, d_params=d_params, d_state=_replicated(d_state, axis), d_opt=d_opt,
        g_state=_replicated(g_state, axis), loss_state=_pmean(loss_state, axis))
    metrics = {"d_loss": d_loss, "penalty": penalty}
    if losses.spec(method.loss).stateful:
        metrics["loss_state"] = state.loss_state
    return state, real, metrics


def refresh_loss_state(setup, g, d, state: TrainState, real: Array, positions) -> TrainState:
    """A stateful loss's state (BEGAN's k) updated as compare_gan v1 does (`gans/BEGAN.py`
    `after_training_step_hook`, L162–171, called after every D update and the G update that
    may follow it, `gans/abstract_gan.py` L218): from a fresh training-mode forward pass of the
    updated D and G on the same real batch and z as the D update just made (their statistics
    are not kept), k ← k + λ_k (γ·L(x) − L(G(z))). `Method.loss_state_update == "fresh"`."""
    dt = setup.compute_dtype
    z = d_latents(state.key, state.step - 1, positions, setup.z_dim)  # that D update's z
    fake, _ = _apply(g, state.g_params, state.g_state, z, dt)
    d_real, _ = _apply(d, state.d_params, state.d_state, real, dt)
    d_fake, _ = _apply(d, state.d_params, state.d_state, fake, dt)
    _, _, new = losses.apply(setup.method.loss, d_real, d_fake, state.loss_state, state.hparams)
    return state.replace(loss_state=_pmean(new, device_axis(setup)))


def g_update(setup, g, d, state: TrainState, real: Array, positions) -> tuple[TrainState, Metrics]:
    """One generator update, on `g_latents` (the last D update's z unless the setup resamples);
    `real` (the last D update's batch) feeds relativistic losses, whose G loss also depends on
    D(x)."""
    method, hp, dt, axis = setup.method, state.hparams, setup.compute_dtype, device_axis(setup)
    z = g_latents(setup, state.key, state.step, positions)

    def loss_fn(g_params):
        fake, g_state = _apply(g, g_params, state.g_state, z, dt)
        d_real, _ = _apply(d, state.d_params, state.d_state, real, dt)
        d_fake, _ = _apply(d, state.d_params, state.d_state, fake, dt)
        _, g_loss, _ = losses.apply(method.loss, d_real, d_fake, state.loss_state, hp)
        return g_loss, (g_state, g_loss)

    grads, (g_state, g_loss) = jax.grad(loss_fn, has_aux=True)(
        _per_device(state.g_params, axis))
    grads = _pmean(grads, axis)
    tx = make_optimizer(hp, state.g_opt)
    updates, g_opt = tx.update(grads, state.g_opt, state.g_params)
    state = state.replace(g_params=optax.apply_updates(state.g_params, updates), g_opt=g_opt,
                          g_state=_replicated(g_state, axis))
    return state, {"g_loss": g_loss}


def vae_update(setup, g, d, state: TrainState, data, positions) -> tuple[TrainState, Metrics]:
    """One VAE update (v1 `VAE`) on global batch number `state.step`: encoder `d` gives μ, σ of
    q(z | x); z = μ + σ·ε, ε ~ N(0, I) per example; decoder `g` gives Bernoulli probabilities;
    encoder and decoder take one Adam step each (one Adam over both, as v1) on the batch mean of
    the negative ELBO (`losses.bernoulli_nll` + `losses.gaussian_kl`). Counts as one D update.
    Logs the loss, its reconstruction term `nll` and its `kl`."""
    hp, dt, axis = state.hparams, setup.compute_dtype, device_axis(setup)
    real = setup.sampler.batch(data, data_key(setup, state.key), state.step, setup.batch_size,
                               positions)
    keys = per_example(d_key(state.key, state.step), positions)
    eps = jax.vmap(lambda k: latents.sample(k, (setup.z_dim,), "normal"))(keys)

    def loss_fn(params):
        (mean, std), d_state = _apply(d, params[0], state.d_state, real, dt)
        recon, g_state = _apply(g, params[1], state.g_state, mean + std * eps, dt)
        nll, kl = losses.bernoulli_nll(real, recon), losses.gaussian_kl(mean, std)
        loss, _, _ = losses.apply(setup.method.loss, nll + kl, jnp.zeros_like(nll))
        return loss, (d_state, g_state, {"loss": loss, "nll": jnp.mean(nll), "kl": jnp.mean(kl)})

    grads, (d_state, g_state, metrics) = jax.grad(loss_fn, has_aux=True)(
        _per_device((state.d_params, state.g_params), axis))
    grads = _pmean(grads, axis)
    tx = make_optimizer(hp)
    d_updates, d_opt = tx.update(grads[0], state.d_opt, state.d_params)
    g_updates, g_opt = tx.update(grads[1], state.g_opt, state.g_params)
    state = state.replace(
        step=state.step + 1, d_params=optax.apply_updates(state.d_params, d_updates),
        g_params=optax.apply_updates(state.g_params, g_updates), d_opt=d_opt, g_opt=g_opt,
        d_state=_replicated(d_state, axis), g_state=_replicated(g_state, axis))
    return state, metrics


def train_step(setup: TrialSetup, g, d, state: TrainState, data) -> tuple[TrainState, Metrics]:
    """`disc_iters` D updates then one G update (the VAE: `disc_iters` `vae_update`s), and, with a
    generator EMA, its update, on this device's slice of each global batch. A stateful loss's
    state is updated after every D update (and the G update after the last), from the updated
    networks (`refresh_loss_state`, v1's), or within each D update from its own pre-update
    errors (`Method.loss_state_update == "d_step"`). Logged values are
    averaged over devices (those of the
    last D update)."""
    b, axis = setup.per_device_batch, device_axis(setup)
    positions = jnp.arange(b) if axis is None else jax.lax.axis_index(axis) * b + jnp.arange(b)
    if setup.method.trainer == "vae":
        for _ in range(setup.disc_iters):
            state, metrics = vae_update(setup, g, d, state, data, positions)
        return update_ema(state, setup.g_ema_decay), _pmean(metrics, axis)
    real, metrics, g_metrics = None, {}, {}
    fresh = (setup.method.loss_state_update == "fresh"
             and losses.spec(setup.method.loss).stateful)
    for i in range(setup.disc_iters):
        state, real, metrics = d_update(setup, g, d, state, data, positions)
        if i == setup.disc_iters - 1:
            state, g_metrics = g_update(setup, g, d, state, real, positions)
        if fresh:
            state = refresh_loss_state(setup, g, d, state, real, positions)
            metrics["loss_state"] = state.loss_state
    state = update_ema(state, setup.g_ema_decay)
    return state, _pmean({**metrics, **g_metrics}, axis)


def make_mesh(setup: TrialSetup | int) -> Mesh:
    """The (`TRIALS`, `AXIS`) mesh over `setup.num_devices` devices: 1 × n for data
    parallelism, n × 1 for trial parallelism (an int n means data parallelism over n). Every
    device of the job when n is their count (a multi-process job's program), else the first n
    of this process's own: a process never compiles for devices it cannot address (a pod
    slice's PJRT client refuses it), e.g. a one-chip memory probe on another host's chip."""
    shape = (1, setup) if isinstance(setup, int) else (setup.trial_devices, setup.data_devices)
    n = shape[0] * shape[1]
    if n == jax.device_count():
        devices = jax.devices()
    elif n <= jax.local_device_count():
        devices = jax.local_devices()[:n]
    else:
        raise ConfigError(f"config.num_devices: {n} devices is more than this process has "
                          f"({jax.local_device_count()}) and not the whole job's "
                          f"({jax.device_count()}); allowed: up to {jax.local_device_count()}, "
                          f"or {jax.device_count()}")
    return Mesh(np.asarray(devices).reshape(shape), (TRIALS, AXIS))


def trial_spec(mesh: Mesh) -> P:
    """How stacked trial states are laid out: sharded over `TRIALS`, or plainly replicated when
    that axis has size 1 (the spelling jit gives its outputs, so inputs match: no recompile)."""
    return P(TRIALS) if mesh.shape[TRIALS] > 1 else P()


def make_train_fn(
    setup: TrialSetup, mesh: Mesh, steps_per_call: int, unroll: bool = False,
    count_argument: bool = True,
) -> Callable[[TrainState, Mapping[str, Array], Array], tuple[TrainState, Metrics]]:
    """`(states, data, iterations) -> (states, metrics)`: `iterations` iterations of every trial
    in the group. `states` has a leading trial axis [K], sharded over the mesh's `TRIALS` axis (K
    a multiple of its size) and replicated over `AXIS` (donated); `data` holds the on-device
    dataset arrays, shared by all trials (never copied per trial); `iterations` is an int32
    scalar. Metrics: [K, steps_per_call]; traced at `setup.matmul_precision`
    (`precision.scope`).

    Rolled (`unroll` False) with `count_argument`, the iterations are a loop whose count is
    that argument, from 1 to `steps_per_call` (metrics rows past it are NaN): one program serves
    every call of a run, the short last stretch of a budget included (`schedule.CallPlan`); it
    is the loop a `lax.scan` compiles to, with its bound read from an argument. Otherwise the
    program runs exactly `steps_per_call` iterations, a `lax.scan` (XLA knows its trip count:
    XLA:GPU runs such a loop without waiting for the host at every iteration, which it does for
    an unknown count; `plan_calls`) or unrolled, and `iterations` must say so (the caller's
    contract)."""
    g, d = setup.networks(bn_axis=device_axis(setup))

    # jitted so that its Python is traced once per program, however often it is called (its
    # shapes, then the loop body; `unrolled` calls it steps_per_call times): the calls are
    # inlined by XLA, the program is the same (checked bitwise); lowering ~40 % faster (MLPs)
    @jax.jit
    def body(state: TrainState, data: Mapping[str, Array]):
        with precision.scope(setup.matmul_precision):
            return train_step(setup, g, d, state, data)

    def per_device(states: TrainState, data: Mapping[str, Array], iterations: Array):
        def unrolled(state: TrainState):
            # By hand: even a length-1 loop is a while loop, and XLA:CPU moves convolutions
            # onto its fast layout only outside loop bodies.
            per_step = []
            for _ in range(steps_per_call):
                state, metrics = body(state, data)
                per_step.append(metrics)
            return state, jax.tree.map(lambda *m: jnp.stack(m), *per_step)

        def rolled(state: TrainState):
            rows = jax.tree.map(lambda s: _nan_rows(s, steps_per_call),
                                jax.eval_shape(body, state, data)[1])

            def one(i, carry):
                state, rows = carry
                state, metrics = body(state, data)
                return state, jax.tree.map(lambda r, m: r.at[i].set(m), rows, metrics)
            return jax.lax.fori_loop(0, iterations, one, (state, rows))

        def fixed(state: TrainState):
            return jax.lax.scan(lambda s, _: body(s, data), state, None, length=steps_per_call)

        one_trial = (unrolled if unroll or steps_per_call == 1
                     else rolled if count_argument else fixed)
        return jax.vmap(one_trial)(states)

    by_trial = trial_spec(mesh)
    mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(by_trial, P(), P()),
                           out_specs=(by_trial, by_trial))
    return jax.jit(mapped, donate_argnums=0)


def _nan_rows(like: jax.ShapeDtypeStruct, n: int) -> Array:
    """[n, *like.shape] NaNs, varying over the same mesh axes as `like` (the loop's carry must
    keep its type: shard_map's varying-axes check)."""
    rows = jnp.full((n, *like.shape), jnp.nan, like.dtype)
    varying = tuple(sorted(like.manual_axis_type.varying)) if like.manual_axis_type else ()
    return jax.lax.pcast(rows, varying, to="varying") if varying else rows


class Programs:
    """The train programs of one run (a sweep shard, a Ray worker, one `gancmp train`):
    `make_train_fn`'s, one per (setup, mesh, iterations, unroll, count_argument), made on first
    use and shared by the run's groups of one class and by its compile-ahead thread
    (`group.precompile`), so that each is traced and compiled once; freed with the run."""

    def __init__(self) -> None:
        self._programs: dict[tuple, Callable] = {}
        self._lock = threading.Lock()  # the compile-ahead thread asks too

    def get(self, setup: TrialSetup, mesh: Mesh, steps_per_call: int, unroll: bool = False,
            count_argument: bool = True
            ) -> Callable[[TrainState, Mapping[str, Array], Array], tuple[TrainState, Metrics]]:
        """The program (`make_train_fn`) for these arguments, made once."""
        key = (setup, mesh, steps_per_call, unroll, count_argument)
        with self._lock:
            if key not in self._programs:
                self._programs[key] = make_train_fn(*key)
            return self._programs[key]

    def __len__(self) -> int:
        return len(self._programs)


def calls(program: Callable, iterations: int
          ) -> Callable[[TrainState, Mapping[str, Array]], tuple[TrainState, Metrics]]:
    """`(states, data) -> (states, metrics)`: `program` (`make_train_fn`) running `iterations`."""
    count = np.int32(iterations)
    return lambda states, data: program(states, data, count)


def plan_calls(trial: Trial) -> schedule.CallPlan:
    """The iterations per device call (`schedule.CallPlan`: `main` up to the last interval
    checkpoint, then the rest of the budget, on the same program when the loop over them is
    rolled) and whether it is unrolled. Every checkpoint (`schedule.checkpoint_steps`) and the
    end of the budget fall on a call boundary.

    `trial.calls.steps_per_call` = 0 picks per backend: on TPU/GPU a rolled loop of up to 100
    iterations per call removes dispatch overhead. On CPU a rolled loop of a conv net loses XLA's
    fast convolution path (5–8× slower) and unrolling multiplies compile time, so conv nets make
    one plain call per iteration; the small MLPs lose nothing in a rolled loop (up to 50).
    `calls.scan_unroll` ("auto", "unrolled", "rolled") overrides the unrolling.
    `calls.loop_count`: the rolled loop's count is an "argument" of the program (one program
    per group), or "fixed" per program (a second one for the budget's last stretch). XLA:GPU
    copies the loop condition to the host and waits at every iteration of a loop whose trip
    count it does not know (`WhileThunk`): a bubble of tens of µs per iteration, about 1–2 % of
    a few-ms iteration, against a second compilation per class; "argument" is the default on
    every backend, and experiments/gpu/check.sh measures both.
    """
    setup, calls, budget = trial.setup, trial.calls, trial.budget
    on_cpu = jax.default_backend() == "cpu"
    conv = setup.arch != "mlp"
    unroll = ((on_cpu and conv) if calls.scan_unroll == "auto"
              else calls.scan_unroll == "unrolled")
    target = (1 if conv else 50) if on_cpu else 100
    try:
        return schedule.plan(budget.num_d_steps, budget.checkpoint_every, setup.disc_iters,
                             target, unroll, fixed=calls.steps_per_call,
                             count_argument=calls.loop_count == "argument")
    except ValueError as e:
        field = "steps_per_call" if calls.steps_per_call else "checkpoint_every"
        raise ConfigError(f"config.{field}: {e}") from None


def generate(setup: TrialSetup, state: TrainState, z: Array) -> Array:
    """Samples of one trial's generator in inference mode (running batch-norm statistics):
    z [n, z_dim] → [n, *example_shape]."""
    return generate_from(setup, state.g_params, state.g_state, z)


def generate_from(setup: TrialSetup, g_params: Any, g_state: Mapping[str, Any], z: Array
                  ) -> Array:
    """`generate` from G's variables only (params, batch-norm statistics), all that sampling
    needs of a state."""
    g, _ = setup.networks(bn_axis=None)
    params, z = precision.cast_floats((g_params, z), setup.compute_dtype)
    with precision.scope(setup.matmul_precision):
        out = g.apply({"params": params, **g_state}, z, train=False)
    return out.astype(jnp.float32)


def eval_latents(seed: int, n: int, z_dim: int, prior: str = "uniform") -> Array:
    """Fixed evaluation noise: n latents [n, z_dim] from `seed`, drawn from the method's prior
    (`Method.prior`, `gancmp.latents`): U[−1, 1]^z_dim, or N(0, I) for the VAE."""
    return latents.sample(jax.random.key(seed), (n, z_dim), prior)

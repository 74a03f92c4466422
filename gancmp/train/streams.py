"""The random streams of a trial, all derived from its root key (`TrainState.key`, raw key data):
one stream per purpose (data order, D updates, G updates), folded with the step number and then
with the global index of each example, so every example's z, penalty noise and data index are the
same whatever the device count, and a resumed trial draws exactly what it would have drawn.
Pure functions; `gancmp.train.step` calls them inside the device-mapped step."""

from __future__ import annotations

import jax

from gancmp.trial import TrialSetup

Array = jax.Array
_DATA, _D, _G = 0, 1, 2  # purposes of the root key's streams


def _stream(key_data: Array, purpose: int) -> Array:
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

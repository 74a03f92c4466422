"""The generator EMA (`config.g_ema_decay`): the recursion it follows, that it leaves training
and the state untouched when off, exact resume, and evaluation of both generators."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from gancmp.config import ConfigError
from gancmp.train import evaluation, loop
from gancmp.train import group as group_lib
from gancmp.train.checkpoint import Checkpoints
from gancmp.train.state import EmaTrainState, TrainState, ema_view, has_ema, init_states
from gancmp.trial import make_trial
from tests.helpers import group_of, load_config

BETA = 0.9


def _config(**overrides):
    base = dict(batch_size=32, num_d_steps=8, checkpoint_every=4, steps_per_call=1,
                d_batch_norm=True, bn_momentum=0.9, num_devices=1)
    return load_config("ring8_mlp", **{**base, **overrides})


def _run(config, calls):
    """The group's fresh state and its states after each of `calls` calls (host copies)."""
    setup = make_trial(config, num_devices=1).setup
    from gancmp.data import source as data_source

    group = group_lib.create_group(group_of(config, [0], like=setup),
                                   data_source.load(setup.dataset).arrays)
    states = group.states
    history = [jax.device_get(states)]  # before the first call donates the buffers
    for _ in range(calls):
        states, _ = group.train_fn(states, group.arrays)
        history.append(jax.device_get(states))
    return history


def test_ema_follows_the_recursion_after_each_g_update():
    """e₀ = θ₀ and e_k = β·e_{k−1} + (1 − β)·θ_k after G update k, leaf by leaf (one G update
    per call here), computed by hand in float32 from the recorded G params."""
    history = _run(_config(g_ema_decay=BETA), calls=4)
    assert all(has_ema(s) for s in history)
    ema = jax.tree.map(np.asarray, history[0].g_params)
    for k, state in enumerate(history):
        if k:
            ema = jax.tree.map(lambda e, p: np.float32(BETA) * e + np.float32(1 - BETA) * p,
                               ema, jax.tree.map(np.asarray, state.g_params))
        for want, got in zip(jax.tree.leaves(ema), jax.tree.leaves(state.g_ema_params),
                             strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    last = history[-1]
    assert any(not np.allclose(a, b) for a, b in zip(
        jax.tree.leaves(last.g_ema_params), jax.tree.leaves(last.g_params), strict=True))


def test_decay_zero_keeps_todays_state_and_an_ema_does_not_change_training():
    """Off (None or 0), the state is a plain TrainState, no EMA leaves; on, every other leaf
    after training is bit for bit what the run without EMA gives."""
    off = _run(_config(), calls=3)[-1]
    assert type(off) is TrainState and not has_ema(off)
    assert [f.name for f in dataclasses.fields(off)] == [
        "step", "g_params", "g_state", "d_params", "d_state", "g_opt", "d_opt", "loss_state",
        "key", "hparams"]
    assert type(_run(_config(g_ema_decay=0.0), calls=0)[0]) is TrainState
    on = _run(_config(g_ema_decay=BETA), calls=3)[-1]
    assert isinstance(on, EmaTrainState)
    raw = {f.name: getattr(on, f.name) for f in dataclasses.fields(TrainState)}
    assert jax.tree.structure(TrainState(**raw)) == jax.tree.structure(off)
    for a, b in zip(jax.tree.leaves(TrainState(**raw)), jax.tree.leaves(off), strict=True):
        np.testing.assert_array_equal(a, b)


def _final_checkpoint(workdir, like):
    ckpts = Checkpoints(os.path.join(workdir, "checkpoints"))
    try:
        step = ckpts.latest()
        return step, ckpts.restore(step, like)
    finally:
        ckpts.close()


def test_resume_restores_the_ema_exactly(tmp_path):
    config = _config(g_ema_decay=BETA, num_d_steps=12, disc_iters=2, steps_per_call=0)
    setup = make_trial(config).setup
    hp = [make_trial(config).hparams]
    loop.train_group(group_of(config, [0], hp), str(tmp_path / "straight"), progress=False)
    config.num_d_steps = 4  # stopped after its first checkpoint, then restarted
    loop.train_group(group_of(config, [0], hp), str(tmp_path / "resumed"), progress=False)
    config.num_d_steps = 12
    loop.train_group(group_of(config, [0], hp), str(tmp_path / "resumed"), progress=False)
    like = init_states(setup, [0], hp)
    step_a, a = _final_checkpoint(tmp_path / "straight", like)
    step_b, b = _final_checkpoint(tmp_path / "resumed", like)
    assert step_a == step_b == 12 and has_ema(a) and has_ema(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(
        jax.tree.leaves(a.g_ema_params), jax.tree.leaves(like.g_ema_params), strict=True))


def test_evals_carry_both_generators_and_best_ema(tmp_path):
    """A fresh state's EMA is G itself: `ema/<metric>` equals `<metric>` exactly. A trained
    trial's evals carry both, its record `best_ema` (ranked by the EMA's main metric), and
    `load_generator(ema=True)` gives the checkpoint's EMA params."""
    from gancmp.generator import load_generator

    config = _config(g_ema_decay=BETA, eval_every=4)
    config.eval.num_samples = 400
    setup = make_trial(config).setup
    evaluator = evaluation.make_evaluator(make_trial(config))
    rows = evaluator.evaluate_group(init_states(setup, [0, 1], [make_trial(config).hparams] * 2))
    assert len(rows) == 2
    for row in rows:
        for name in ("modes_covered", "high_quality", "status"):
            assert row["ema/" + name] == row[name]
    record = loop.train_trial(make_trial(config), str(tmp_path), progress=False)[0]
    assert [e["step"] for e in record.evals] == [4, 8]
    assert all({"modes_covered", "ema/modes_covered", "ema/status"} <= set(e)
               for e in record.evals)
    assert record.best["metric"] == "modes_covered"
    assert record.best_ema["metric"] == "ema/modes_covered"
    assert record.best_ema["value"] == max(e["ema/modes_covered"] for e in record.evals)
    raw, ema = load_generator(str(tmp_path)), load_generator(str(tmp_path), ema=True)
    for a, b in zip(jax.tree.leaves(ema.state.g_params), jax.tree.leaves(raw.state.g_ema_params),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(ema.sample(16), raw.sample(16))
    # without an EMA: no ema/ metrics, and the EMA view refuses, naming the field
    plain = init_states(make_trial(_config()).setup, [0], [make_trial(config).hparams])
    assert not any(k.startswith("ema/") for k in evaluator.evaluate_group(plain)[0])
    with pytest.raises(ValueError, match="config.g_ema_decay"):
        ema_view(plain)


@pytest.mark.parametrize("value", [1.0, -0.1, 2])
def test_bad_decay_names_the_field(value):
    with pytest.raises(ConfigError, match=r"config\.g_ema_decay: must be a number in \[0, 1\)"):
        make_trial(_config(g_ema_decay=value))

"""The train step and loop: device-parallel equals single-device, exact resume, divergence,
and a real learning check."""

import json
import os

import jax
import numpy as np
import pytest

from gancmp.config import ConfigError
from gancmp.train import loop
from gancmp.train.checkpoint import Checkpoints
from gancmp.train.state import init_states
from gancmp.train.workdir import RESULT_FILE
from gancmp.trial import make_trial
from tests.helpers import (
    group_of,
    load_config,
    loss_trajectory,
    tiny_image_data,
    tiny_infogan_config,
)


def _assert_same_trajectory(a, b, early_steps=5):
    """Tight agreement over the first steps, where only reduction order differs; then a looser
    bound, as GAN dynamics (and Adam's sign-like first updates) amplify that float noise."""
    for step, (x, y) in enumerate(zip(a, b, strict=True)):
        rtol, atol = (1e-5, 1e-5) if step < early_steps else (2e-3, 1e-4)
        for name in x:
            np.testing.assert_allclose(x[name], y[name], rtol=rtol, atol=atol,
                                       err_msg=f"{name} at step {step}")


# Adam's first updates are nearly sign(g)·lr, so a gradient element near 0 whose sign flips with
# reduction order moves by a full lr; a small lr keeps that float noise visible as noise.
def test_four_devices_equal_one_device_mlp_with_batch_norm():
    config = load_config("ring8_mlp", d_batch_norm=True, batch_size=64, bn_momentum=0.9, lr=1e-4)
    one, one_state = loss_trajectory(config, 1, calls=20)
    four, four_state = loss_trajectory(config, 4, calls=20)
    _assert_same_trajectory(one, four)
    # The gradients themselves are the mean over the global batch, not the sum over devices (the
    # Adam moments show it: Adam's update alone would hide a constant factor).
    for a, b in zip(jax.tree.leaves((one_state.d_opt, one_state.g_opt)),
                    jax.tree.leaves((four_state.d_opt, four_state.g_opt)), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-3, atol=1e-7)


def test_four_devices_equal_one_device_infogan():
    """Conv nets with batch norm in G and D, a penalty with per-example noise and the global
    batch's std (DRAGAN; every penalty alone: tests/test_penalties.py)."""
    config = tiny_infogan_config(method="DRAGAN", disc_iters=1, lr=1e-4)
    data = tiny_image_data()
    one, _ = loss_trajectory(config, 1, calls=20, data=data)
    four, _ = loss_trajectory(config, 4, calls=20, data=data)
    _assert_same_trajectory(one, four)


def test_the_accelerators_layer_forms_train_as_the_cpu_forms():
    """The step a TPU/GPU compiles (`nets.forms.accelerator_forms`: the 3×3 sub-pixel
    deconvolutions, autodiff's Dense) run on CPU devices gives XLA:CPU's forms' trajectory
    (compact deconvolutions, Dense's kernel gradient in its layout): the same products."""
    from gancmp.nets import forms  # noqa: PLC0415

    config = tiny_infogan_config(method="NS_GAN", disc_iters=1, lr=1e-4)
    data = tiny_image_data()
    cpu, _ = loss_trajectory(config, 1, calls=4, data=data)
    with forms.accelerator_forms():  # each group traces its own programs
        accelerator, _ = loss_trajectory(config, 1, calls=4, data=data)
    _assert_same_trajectory(cpu, accelerator)


def _final_params(workdir):
    ckpts = Checkpoints(os.path.join(workdir, "checkpoints"))
    step = ckpts.latest()
    path = os.path.join(ckpts.directory, str(step), "default")
    ckpts.close()
    import orbax.checkpoint as ocp

    return step, ocp.StandardCheckpointer().restore(path)


def test_resume_is_bitwise_identical(tmp_path):
    config = load_config("ring8_mlp", method="BEGAN", num_d_steps=12, checkpoint_every=4,
                         disc_iters=2, d_batch_norm=True, bn_momentum=0.9, batch_size=32)
    data = None
    setup = make_trial(config).setup
    hp = [make_trial(config).hparams]
    loop.train_group(group_of(config, [0], hp, like=setup), str(tmp_path / "straight"),
                     data=data, progress=False)
    # the same trial stopped after its first checkpoint (a killed run keeps only what it saved),
    # then restarted on the same workdir
    config.num_d_steps = 4
    loop.train_group(group_of(config, [0], hp, like=setup), str(tmp_path / "resumed"),
                     data=data, progress=False)
    config.num_d_steps = 12
    records = loop.train_group(group_of(config, [0], hp, like=setup), str(tmp_path / "resumed"),
                               data=data, progress=False)
    assert records[0]["steps_this_run"] == 8
    step_a, a = _final_params(tmp_path / "straight")
    step_b, b = _final_params(tmp_path / "resumed")
    assert step_a == step_b == 12
    flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b) > 10
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert float(np.asarray(a["loss_state"]).ravel()[0]) != 0.0  # BEGAN's k moved and resumed


def test_nan_run_is_recorded_as_diverged(tmp_path):
    config = load_config("ring8_mlp", method="WGAN", lr=1e30, num_d_steps=200,
                         checkpoint_every=100, disc_iters=1, clip=1e30, steps_per_call=1)
    record = loop.train_trial(make_trial(config), str(tmp_path), progress=False)[0]
    assert record.status == "diverged"
    assert record.diverged_at == record.steps < 200  # stopped at the first NaN call
    with open(tmp_path / RESULT_FILE) as f:
        assert json.load(f)["status"] == "diverged"


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(method="NOPE"), "config.method"),
        (dict(dataset="imagenet"), "config.dataset"),
        (dict(arch="vgg"), "config.arch"),
        (dict(optimizer="sgd"), "config.optimizer"),
        (dict(num_d_steps=0), "config.num_d_steps"),
        (dict(batch_size=-3), "config.batch_size"),
        (dict(batch_size=10, num_devices=4), "config.batch_size"),
        (dict(arch="infogan"), "config.arch"),  # ring8 points are not images
        (dict(disc_iters=3, num_d_steps=100), "config.num_d_steps"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        make_trial(load_config("ring8_mlp", **overrides))


def test_setup_carries_the_kind_of_data_the_step_samples():
    """The step draws batches from `setup.sampler`: a fresh 2-D mixture sample per example for
    the mixtures (as the data layer loads them), a shuffled finite set otherwise."""
    from gancmp.data import source as data_source

    ring = make_trial(load_config("ring8_mlp")).setup
    assert ring.data_kind == ring.sampler.kind == data_source.load("ring8").kind == "mixture"
    assert (ring.sampler.name, ring.sampler.example_shape) == ("ring8", (2,))
    assert make_trial(tiny_infogan_config()).setup.sampler.kind == "array"


def test_one_compilation_per_group_and_donated_state(tmp_path, monkeypatch):
    """Checkpoints, logging and evaluation between calls never recompile the train step, and
    the state buffers are donated to it (no second copy of the state on the device)."""
    from gancmp.train import step as step_lib

    made = []
    real = step_lib.make_train_fn

    def spy(*args, **kwargs):
        fn = real(*args, **kwargs)
        made.append(fn)
        return fn

    monkeypatch.setattr(step_lib, "make_train_fn", spy)
    config = load_config("ring8_mlp", num_d_steps=60, checkpoint_every=20, log_every=10,
                         steps_per_call=5, batch_size=32)
    setup = make_trial(config).setup
    hp = make_trial(config).hparams
    seen = []
    loop.train_group(group_of(config, [0, 1], [hp, hp], like=setup), str(tmp_path),
                     progress=False, on_checkpoint=lambda step, states: seen.append(step))
    assert seen == [20, 40, 60] and len(made) == 1
    assert made[0]._cache_size() == 1  # 12 calls, 3 checkpoints, one compiled program

    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    replicated = NamedSharding(step_lib.make_mesh(setup.num_devices), P())
    states = jax.device_put(init_states(setup, [0], [hp]), replicated)
    data = {}
    leaf = jax.tree.leaves(states.d_params)[0]
    made[0](states, data, np.int32(5))
    assert leaf.is_deleted()


def test_ns_gan_learns_the_ring(tmp_path):
    """A real learning check: NS-GAN with the ring8 config covers at least 6 of the 8 modes."""
    from gancmp.data import synthetic
    from gancmp.generator import load_generator
    from gancmp.metrics.mixtures import mixture_metrics

    config = load_config("ring8_mlp")  # the README's main job, as configured
    record = loop.train_trial(make_trial(config), str(tmp_path), progress=False)[0]
    assert record.status == "finished"
    samples = load_generator(str(tmp_path)).sample(5000, seed=1)
    ring = synthetic.MIXTURES["ring8"]
    metrics = mixture_metrics(samples, ring.modes, ring.std)
    assert metrics["modes_covered"] >= 6, metrics
    assert metrics["high_quality"] > 0.2, metrics  # most samples land near a mode


def test_image_grid_tiles_row_by_row():
    """5 images of 2×3 pixels on a 3-column grid: 2 rows, image i at (i // 3, i % 3), the empty
    cell black; values in [0, 1] map to uint8 by rounding, NaN to 0, out of range clipped."""
    from gancmp.train.samples import image_grid

    images = np.stack([np.full((2, 3, 1), v, np.float32) for v in (0.0, 0.5, 1.0, 2.0, np.nan)])
    grid = image_grid(images, cols=3)
    assert grid.shape == (4, 9, 1) and grid.dtype == np.uint8
    cells = grid[::2, ::3, 0]  # one pixel per cell
    np.testing.assert_array_equal(cells, [[0, 128, 255], [255, 0, 0]])
    np.testing.assert_array_equal(image_grid(images), grid)  # default: ceil(sqrt(5)) = 3 columns
    assert image_grid(images[:4]).shape == (4, 6, 1)  # 4 images: 2 × 2


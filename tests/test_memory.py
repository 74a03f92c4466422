"""Every program a group runs fits the chip the layout sizes it for: the states are created
sharded over the trial axis (each device initialises its own trials, exactly the trials an
unsharded initialisation makes), and the layout's K per chip comes from the compiled memory of
the initialisation, the train call, sampling and the evaluation alike (`memory.group_memory`)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding

from gancmp.config import load_config_file
from gancmp.sweep import parallel
from gancmp.train import memory
from gancmp.train import step as step_lib
from gancmp.train.state import init_states
from gancmp.trial import make_trial
from tests.helpers import load_config

GIB = 2**30


def test_states_are_created_sharded_over_the_trials_and_equal_to_one_device():
    trial = make_trial(load_config("ring8_mlp", num_d_steps=10, checkpoint_every=10,
                                   batch_size=32, parallelism="trials"))
    setup = trial.on_devices(4, "trials").setup
    mesh = step_lib.make_mesh(setup)
    by_trial = NamedSharding(mesh, step_lib.trial_spec(mesh))
    seeds, hps = [3, 1, 4, 1], [trial.hparams] * 4
    one_device = init_states(setup, seeds, hps)
    sharded = init_states(setup, seeds, hps, by_trial)
    for a, b in zip(jax.tree.leaves(one_device), jax.tree.leaves(sharded), strict=True):
        assert b.sharding == by_trial
        assert [s.data.shape[0] for s in b.addressable_shards] == [1, 1, 1, 1]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(  # equal seeds, equal trials; other seeds, other trials
        np.asarray(sharded.g_params["Dense_0"]["kernel"][1]),
        np.asarray(sharded.g_params["Dense_0"]["kernel"][3]))
    assert not np.array_equal(np.asarray(sharded.g_params["Dense_0"]["kernel"][0]),
                              np.asarray(sharded.g_params["Dense_0"]["kernel"][1]))


def test_celeba_infogan_at_the_k_of_a_v4_and_a_v5e_chip_fits_every_program():
    """The paper's CelebA model (InfoGAN at 64×64: about 1.2 GB of state and Adam moments per
    trial), laid out for its study's phases (100, 50, 50 trials and 50 seeds) on a v4 chip
    (32 GiB, 4 chips) and a v5e chip (16 GiB, 8 chips) from the one-trial programs' compiled
    memory (XLA:CPU's buffer assignment: an estimate of the chips'). Every program fits at that
    K by the linear model; at v5e's K, compiled for real, too, and under the model."""
    config = load_config_file("configs/mnist_infogan.py", dataset="celeb_a", num_d_steps=100,
                              checkpoint_every=100, method="NS_GAN")
    trial = make_trial(config)
    one = memory.group_memory(trial, 1)
    assert {name for name, _ in one.programs} == {"init", "train", "sample", "eval"}
    init = dict(one.programs)["init"]
    assert init.per_trial > 1.0 * GIB  # the state: what one chip used to hold for all K
    layouts = {}
    for chip, devices, gib in (("v4", 4, 32), ("v5e", 8, 16)):
        layout = parallel.choose_layout("tpu", devices, (100, 50, 50), memory=one,
                                        device_bytes=gib * GIB)
        assert layout.parallelism == "trials" and layout.trials_per_device >= 4, layout
        assert one.at(layout.trials_per_device) <= parallel.MEMORY_FRACTION * gib * GIB, chip
        layouts[chip] = layout
    assert (layouts["v4"].trials_per_device, layouts["v5e"].trials_per_device) == (12, 6)
    k = layouts["v5e"].trials_per_device
    at_k = memory.group_memory(trial, k)
    for name, program in at_k.programs:
        assert program.peak <= parallel.MEMORY_FRACTION * 16 * GIB, (name, program.peak / GIB)
        assert program.peak <= dict(one.programs)[name].at(k), name  # the model is an upper bound

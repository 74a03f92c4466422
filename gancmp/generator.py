"""A trained generator back from a workdir, for use outside the trainer and the sweep.

    g = gancmp.load_generator("runs/ring8")           # a `gancmp train` workdir
    g = gancmp.load_generator("runs/quick", trial_id)  # a trial of a `gancmp sweep` workdir
    x = g.sample(64, seed=0)                           # [64, *example_shape], as in training
    g = gancmp.load_generator("runs/ring8", ema=True)  # its generator EMA (config.g_ema_decay)
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
import numpy as np

from gancmp import records
from gancmp.train import samples as samples_lib
from gancmp.train import step as step_lib
from gancmp.train.state import TrainState, ema_view, init_states
from gancmp.train.workdir import CONFIG_FILE, checkpoints, is_trial, read_config
from gancmp.trial import TrialSetup, make_trial


@dataclasses.dataclass
class TrainedGenerator:
    """The generator of one trial at checkpoint `step`, in inference mode (running BN stats).

    Calling it maps z [n, z_dim] (from the method's prior: U[−1, 1] as in training, N(0, I) for
    the VAE's decoder) to samples [n, *example_shape].
    """

    setup: TrialSetup
    state: TrainState
    step: int

    @property
    def z_dim(self) -> int:
        return self.setup.z_dim

    def __call__(self, z) -> np.ndarray:
        """Samples of z [n, z_dim], generated a chunk at a time (`samples.generate_group`: the
        device holds one chunk whatever n; the host the n samples)."""
        stacked = jax.tree.map(lambda x: x[None], self.state)  # a group of one
        return samples_lib.generate_group(self.setup, stacked, z)[0]

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        return self(step_lib.eval_latents(seed, n, self.setup.z_dim, self.setup.method.prior))


def load_generator(workdir: str, trial_id: str | None = None, step: int | None = None, *,
                   ema: bool = False) -> TrainedGenerator:
    """The generator of the trial in `workdir` (or of `trial_id` in a sweep workdir) at its
    latest checkpoint, or at `step` (FileNotFoundError listing the checkpoints when there is none
    of that step); `ema=True`: its generator EMA (ValueError, naming config.g_ema_decay, for a
    trial trained without one)."""
    if trial_id is not None or not is_trial(workdir):
        trained = _from_sweep(workdir, trial_id, step)
    else:
        trial = make_trial(read_config(workdir), num_devices=1)
        trained = _restore(trial.setup, workdir, [trial.seed], [trial.hparams], 0, step)
    if ema:
        trained.state = ema_view(trained.state)
    return trained


def _from_sweep(workdir: str, trial_id: str | None, step: int | None) -> TrainedGenerator:
    recorded, _ = records.read(records.result_files(workdir))
    if not recorded:
        raise FileNotFoundError(f"{workdir}: neither a trial workdir ({CONFIG_FILE}) nor a sweep "
                                "workdir (results-*.jsonl)")
    matches = [r for r in recorded if r.trial_id == trial_id]
    if not matches:
        some = ", ".join(r.trial_id for r in recorded[:5]) + (" ..." if len(recorded) > 5 else "")
        if trial_id is None:
            raise KeyError(f"{workdir} is a sweep workdir of {len(recorded)} trials: name one "
                           f"(`gancmp sample --trial ID`; results-*.jsonl lists them): {some}")
        raise KeyError(f"trial {trial_id!r} not in {workdir}; trials: {some}")
    rec = matches[0]
    setup = make_trial(ml_collections.ConfigDict(rec.config), num_devices=1).setup
    group = os.path.join(workdir, rec.group_dir)
    return _restore(setup, group, rec.group_seeds, rec.group_hparams, rec.group_index, step)


def _restore(setup: TrialSetup, directory, seeds, hparams, index, step) -> TrainedGenerator:
    ckpts = checkpoints(directory)
    try:
        available = ckpts.steps()
        if not available:
            raise FileNotFoundError(f"{directory}: no checkpoint yet")
        if step is not None and step not in available:
            raise FileNotFoundError(f"step {step}: no checkpoint of that step in {directory}; "
                                    f"checkpoints: {', '.join(map(str, available))}")
        step = step if step is not None else available[-1]
        states = ckpts.restore(step, init_states(setup, list(seeds), list(hparams)))
    finally:
        ckpts.close()
    return TrainedGenerator(setup, jax.tree.map(lambda x: x[index], states), step)

"""The tiny sweep of experiments/gpu/check.sh: 4 trials end to end, evaluation included, in one
group (one train program): NS_GAN on the convex triangles with the InfoGAN architecture at a
quarter of its width, batch 32 (configs/sweeps/quick.py's polygon study), 2 settings × 2 seeds
under one shared search, scored by polygon F1 at every checkpoint with quick.py's reduced
evaluation. check.sh sets the budget (`--trial num_d_steps=… --trial checkpoint_every=…`) and,
with --tiny, a smaller evaluation.

  gancmp sweep --config experiments/gpu/tiny_sweep.py --workdir /tmp/tiny \\
      --trial num_d_steps=1000 --trial checkpoint_every=500
"""

import os

import ml_collections

from gancmp.config import load_config_file

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs")


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "gpu-check"
    c.seed = 0
    c.max_trials_per_group = 4
    c.imports = ""
    s = ml_collections.ConfigDict()
    s.name = "triangles"
    s.trial = load_config_file(os.path.join(CONFIGS, "polygons_infogan.py"),
                               width_multiplier=0.25, batch_size=32, num_d_steps=1_000,
                               checkpoint_every=500, bn_momentum=0.9)
    s.trial.eval.update(num_samples=1_000, bank_size=10_000, calibration_size=1_000,
                        recall_size=50, restarts=2, steps=100)
    s.methods = "NS_GAN"
    s.phases = [ml_collections.ConfigDict(dict(
        name="shared", mode="shared", range="narrow", num_settings=2, seeds=[0, 1],
        fixed=dict(disc_iters=1, d_batch_norm=False)))]
    c.studies = [s]
    return c

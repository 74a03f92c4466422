"""The main job: a loss comparison that runs offline in about five minutes on a 2-core CPU.

- ring8: every registered method on the ring of 8 Gaussians (small MLPs), 4 settings each
  (setting 0: the authors' default; the others from the narrow ranges, except the learning rate,
  drawn from 10^U[−2.7, −2.2] so that 3,000 D updates can learn the ring), then the best setting
  of each method with 3 seeds. D batch norm off (on 2-D data it hides where the points are).
- triangles: the paper's seven on the convex polygons with the InfoGAN architecture at a quarter
  of its width under one shared setting (the "same hyperparameters" comparison), 800 D updates,
  scored by polygon F1 (a reduced evaluation: see below).
"""

import os

import ml_collections

from gancmp.sweep.study import load_trial_config

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "quick"
    c.seed = 0
    c.max_trials_per_group = 16
    c.imports = ""

    ring = ml_collections.ConfigDict()
    ring.name = "ring8"
    ring.trial = load_trial_config(os.path.join(CONFIGS, "ring8_mlp.py"), num_d_steps=3_000,
                                   checkpoint_every=1_000, batch_size=128)
    ring.methods = "all"
    ring.phases = [
        ml_collections.ConfigDict(dict(name="tuned", mode="tuned", range="narrow",
                                       num_settings=4, seeds=[0],
                                       ranges=dict(lr=("log", -2.7, -2.2)),
                                       fixed=dict(d_batch_norm=False, disc_iters=1))),
        ml_collections.ConfigDict(dict(name="seeds", mode="seeds", source="tuned",
                                       num_seeds=3)),
    ]

    polygons = ml_collections.ConfigDict()
    polygons.name = "triangles"
    polygons.trial = load_trial_config(
        os.path.join(CONFIGS, "polygons_infogan.py"), width_multiplier=0.25, num_d_steps=800,
        checkpoint_every=800, bn_momentum=0.9)
    # Polygon P/R/F1, scaled down from the metric's defaults (bank 20k, 200 recall targets with 4
    # restarts of 200 Adam steps) to fit the five minutes; δ is calibrated for this bank.
    polygons.trial.eval.update(num_samples=1_000, bank_size=10_000, calibration_size=1_000,
                               recall_size=50, restarts=2, steps=100)
    polygons.methods = "paper_gans"
    # One shared setting (every method under the same lr, β1, D batch norm), its learning rate
    # drawn from 10^U[−2.85, −2.6]: at a quarter width NS-GAN reaches polygon F1 ≈ 0.1–0.25 after
    # 800 D updates with lr 1e-3–2e-3, and stays at 0 with the authors' default 5e-5.
    polygons.phases = [
        ml_collections.ConfigDict(dict(name="shared", mode="shared", range="narrow",
                                       num_settings=1, seeds=[0],
                                       ranges=dict(lr=("log", -2.85, -2.6)),
                                       fixed=dict(disc_iters=1))),
    ]
    c.studies = [ring, polygons]
    return c

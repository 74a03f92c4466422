"""The paper's full study (Lucic et al. 2018, Table 2 and Figure 4), for accelerators.

4 datasets × the paper's 8 models (methods "paper": its seven GANs and the VAE baseline, v1's
"gan8" experiments); per dataset and method: phase 1, 100 settings from the wide
ranges (the authors' default first); phase 2, 50 settings from the narrow ranges; phase 3, the
best phase-1 setting re-run with 50 seeds. InfoGAN architecture, batch 64, budgets in D updates:
15,625 (MNIST, Fashion-MNIST), 78,125 (CIFAR-10), 101,250 (CelebA-64); a checkpoint every 5
"epochs", each scored by FID (10k real test vs 10k generated, the TF1 legacy resize as the paper)
and by the Inception Score (as v1's evaluator), the best FID kept. See
experiments/lucic2018/README.md for the launch recipe.

Plus v1's phase-1 study on triangles (`phase1_gan8_triangles_sample100_rep1`): the 8 models on
the convex triangles (28×28×1, 60k training images), InfoGAN architecture, the MNIST budget (v1
gives every dataset but CIFAR-10 and CelebA 20 "epochs" of 50k at batch 64 and a checkpoint every
5), 100 wide-range settings per model (the default first), seed 0; every checkpoint scored by
polygon precision, recall and F1 (`gancmp/metrics/polygons.py`), the best kept.
"""

import os

import ml_collections

from gancmp.sweep.study import load_trial_config

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# dataset: (D updates, checkpoint interval ≈ 5 epochs at batch 64, a divisor of the budget)
BUDGETS = {
    "mnist": (15_625, 3_125),  # 20 epochs of 50k; every 4 epochs → 5 checkpoints
    "fashion_mnist": (15_625, 3_125),
    "cifar10": (78_125, 3_125),  # 100 epochs of 50k; every 4 epochs → 25 checkpoints
    "celeb_a": (101_250, 10_125),  # 40 epochs of 162k; every 4 epochs → 10 checkpoints
}


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "lucic2018"
    c.seed = 0
    c.max_trials_per_group = 16
    c.imports = ""
    studies = []
    for dataset, (steps, every) in BUDGETS.items():
        s = ml_collections.ConfigDict()
        s.name = dataset
        s.trial = load_trial_config(
            os.path.join(CONFIGS, "mnist_infogan.py"), dataset=dataset, num_d_steps=steps,
            checkpoint_every=every, keep_checkpoints=1)
        s.methods = "paper"
        s.phases = [
            ml_collections.ConfigDict(dict(name="wide", mode="tuned", range="wide",
                                           num_settings=100, seeds=[0])),
            ml_collections.ConfigDict(dict(name="narrow", mode="tuned", range="narrow",
                                           num_settings=50, seeds=[0])),
            ml_collections.ConfigDict(dict(name="seeds", mode="seeds", source="wide",
                                           num_seeds=50)),
        ]
        studies.append(s)
    studies.append(triangles_study())
    c.studies = studies
    return c


def triangles_study() -> ml_collections.ConfigDict:
    """v1's `phase1_gan8_triangles_sample100_rep1`: the paper's 8 models on triangles, phase 1
    only (100 settings from the wide ranges, seed 0), under the MNIST budget and checkpoints."""
    steps, every = BUDGETS["mnist"]
    s = ml_collections.ConfigDict()
    s.name = "triangles"
    s.trial = load_trial_config(
        os.path.join(CONFIGS, "polygons_infogan.py"), num_d_steps=steps, checkpoint_every=every,
        keep_checkpoints=1)
    s.methods = "paper"
    s.phases = [ml_collections.ConfigDict(dict(name="wide", mode="tuned", range="wide",
                                               num_settings=100, seeds=[0]))]
    return s

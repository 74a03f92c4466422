"""The paper's full study (Lucic et al. 2018, Table 2 and Figure 4), for accelerators.

4 datasets × the paper's 7 methods; per dataset and method: phase 1, 100 settings from the wide
ranges (the authors' default first); phase 2, 50 settings from the narrow ranges; phase 3, the
best phase-1 setting re-run with 50 seeds. InfoGAN architecture, batch 64, budgets in D updates:
15,625 (MNIST, Fashion-MNIST), 78,125 (CIFAR-10), 101,250 (CelebA-64); a checkpoint every 5
"epochs", each scored by FID (10k real test vs 10k generated, the TF1 legacy resize as the paper),
the best kept. See experiments/lucic2018/README.md for the launch recipe.
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
    c.studies = studies
    return c

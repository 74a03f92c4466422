"""The report: tables, statistics and figures recomputed from synthetic trial records whose truth
is known."""

import os

import numpy as np

from gancmp.sweep import store

PAPER_ORDER = ("MM_GAN", "NS_GAN", "LSGAN", "WGAN", "WGAN_GP", "DRAGAN", "BEGAN", "HINGE",
               "SNGAN", "RSGAN", "FISHER")


def make_records(shifts, settings=4, seeds=3, metric="fid", higher=False, seed=0,
                 study="s", dataset="d", sweep="syn", spread=1.0, pr=True, with_direction=True):
    """Synthetic records of one study: per method (name -> shift of its mean), `settings` tuned
    trials and `seeds` seeds-phase trials whose best metric is drawn from N(10 + shift, spread)
    (lower is better: a negative shift is better when `higher` is False)."""
    rng = np.random.default_rng(seed)
    out = []
    for method, shift in shifts.items():
        for phase, count in (("tuned", settings), ("seeds", seeds)):
            for i in range(count):
                value = float(10.0 + shift + spread * rng.standard_normal())
                best = {"metric": metric, "value": value, "step": 100,
                        "score": value if higher else -value}
                if pr:
                    best.update(precision=float(rng.uniform(0.2, 0.9)),
                                recall=float(rng.uniform(0.1, 0.8)))
                r = {"trial_id": f"{study}-{method}-{phase}-{i}", "study": study,
                     "dataset": dataset, "phase": phase, "phase_mode": phase,
                     "method": method, "setting": i, "status": "finished", "best": best,
                     "metric": metric, "metric_setup": {"n": 1}, "device_hours": 0.01,
                     "sweep": sweep}
                if with_direction:
                    r["higher_is_better"] = higher
                out.append(r)
    return out


def write_records(workdir, recs, shard=0):
    path = store.results_path(str(workdir), shard)
    os.makedirs(str(workdir), exist_ok=True)
    for r in recs:
        store.append(path, r)
    return str(workdir)

"""How the TRAINING precision moves a loss comparison (issue 24, item 1), emulated on a CPU.

XLA:CPU multiplies in float32 whatever it is asked, so the accelerators' fast modes are emulated
(`matmul_precision="emulated_bfloat16"`: a TPU's one bf16 pass, `auto` there;
`"emulated_tensorfloat32"`: a GPU's TF32, `auto` there): every product of G and D, forward and
backward, takes operands rounded as the hardware rounds them and accumulates in float32
(`gancmp/emulation.py`, the rounding `metric_precision.py` uses for the Inception).

The study: the main job's ring8 comparison (`configs/sweeps/quick.py`: MLPs, 3,000 D updates,
batch 128, D batch norm off, the narrow ranges with the learning rate from 10^U[−2.7, −2.2], the
authors' default as setting 0), `--methods` with `--settings` settings each, its tuned phase only.
It is trained once per `--runs` entry PRECISION:SEED, the same settings (drawn from the sweep's
seed, not the trial's) in each: float32 with seed 0 and seed 1 (the yardstick: the same setting,
another seed), emulated bf16 and TF32 with seed 0. Per method and metric (`modes_covered`, the
main one, and `high_quality` and `kl_to_uniform` (lower is better: the KL divergence of the
samples' mode histogram from uniform, the closest this study has to a distance between
distributions) at its best checkpoint; a diverged trial scores the worst value, as v1 gave
diverged runs a fixed worst FID) the script prints:

- the mean over settings and E[best of k] (k = 2, the report's `stats.default_k(16)`; and
  the best of all settings) under each run;
- the paired difference per setting against float32 seed 0 (the same trajectory's start: same
  seed, same initial weights, same batches), its mean with a 95 % t interval over settings;
- the same for float32 seed 1 against seed 0: what another seed alone changes;
- whether the precision's effect is distinguishable from seed noise: a sign-flip permutation
  test of the mean paired difference (H0: no systematic effect), and a paired permutation test
  of |Δ precision| against |Δ seed| per setting (H0: changing the precision moves a setting's
  result no more than changing its seed does).

`--study polygons`: the same on image data, the main job's triangles (`quick.py`: the paper's
convex polygons, 28×28, InfoGAN at a quarter of its width, batch 32, its reduced polygon
evaluation: 1,000 samples against a 10,000-polygon bank, 50 recall targets) at 1,500 D updates
(`POLYGON_STEPS`; evaluated at 750 and 1,500), MM_GAN and NS_GAN with 8 settings each, shared by
the two methods (lr from 10^U[−2.8, −2.3], β1 0.5, D batch norm on, one D update per G update;
not the authors' lr of 5e-5, which learns nothing in this budget), runs float32:0, float32:1
and emulated_bfloat16:0. Its metrics are the paper's polygon F1 (the main one), precision and
recall, all higher-is-better, a diverged trial scoring 0. FID is not measured: the real
Inception weights are not on this machine (and cannot be downloaded here), so a trained image
GAN's FID cannot be computed; the polygon metrics are the paper's own synthetic-image measure.

    PYTHONPATH=. .venv/bin/python experiments/lucic2018/train_precision.py run \
        --workdir /tmp/train_precision
    PYTHONPATH=. .venv/bin/python experiments/lucic2018/train_precision.py analyse \
        --workdir /tmp/train_precision
    XLA_FLAGS=--xla_force_host_platform_device_count=2 PYTHONPATH=. .venv/bin/python \
        experiments/lucic2018/train_precision.py run --study polygons \
        --workdir /tmp/train_precision_polygons \
        --runs float32:0,emulated_bfloat16:0,float32:1 --stages 2,4,6
    PYTHONPATH=. .venv/bin/python experiments/lucic2018/train_precision.py analyse \
        --study polygons --workdir /tmp/train_precision_polygons \
        --runs float32:0,float32:1,emulated_bfloat16:0

`run` trains the runs one after the other (each its own sweep workdir, resumable); `analyse`
reads their records only (`--json` for every number); `losses` prints how far each emulated
mode's D and G losses are from float32's, step by step (`loss_drift`):

    PYTHONPATH=. .venv/bin/python experiments/lucic2018/train_precision.py losses

Measured on 2026-12-06 on the shared 2-core machine: the four runs (4 × 48 trials) in 17
CPU-minutes (32 minutes of wall time under others' load), `losses` in 36 CPU-seconds; the polygons
study (3 × 16 trials) in 31 CPU-minutes (70 minutes of wall time under load 3 to 6.5): one bf16
pass changed F1 by +0.002 (95 %: −0.078 to +0.083) over 16 settings, another float32 seed by
−0.021 (−0.089 to +0.046), no systematic effect at a resolution of about ±0.08 F1. The numbers
are in experiments/lucic2018/README.md ("The training precision, measured" and "... on image
data, measured (polygons)").
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np
from scipy import stats as scipy_stats

from gancmp import records as records_lib
from gancmp.config import load_config_file
from gancmp.report import stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS = ("float32:0", "float32:1", "emulated_bfloat16:0", "emulated_tensorfloat32:0")
REFERENCE, YARDSTICK = "float32:0", "float32:1"


@dataclasses.dataclass(frozen=True)
class Study:
    """One study's scoring: its metrics (the main one first), those where lower is better, and
    the value a diverged or never-evaluated trial scores (v1 gave diverged runs a fixed worst
    FID), per metric."""

    metrics: tuple[str, ...]
    lower_is_better: tuple[str, ...]
    worst: Mapping[str, float]

    def sign(self, metric: str) -> float:
        """+1 where higher is better, −1 where lower is."""
        return -1.0 if metric in self.lower_is_better else 1.0


STUDIES = {
    "ring8": Study(("modes_covered", "high_quality", "kl_to_uniform"), ("kl_to_uniform",),
                   {"modes_covered": 0.0, "high_quality": 0.0,
                    "kl_to_uniform": float(np.log(8))}),
    "polygons": Study(("f1", "precision", "recall"), (),
                      {"f1": 0.0, "precision": 0.0, "recall": 0.0}),
}
# The polygons study's budget and learning rates (module constants: `run` and the docstring
# state them). Each setting draws lr from 10^U[POLYGON_LR]; β1 0.5, D batch norm on, one D
# update per G update, for every setting and method alike ("shared" mode: no authors' default,
# whose lr of 5e-5 learns nothing in this budget).
POLYGON_STEPS, POLYGON_LR = 1_500, (-2.8, -2.3)


def study_config(study: str, precision: str, seed: int, methods: str, settings: int
                 ) -> ml_collections.ConfigDict:
    """The quick config's `study` ("ring8" or "polygons"), one phase, at `precision`, trial seed
    `seed`, `settings` settings per method drawn from the sweep's seed (the same in every run).

    ring8: the main job's tuned phase (the authors' default first, then the narrow ranges with
    its lr range). polygons: the main job's triangles (InfoGAN at a quarter width, batch 32, its
    reduced polygon evaluation) at `POLYGON_STEPS` D updates, evaluated at the half and the end,
    `settings` shared settings (`POLYGON_LR`)."""
    sweep = load_config_file(os.path.join(ROOT, "configs", "sweeps", "quick.py"))
    chosen = sweep.studies[0 if study == "ring8" else 1]
    chosen.trial.matmul_precision = precision
    chosen.methods = methods
    phase = chosen.phases[0]
    phase.num_settings, phase.seeds = settings, [seed]
    if study == "polygons":
        chosen.trial.update(num_d_steps=POLYGON_STEPS, checkpoint_every=POLYGON_STEPS // 2)
        phase.ranges = dict(lr=("log", *POLYGON_LR))
        phase.fixed = dict(disc_iters=1, d_batch_norm=True, beta1=0.5)
    chosen.phases = [phase]
    sweep.studies = [chosen]
    sweep.name = f"train_precision_{study}_{precision}_s{seed}"
    return sweep


def run(workdir: str, runs: Sequence[str], study: str, methods: str, settings: int,
        stages: Sequence[int] = ()) -> None:
    """Trains each run (its own sweep workdir under `workdir`; resumable: a finished trial is
    skipped, an interrupted group resumes from its checkpoint). With `stages` (setting counts,
    ascending), every run first gets the first stages[0] settings, then every run the first
    stages[1], and so on up to `settings`: a study cut short still pairs complete settings
    (settings are drawn in order, so a prefix is the same in every run). Stops at the first
    interruption (SIGTERM)."""
    from gancmp.sweep import runner

    for count in [*(n for n in stages if n < settings), settings]:
        for spec in runs:
            precision, seed = spec.split(":")
            sweep = study_config(study, precision, int(seed), methods, count)
            counts = runner.run_sweep(sweep, os.path.join(workdir, spec.replace(":", "_s")),
                                      progress=False)
            print(spec, count, counts, flush=True)
            if counts["interrupted"]:
                return


def scores(workdir: str, spec: str, study: Study) -> dict[str, dict[int, dict[str, float]]]:
    """{method: {setting: {metric: value at the best checkpoint}}} of one run (diverged or never
    evaluated: the worst, `study.worst`), and each setting's hyperparameters under "hparams"."""
    recs = records_lib.load([os.path.join(workdir, spec.replace(":", "_s"))])
    out: dict[str, dict[int, dict]] = {}
    for r in recs:
        best = r.best or {}
        row = {m: float(best[m]) if r.status == "finished" and m in best else study.worst[m]
               for m in study.metrics}
        row["hparams"] = r.hparams
        out.setdefault(r.method, {})[r.setting] = row
    return out


def _sign_flip_p(d: np.ndarray, num: int = 20_000, seed: int = 0) -> float:
    """Two-sided p of "d's entries are symmetric about 0" (no systematic effect) by flipping
    their signs: exact over all 2^n flips for n ≤ 16, else (1 + hits) / (1 + num) random ones."""
    observed = abs(d.mean()) - 1e-12
    if len(d) <= 16:
        flips = np.array(list(itertools.product((1, -1), repeat=len(d))))
        return float(np.mean(np.abs(flips @ d / len(d)) >= observed))
    flips = np.random.default_rng(seed).choice((1, -1), size=(num, len(d)))
    return float((1 + np.sum(np.abs(flips @ d / len(d)) >= observed)) / (1 + num))


def _mean_ci(d: np.ndarray) -> tuple[float, float, float]:
    half = scipy_stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def _paired(d: np.ndarray, seed: np.ndarray, yardstick: bool) -> dict:
    """The paired differences d (one per setting) against float32 seed 0: mean and its 95 % t
    interval, spread, the sign-flip p of no systematic effect, and (but for the yardstick
    itself) the sign-flip p of |d| against |seed|, the seed change's differences."""
    row = dict(zip(("mean_diff", "ci_low", "ci_high"), _mean_ci(d), strict=True))
    row.update(sd_diff=float(d.std(ddof=1)), sign_flip_p=_sign_flip_p(d),
               mean_abs_diff=float(np.abs(d).mean()))
    if not yardstick:
        row["abs_vs_seed_p"] = _sign_flip_p(np.abs(d) - np.abs(seed))
    return row


def _best_of(v: np.ndarray, k: int, sign: float) -> float:
    """E[best of k] of v, best = largest (sign 1) or smallest (sign −1)."""
    return sign * stats.expected_best_of_k(sign * v, k)


def compare(values: Mapping[str, np.ndarray], k: int, sign: float = 1.0) -> dict:
    """Per run: mean, E[best of k], best (largest for sign 1, smallest for −1); per run but the
    reference: the paired differences."""
    ref, seed = values[REFERENCE], values[YARDSTICK] - values[REFERENCE]
    out = {"runs": {spec: {"mean": float(v.mean()), f"best_of_{k}": _best_of(v, k, sign),
                           "best": _best_of(v, len(v), sign)} for spec, v in values.items()}}
    for spec, v in values.items():
        if spec != REFERENCE:
            out[spec] = _paired(v - ref, seed, spec == YARDSTICK)
            out[spec]["best_of_k_diff"] = _best_of(v, k, sign) - _best_of(ref, k, sign)
    return out


def analyse(workdir: str, runs: Sequence[str], k: int, study: Study = STUDIES["ring8"]) -> dict:
    """`compare` per method and `study` metric, and over all methods' settings pooled ("all", k
    applied per method and averaged)."""
    per_run = {spec: scores(workdir, spec, study) for spec in runs}
    out, pooled = {}, {metric: {spec: [] for spec in runs} for metric in study.metrics}
    for method in per_run[REFERENCE]:
        # the settings every run has finished (all of them once the runs are complete)
        settings = sorted(set.intersection(*(set(per_run[spec].get(method, {}))
                                             for spec in runs)))
        if len(settings) < 2:  # nothing to pair yet (a partial study)
            continue
        for spec in runs:  # the same settings in every run, or the pairing means nothing
            assert [per_run[spec][method][s]["hparams"] for s in settings] == [
                per_run[REFERENCE][method][s]["hparams"] for s in settings], (method, spec)
        out[method] = {}
        for metric in study.metrics:
            values = {spec: np.array([per_run[spec][method][s][metric] for s in settings])
                      for spec in runs}
            out[method][metric] = compare(values, k, study.sign(metric))
            for spec in runs:
                pooled[metric][spec].append(values[spec])
    out["all"] = {metric: _pooled(v, k, study.sign(metric))
                  for metric, v in pooled.items()}
    return out


def _pooled(values: Mapping[str, list[np.ndarray]], k: int, sign: float) -> dict:
    """The paired differences of every method's settings together (one test over all)."""
    ref = np.concatenate(values[REFERENCE])
    seed = np.concatenate(values[YARDSTICK]) - ref
    out = {}
    for spec, parts in values.items():
        if spec != REFERENCE:
            out[spec] = _paired(np.concatenate(parts) - ref, seed, spec == YARDSTICK)
            out[spec]["best_of_k_diff"] = float(np.mean([
                _best_of(p, k, sign) - _best_of(r, k, sign)
                for p, r in zip(parts, values[REFERENCE], strict=True)]))
    return out


def markdown(result: Mapping, k: int, metrics: Sequence[str] = STUDIES["ring8"].metrics
             ) -> str:
    """The README's table: per method and metric, each run's mean / E[best of k] / best, and per
    run against float32 seed 0 the paired mean difference [95 % interval] with its sign-flip p,
    the mean |difference|, and the p of |Δ| against |Δ seed|."""
    lines = [f"| method | metric | run | mean / E[best of {k}] / best | paired Δ mean [95 %] "
             "(p) | mean abs Δ | vs seed noise p |", "|---|---|---|---|---|---|---|"]
    for method, per_metric in result.items():
        for metric in metrics:
            block = per_metric[metric]
            for spec in block.get("runs", {r: None for r in block}):
                cells = ["", "", ""]
                if "runs" in block:
                    v = block["runs"][spec]
                    cells[0] = f"{v['mean']:.3g} / {v[f'best_of_{k}']:.3g} / {v['best']:.3g}"
                if spec in block and spec != "runs":
                    d = block[spec]
                    cells[1] = (f"{d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
                                f" ({d['sign_flip_p']:.2f})")
                    cells[2] = f"{d['mean_abs_diff']:.3f}"
                    vs = f"{d['abs_vs_seed_p']:.2f}" if "abs_vs_seed_p" in d else "(yardstick)"
                    cells.append(vs)
                else:
                    cells.append("")
                lines.append(f"| {method} | {metric} | {spec} | {' | '.join(cells)} |")
    return "\n".join(lines)


def loss_drift(steps: int, seeds: Sequence[int], names: Sequence[str]) -> dict:
    """How far each emulated precision's losses are from float32's, step by step, on the same
    trials (ring8 NS_GAN at the config's setting, `seeds`): the relative difference
    |loss − loss_float32| / |loss_float32| of D's and G's losses, "step:median/max" over the
    trials, at steps 1, 10, …, `steps`."""
    from gancmp.train import group as group_lib
    from gancmp.trial import make_trial

    losses = {}
    for name in ("float32", *names):
        config = load_config_file(os.path.join(ROOT, "configs", "ring8_mlp.py"),
                                  num_d_steps=steps, checkpoint_every=steps, batch_size=128,
                                  steps_per_call=steps, scan_unroll="rolled", num_devices=1,
                                  matmul_precision=name)
        base = make_trial(config)
        group = group_lib.create_group([base.variant(seed=s) for s in seeds], {})
        _, metrics = group.train_fn(group.states, group.arrays)
        losses[name] = {k: np.asarray(metrics[k])[:len(seeds)] for k in ("d_loss", "g_loss")}
    at = sorted({1, *range(10, steps + 1, 10), steps})
    out = {}
    for name in names:
        rel = {k: np.abs(losses[name][k] - v) / np.abs(v) for k, v in losses["float32"].items()}
        out[name] = {k: " ".join(f"{t}:{np.median(r[:, t - 1]):.1e}/{r[:, t - 1].max():.1e}"
                                 for t in at) for k, r in rel.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "analyse", "losses"))
    parser.add_argument("--workdir", default=None, help="run, analyse: the sweeps' parent")
    parser.add_argument("--runs", default=",".join(RUNS), help="PRECISION:SEED, comma-separated")
    parser.add_argument("--study", choices=tuple(STUDIES), default="ring8",
                        help="run, analyse: ring8 (the default) or polygons")
    parser.add_argument("--methods", default=None,
                        help="run: ring8's default MM_GAN,NS_GAN,WGAN_GP, polygons' "
                             "MM_GAN,NS_GAN")
    parser.add_argument("--settings", type=int, default=None,
                        help="run: settings per method (ring8 16, polygons 8)")
    parser.add_argument("--stages", default="",
                        help="run: comma-separated setting counts to complete in every run "
                             "before the next (e.g. 2,4)")
    parser.add_argument("--k", type=int, default=2, help="E[best of k]'s budget")
    parser.add_argument("--json", action="store_true", help="analyse: JSON, not a table")
    args = parser.parse_args()
    runs = args.runs.split(",")
    if args.command != "losses" and not args.workdir:
        parser.error(f"{args.command}: --workdir is required")
    if args.command == "losses":
        names = [r.split(":")[0] for r in runs if not r.startswith("float32")]
        print(json.dumps(loss_drift(50, range(8), names), indent=1))
    elif args.command == "run":
        ring8 = args.study == "ring8"
        run(args.workdir, runs, args.study,
            args.methods or ("MM_GAN,NS_GAN,WGAN_GP" if ring8 else "MM_GAN,NS_GAN"),
            args.settings or (16 if ring8 else 8),
            [int(n) for n in args.stages.split(",") if n])
    else:
        study = STUDIES[args.study]
        result = analyse(args.workdir, runs, args.k, study)
        print(json.dumps(result, indent=1) if args.json
              else markdown(result, args.k, study.metrics))


if __name__ == "__main__":
    main()

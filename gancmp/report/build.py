"""`gancmp report DIR [DIR ...]`: the loss-comparison report from trial records alone.

Writes `report.md` and PNG plots: per study, a plain-language summary of what the data support,
the paper's table (best main metric over the tuned settings, mean ± std over the seeds phase),
and per search phase (never a pool of phases) the best-of-k vs budget curves (the paper's
figure), the distribution of the metric over settings, a precision/recall figure where the
records have both, the pairwise comparisons in expected best-of-k (interval, Cliff's delta,
permutation p-values with Holm's adjustment, the power each pair had, equivalence tests where the
study sets a margin), then the samples of each method's best trial; each section says how to
read it. The tables are `tables.py`'s, the figures `plots.py`'s; this module reads the records and
composes the page.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from gancmp import records, storage
from gancmp.records import Record
from gancmp.report import plots, stats, tables, views
from gancmp.report.tables import fmt, pairwise, pairwise_md, study_table, table_md

__all__ = ["build", "pairwise", "study_table"]


def build(dirs: Sequence[str], out_dir: str,
          margins: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """Writes `out_dir/report.md` and its plots from the records under `dirs`; returns its path.
    `margins`: per study name (or "*": every study not named), {metric: m}, the equivalence
    margins of the sweep config's studies (`study_margins`) or of `gancmp report --margin`; a
    study without one for its main metric gets no equivalence test. The same records
    give the same report, byte for byte (every resample is seeded)."""
    recs = records.load(dirs)
    storage.makedirs(out_dir)
    sweeps = views.sweep_names(recs)
    title = "# Loss comparison report" + (
        f": sweep{'s' if len(sweeps) > 1 else ''} {', '.join(sweeps)}" if sweeps else "")
    lines = [title, "",
             f"{len(recs)} trials from {', '.join(dirs)}. Every number below is recomputed from "
             "the `results-*.jsonl` records alone. Best values are the best checkpoint of each "
             "trial by the study's main metric; `best (PHASE)` is the best over the settings of "
             "that tuned or shared phase, the seeds column the spread of the best setting over "
             "fresh seeds.", "",
             "Statistics: each search phase on its own (never a pool of phases). Methods are "
             "compared on E[best of k], the expected best metric of k settings drawn at random "
             "from those a method tried (Lucic et al.'s measure of what a tuning budget buys), "
             "estimated without bias, with t intervals from jackknife standard errors at a k "
             "where they hold their level; differences are tested with permutation tests and "
             "equivalence with two one-sided tests, each adjusted for the number of pairs by "
             f"Holm's step-down method (family-wise error α = {tables.ALPHA:g}); effect sizes "
             "are the difference itself and Cliff's δ. A setting that diverged before any "
             "evaluation counts as the worst score of its phase in every statistic. Every "
             "resample is seeded, so the same records give the same report.", ""]
    for study in dict.fromkeys(r.study for r in recs):
        lines += _study_section([r for r in recs if r.study == study], out_dir, study,
                                (margins or {}).get(study, (margins or {}).get("*", {})))
    path = os.path.join(out_dir, "report.md")
    storage.write_atomic(path, "\n".join(lines) + "\n")
    return path


def study_margins(sweep: Any) -> dict[str, dict[str, float]]:
    """Per study of a sweep config, its `equivalence_margins` ({metric: m > 0}; {} without).
    ValueError in one line naming the study and the field for anything else."""
    out = {}
    for study in sweep.studies:
        given = study.get("equivalence_margins") or {}
        if hasattr(given, "to_dict"):  # a ConfigDict
            given = given.to_dict()
        where = f"study {study.get('name')!r} equivalence_margins"
        if not isinstance(given, Mapping):
            raise ValueError(f"{where}: a dict {{metric: margin}}, e.g. dict(fid=5.0); got "
                             f"{given!r}")
        for metric, m in given.items():
            if isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 0:
                raise ValueError(f"{where}[{metric!r}]: a positive number (the margin in the "
                                 f"metric's units), got {m!r}")
        out[study.get("name")] = {str(k): float(v) for k, v in given.items()}
    return out


def parse_margins(items: Sequence[str]) -> dict[str, float]:
    """`METRIC=M` items (`gancmp report --margin`) as {metric: m > 0}; ValueError in one line."""
    out = {}
    for item in items:
        metric, _, value = item.partition("=")
        try:
            margin = float(value)
        except ValueError:
            margin = math.nan
        if not metric or not margin > 0:
            raise ValueError(f"--margin: METRIC=M with M a positive number, e.g. fid=5; got "
                             f"{item!r}")
        out[metric] = margin
    return out


def _study_section(recs: Sequence[Record], out_dir: str, study: str,
                   margins: Mapping[str, float]) -> list[str]:
    metric, higher = records.direction(recs)
    better = "higher" if higher else "lower"
    rows = study_table(recs)
    lines = [f"## {study} ({recs[0].dataset}; main metric: {metric}, {better} is better)", ""]
    lines += [f"*How to read:* `best (PHASE)` is the best {metric} any one setting of that "
              f"tuned or shared phase reached ({better} is better). `over seeds` re-trains the "
              "method's best setting with n fresh seeds (a method with one setting run with n "
              "seeds and no seeds phase: those n seeds): the mean ± standard deviation of their "
              f"best {metric}, the spread that randomness alone causes (a spread, not an "
              "interval of the mean). `settings` counts the settings tried, `diverged` the "
              "trials that produced NaN or inf.", ""]
    lines += table_md(rows) + [""]
    phases = views.competing_phases(recs)
    for phase in phases:
        mine = views.phase_records(recs, phase)
        name = study if len(phases) == 1 else f"{study}_{phase}"
        lines += _phase_section(mine, out_dir, name, phase, margins.get(metric))
    return lines + _sample_section(recs, out_dir, study)


def _phase_section(recs: Sequence[Record], out_dir: str, name: str, phase: str,
                   margin: float | None) -> list[str]:
    """The summary, figures and pairwise comparisons of one search phase of a study."""
    metric, higher = records.direction(recs)
    reference = tables.reference_method(views.methods(recs))
    pairs = pairwise(recs, margin=margin)
    lines = [f"### Phase `{phase}` ({recs[0].phase_mode})", ""]
    lines += tables.summary(pairs, reference, metric)
    if not pairs and len(views.methods(recs)) > 1:
        lines += ["**Summary**: not tested. Pairwise tests need at least 2 settings per method "
                  "and this phase has fewer: one setting per method cannot tell a better loss "
                  "from a luckier setting.", ""]
    lines += _figures(recs, out_dir, name, metric, "higher" if higher else "lower", reference)
    if pairs:
        lines += [f"#### Pairwise comparisons in phase `{phase}` at k = {pairs[0]['k']}", "",
                  _pairwise_how_to_read(metric, higher, pairs), ""]
        lines += pairwise_md(pairs, metric) + [""]
    return lines


def _figures(recs: Sequence[Record], out_dir: str, study: str, metric: str,
             better: str, reference: str) -> list[str]:
    """The figures of a study, each under a line on how to read it."""
    lines = []
    for name, fn, caption, how in (
        ("budget", plots.plot_budget, f"best {metric} vs budget (E[best of k], 95 % spread)",
         f"one panel per method: the best {metric} of k settings drawn at random from those "
         "it tried, against k. The line is E[best of k] (the mean best over every subset of k "
         "of the settings tried), the band holds 95 % of those subsets' best: the spread of "
         "one tuning run of k of these settings, not a confidence interval of E[best of k] (it "
         "never reaches above the best setting tried). The grey line is "
         f"{reference} in every panel; {better} is better. A curve that flattens early needs "
         "little tuning."),
        ("distribution", plots.plot_distribution, f"{metric} over all tuned settings",
         f"every dot is one tuned or shared setting's best {metric}, the bar the median, rows "
         f"ordered best median first ({better} is better); a wide row is a method sensitive to "
         "its hyperparameters. `unscored` settings diverged before any evaluation; they are "
         "drawn at the phase's worst value, as every statistic counts them."),
        ("precision_recall", plots.plot_precision_recall,
         "precision vs recall (best checkpoints)",
         "one panel per method, each dot one trial's best checkpoint (every phase): precision "
         "(samples that look like data) up, recall (data the samples cover) right, higher is "
         "better for both; grey dots are the other methods' trials."),
    ):
        path = fn(recs, os.path.join(out_dir, f"{study}_{name}.png"), f"{study}: {caption}",
                  reference)
        if path:
            lines += [f"*How to read:* {how}", "", f"![{caption}]({os.path.basename(path)})", ""]
        elif name == "budget" and recs:
            lines += ["One setting per method: no budget curve (the distribution below shows "
                      "each method's setting).", ""]
    return lines


def _pairwise_how_to_read(metric: str, higher: bool, pairs: Sequence[Mapping[str, Any]]) -> str:
    k, m = pairs[0]["k"], len(pairs)
    sign = "positive" if higher else "negative"
    margin = pairs[0].get("margin")
    equivalence = (
        f" `equivalent`: two one-sided t-tests (TOST) that |Δ| < {fmt(margin)}, the study's "
        "margin, Holm-adjusted over the pairs: `yes` says A and B are equivalent within "
        f"±{fmt(margin)} {metric} in E[best of {k}]." if margin is not None else "")
    return (
        f"*How to read:* Δ = E[best of {k}](A) − E[best of {k}](B) in {metric}; a {sign} Δ "
        f"means A is better. k = {k} is the report's budget for the fewest settings any method "
        "has (`stats.default_k`): well below it, where Δ's 95 % interval (jackknife standard "
        "errors, Welch's t) keeps its level in simulation; unadjusted, it gives the size of the "
        f"difference. Cliff's δ = P(A's {metric} > B's) − P(A's < B's) over pairs of their "
        "settings, from −1 to 1, oriented like Δ: it speaks of the typical setting and Δ of "
        "the best ones, so the two can differ. p: two-sided permutation test of Δ (settings "
        f"relabelled between A and B; exact when there are at most {stats.NUM_PERMUTATIONS} "
        "relabellings, else that many seeded random ones); its null is that A's and B's "
        "settings are one distribution, so a rejection says they differ, and Δ's sign which "
        "way. Holm p: adjusted by Holm's step-down method over the phase's "
        f"{m} pairs, which keeps the chance of any false claim at α = {tables.ALPHA:g} "
        "whatever the dependence between pairs; chosen over Benjamini–Hochberg's false-discovery "
        "rate because each row is read as a claim of its own. `smallest possible Holm p`: the "
        "least the test can give at these numbers of settings; `≈ smallest detectable |Δ|`: "
        f"the half-width of Δ's interval at Holm's first level α/{m}. The last column names "
        f"the method with the larger E[best of k] where Holm p ≤ {tables.ALPHA:g}."
        + equivalence)


def _sample_section(recs: Sequence[Record], out_dir: str, study: str) -> list[str]:
    lines = []
    for method in views.methods(recs):
        scored = [r for r in recs if r.method == method and r.main_score is not None
                  and r.samples]
        if not scored:
            continue
        best = max(scored, key=lambda r: r.main_score)
        if not storage.exists(best.samples):
            continue
        name = f"{study}_{method}_samples.png"
        storage.copy(best.samples, os.path.join(out_dir, name))
        lines += [f"**{method}**, best trial `{best.trial_id}` (final samples):", "",
                  f"![{method}]({name})", ""]
    return (["### Samples of each method's best trial", ""] + lines) if lines else []

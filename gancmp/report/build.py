"""`gancmp report DIR [DIR ...]`: the loss-comparison report from trial records alone.

Writes `report.md` and PNG plots: per study, a plain-language summary of what the data support,
the paper's table (best main metric over the tuned settings, mean ± std over the seeds phase),
the best-of-k vs budget curves with bootstrap bands (the paper's figure), the distribution of the
metric over settings, a precision/recall figure where the records have both, the pairwise
comparisons in expected best-of-k (bootstrap interval, Cliff's delta, permutation p-values with
Holm's adjustment), and the samples of each method's best trial; each section says how to read
it. The tables are `tables.py`'s, the figures `plots.py`'s; this module reads the records and
composes the page.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from gancmp import records, storage
from gancmp.records import Record
from gancmp.report import plots, stats, tables, views
from gancmp.report.tables import pairwise, pairwise_md, study_table, table_md

__all__ = ["build", "pairwise", "study_table"]


def build(dirs: Sequence[str], out_dir: str) -> str:
    """Writes `out_dir/report.md` and its plots from the records under `dirs`; returns its path.
    The same records give the same report, byte for byte (every resample is seeded)."""
    recs = records.load(dirs)
    storage.makedirs(out_dir)
    sweeps = views.sweep_names(recs)
    title = "# Loss comparison report" + (
        f": sweep{'s' if len(sweeps) > 1 else ''} {', '.join(sweeps)}" if sweeps else "")
    lines = [title, "",
             f"{len(recs)} trials from {', '.join(dirs)}. Every number below is recomputed from "
             "the `results-*.jsonl` records alone. Best values are the best checkpoint of each "
             "trial by the study's main metric; `best (tuned/shared)` is the best over the "
             "settings of the tuned or shared phases, the seeds column the spread of the best "
             "setting over fresh seeds.", "",
             "Statistics: methods are compared on E[best of k], the expected best metric of k "
             "settings drawn at random from those a method tried (Lucic et al.'s measure of what "
             "a tuning budget buys), with bootstrap intervals; differences are tested with "
             "permutation tests, adjusted for the number of pairs by Holm's step-down method "
             f"(family-wise error α = {tables.ALPHA:g}); effect sizes are the difference itself "
             "and Cliff's δ. Every resample is seeded, so the same records give the same "
             "report.", ""]
    for study in dict.fromkeys(r.study for r in recs):
        lines += _study_section([r for r in recs if r.study == study], out_dir, study)
    path = os.path.join(out_dir, "report.md")
    storage.write_atomic(path, "\n".join(lines) + "\n")
    return path


def _study_section(recs: Sequence[Record], out_dir: str, study: str) -> list[str]:
    metric, higher = records.direction(recs)
    better = "higher" if higher else "lower"
    reference = tables.reference_method(views.methods(recs))
    rows = study_table(recs)
    pairs = pairwise(recs)
    lines = [f"## {study} ({recs[0].dataset}; main metric: {metric}, {better} is better)", ""]
    lines += tables.summary(pairs, reference, metric)
    if not pairs and len(rows) > 1:
        lines += ["**Summary**: not tested. Pairwise tests need at least 2 settings per method "
                  "and this study has fewer: one setting per method cannot tell a better loss "
                  "from a luckier setting.", ""]
    lines += [f"*How to read:* `best` is the best {metric} any one tuned or shared setting "
              f"reached ({better} is better). `over seeds` re-trains the method's best setting "
              f"with n fresh seeds (a method with one setting run with n seeds and no seeds phase: "
              f"those n seeds): the mean ± standard deviation of their best {metric}, the "
              "spread that randomness alone causes (a spread, not an interval of the mean). "
              "`settings` counts the settings tried, `diverged` the trials that produced NaN or "
              "inf.", ""]
    lines += table_md(rows) + [""]
    lines += _figures(recs, out_dir, study, metric, better, reference)
    if pairs:
        lines += [f"### Pairwise comparisons at k = {pairs[0]['k']}", "",
                  _pairwise_how_to_read(metric, higher, pairs), ""]
        lines += pairwise_md(pairs, metric) + [""]
    return lines + _sample_section(recs, out_dir, study)


def _figures(recs: Sequence[Record], out_dir: str, study: str, metric: str,
             better: str, reference: str) -> list[str]:
    """The figures of a study, each under a line on how to read it."""
    lines = []
    for name, fn, caption, how in (
        ("budget", plots.plot_budget, f"best {metric} vs budget (bootstrap mean, 95 % band)",
         f"one panel per method: the best {metric} of k settings drawn at random from those "
         "it tried, against k. The line is the bootstrap mean (E[best of k]), the band holds "
         f"95 % of the best-of-k values over {stats.NUM_RESAMPLES} resamples: what one tuning "
         f"run of k settings may give. The grey line is {reference} in every panel; {better} "
         "is better. A curve that flattens early needs little tuning."),
        ("distribution", plots.plot_distribution, f"{metric} over all tuned settings",
         f"every dot is one tuned or shared setting's best {metric}, the bar the median, rows "
         f"ordered best median first ({better} is better); a wide row is a method sensitive to "
         "its hyperparameters. `unscored` settings diverged before any evaluation."),
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
    return (
        f"*How to read:* Δ = E[best of {k}](A) − E[best of {k}](B) in {metric}, k being the "
        f"fewest settings any method has; a {sign} Δ means A is better. Its 95 % interval is a "
        f"bootstrap over each method's settings ({stats.NUM_RESAMPLES} resamples), unadjusted: "
        "it gives the size of the difference, not its significance. Cliff's δ = "
        f"P(A's {metric} > B's) − P(A's < B's) over pairs of their settings, from −1 to 1, "
        "oriented like Δ: scale-free and robust to outlying settings; it speaks of the typical "
        "setting and Δ of the best ones, so the two can differ. p: two-sided permutation test of "
        "Δ (settings relabelled between A and B; exact when there are at most "
        f"{stats.NUM_PERMUTATIONS} relabellings, else that many seeded random ones). Holm p: "
        f"adjusted by Holm's step-down method over the study's {m} pairs, which keeps the chance "
        f"of any false `better` at α = {tables.ALPHA:g} whatever the dependence between pairs; "
        "chosen over Benjamini–Hochberg's false-discovery rate because each row is read as a "
        f"claim of its own. `better` names the winner where Holm p ≤ {tables.ALPHA:g}.")


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

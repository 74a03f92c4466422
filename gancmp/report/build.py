"""`gancmp report DIR [DIR ...]`: the loss-comparison report from trial records alone.

Writes `report.md` and PNG plots: per study, the paper's table (best main metric over the tuned
settings, mean ± std over the seeds phase), the best-of-k vs budget curves with bootstrap bands
(the paper's figure), the distribution of the metric over settings, bootstrap intervals of the
pairwise differences in expected best-of-k, a precision/recall scatter where the dataset has one,
and the samples of each method's best trial. The tables are `tables.py`'s, the figures
`plots.py`'s; this module reads the records and composes the page.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from gancmp.report import plots, tables
from gancmp.report import records as records_lib
from gancmp.report.tables import pairwise, pairwise_md, study_table, table_md

__all__ = ["build", "pairwise", "study_table"]


def build(dirs: Sequence[str], out_dir: str) -> str:
    """Writes `out_dir/report.md` and its plots from the records under `dirs`; returns its path."""
    recs = records_lib.load(dirs)
    os.makedirs(out_dir, exist_ok=True)
    sweeps = records_lib.sweep_names(recs)
    title = "# Loss comparison report" + (
        f": sweep{'s' if len(sweeps) > 1 else ''} {', '.join(sweeps)}" if sweeps else "")
    lines = [title, "",
             f"{len(recs)} trials from {', '.join(dirs)}. Every number below is recomputed from "
             "the `results-*.jsonl` records alone. Best values are the best checkpoint of each "
             "trial by the study's main metric; `best (tuned/shared)` is the best over the "
             "settings of the tuned or shared phases, the seeds column the spread of the best "
             "setting over fresh seeds.", ""]
    for study in dict.fromkeys(r["study"] for r in recs):
        mine = [r for r in recs if r["study"] == study]
        dataset = mine[0]["dataset"]
        metric, higher = records_lib.direction(mine)
        lines += [f"## {study} ({dataset}; main metric: {metric}, "
                  f"{'higher' if higher else 'lower'} is better)", ""]
        lines += table_md(study_table(mine)) + [""]
        for name, fn, caption in (
            ("budget", plots.plot_budget, f"best {metric} vs budget (bootstrap mean, 95 % band)"),
            ("distribution", plots.plot_distribution, f"{metric} over all tuned settings"),
            ("precision_recall", plots.plot_precision_recall,
             "precision vs recall (best checkpoints)"),
        ):
            path = fn(mine, os.path.join(out_dir, f"{study}_{name}.png"), f"{study}: {caption}")
            if path:
                lines += [f"![{caption}]({os.path.basename(path)})", ""]
        pairs = pairwise(mine)
        if pairs:
            reference = tables.reference_method(list(dict.fromkeys(
                m for p in pairs for m in (p["a"], p["b"]))))
            lines += [f"Pairwise: E[best of k={pairs[0]['k']}] difference (A − B in {metric}), "
                      "95 % bootstrap interval; p from a permutation test, Holm-adjusted over "
                      f"the study's {len(pairs)} pairs; * = significant at α = "
                      f"{tables.ALPHA:g}.", ""]
            lines += pairwise_md(pairs, metric) + [""]
            lines += tables.summary(pairs, reference, metric)
        elif len({r["method"] for r in mine}) > 1:
            lines += ["Pairwise intervals need at least 2 settings per method; this study has "
                      "fewer, so its differences are not tested for significance.", ""]
        lines += _sample_section(mine, out_dir, study)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _sample_section(recs: Sequence[Mapping[str, Any]], out_dir: str, study: str) -> list[str]:
    lines = []
    for method in dict.fromkeys(r["method"] for r in recs):
        scored = [r for r in recs if r["method"] == method and r.get("best") and r.get("samples")]
        if not scored:
            continue
        best = max(scored, key=lambda r: r["best"]["score"])
        if not os.path.exists(best["samples"]):
            continue
        name = f"{study}_{method}_samples.png"
        shutil.copyfile(best["samples"], os.path.join(out_dir, name))
        lines += [f"**{method}**, best trial `{best['trial_id']}` (final samples):", "",
                  f"![{method}]({name})", ""]
    return (["### Samples of each method's best trial", ""] + lines) if lines else []

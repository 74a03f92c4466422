"""`gancmp report DIR [DIR ...]`: the loss-comparison report from trial records alone.

Writes `report.md` and PNG plots: per study, the paper's table (best main metric over the tuned
settings, mean ± std over the seeds phase), the best-of-k vs budget curves with bootstrap bands
(the paper's figure), the distribution of the metric over settings, bootstrap intervals of the
pairwise differences in expected best-of-k, a precision/recall scatter where the dataset has one,
and the samples of each method's best trial.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gancmp.report import records as records_lib
from gancmp.report import stats

TUNED_MODES = ("tuned", "shared")


def _value(score: float, higher_is_better: bool) -> float:
    return score if higher_is_better else -score


def _direction(recs: Sequence[Mapping[str, Any]]) -> tuple[str, bool]:
    for r in recs:
        best = r.get("best") or {}
        if "score" in best:
            return best["metric"], best["value"] == best["score"]
    return recs[0].get("metric", "metric"), True


def study_table(recs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per method of a study: best value over its tuned/shared trials, mean and std of
    the best values of its seeds-phase trials, trial and divergence counts, device-hours."""
    metric, higher = _direction(recs)
    rows = []
    for method in sorted({r["method"] for r in recs}, key=_method_order(recs)):
        mine = [r for r in recs if r["method"] == method]
        tuned = [r["best"]["score"] for r in mine
                 if r.get("phase_mode") in TUNED_MODES and r.get("best")]
        seeds = [_value(r["best"]["score"], higher) for r in mine
                 if r.get("phase_mode") == "seeds" and r.get("best")]
        rows.append({
            "method": method, "metric": metric,
            "best": _value(max(tuned), higher) if tuned else None,
            "settings": sum(r.get("phase_mode") in TUNED_MODES for r in mine),
            "seeds_mean": float(np.mean(seeds)) if seeds else None,
            "seeds_std": float(np.std(seeds, ddof=1)) if len(seeds) > 1 else None,
            "seeds_n": len(seeds),
            "diverged": sum(r["status"] == "diverged" for r in mine),
            "device_hours": float(sum(r.get("device_hours", 0.0) for r in mine)),
        })
    return rows


def _method_order(recs):
    order = {}
    for r in recs:
        order.setdefault(r["method"], len(order))
    return lambda m: order[m]


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def _table_md(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    metric = rows[0]["metric"] if rows else "metric"
    lines = [f"| method | best {metric} (tuned/shared) | {metric} over seeds, mean ± std (n) "
             "| settings | diverged | device-hours |", "|---|---|---|---|---|---|"]
    for row in rows:
        seeds = ("—" if row["seeds_mean"] is None else
                 f"{_fmt(row['seeds_mean'])} ± {_fmt(row['seeds_std'])} ({row['seeds_n']})")
        lines.append(f"| {row['method']} | {_fmt(row['best'])} | {seeds} | {row['settings']} | "
                     f"{row['diverged']} | {row['device_hours']:.3f} |")
    return lines


def _tuned_scores(recs) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in recs:
        if r.get("phase_mode") in TUNED_MODES:
            score = (r.get("best") or {}).get("score")
            # a diverged trial without any evaluation still took a place in the budget
            out.setdefault(r["method"], []).append(-np.inf if score is None else score)
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_budget(recs, path: str, title: str) -> str | None:
    """The paper's figure: best-of-k vs k with 95 % bootstrap bands, one line per method."""
    metric, higher = _direction(recs)
    scores = _tuned_scores(recs)
    if not scores:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for method, s in scores.items():
        finite = np.where(np.isfinite(s), s, np.nanmin(np.where(np.isfinite(s), s, np.nan)))
        if not np.all(np.isfinite(finite)):
            continue
        ks = np.arange(1, len(s) + 1)
        mean, low, high = stats.best_of_k_curve(finite, ks)
        sign = 1.0 if higher else -1.0
        ax.plot(ks, sign * mean, label=method)
        ax.fill_between(ks, sign * low, sign * high, alpha=0.15)
    ax.set_xlabel("budget: number of hyperparameter settings tried (k)")
    ax.set_ylabel(f"{'max' if higher else 'min'} {metric} over k settings")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_distribution(recs, path: str, title: str) -> str | None:
    """The main metric of every tuned setting, per method (box plot)."""
    metric, higher = _direction(recs)
    scores = {m: [_value(v, higher) for v in s if np.isfinite(v)]
              for m, s in _tuned_scores(recs).items()}
    scores = {m: v for m, v in scores.items() if v}
    if not scores:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(scores)), 4), dpi=110)
    ax.boxplot(list(scores.values()))
    ax.set_xticks(range(1, len(scores) + 1), list(scores), rotation=45, fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_precision_recall(recs, path: str, title: str) -> str | None:
    points = [(r["method"], r["best"]["precision"], r["best"]["recall"]) for r in recs
              if r.get("best") and "precision" in r["best"] and "recall" in r["best"]]
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    for method in dict.fromkeys(p[0] for p in points):
        xs = [(p[1], p[2]) for p in points if p[0] == method]
        ax.scatter([x[1] for x in xs], [x[0] for x in xs], s=12, label=method)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def pairwise(recs, k: int | None = None) -> list[dict[str, Any]]:
    """Bootstrap 95 % intervals of E[best of k](A) − E[best of k](B) for every pair of methods
    (k defaults to the smallest number of settings any method has); none when some method has
    fewer than 2 settings (a bootstrap of one value has zero width and would claim significance)."""
    metric, higher = _direction(recs)
    scores = {m: [v for v in s if np.isfinite(v)] for m, s in _tuned_scores(recs).items()}
    scores = {m: v for m, v in scores.items() if v}
    if len(scores) < 2 or min(len(v) for v in scores.values()) < 2:
        return []  # one setting per method: nothing to resample, no interval to report
    k = k or min(len(v) for v in scores.values())
    rows = []
    for a, b in itertools.combinations(scores, 2):
        diff, low, high = stats.difference_ci(scores[a], scores[b], k)
        if not higher:
            diff, low, high = -diff, -high, -low
        rows.append({"a": a, "b": b, "k": k, "diff": diff, "low": low, "high": high,
                     "significant": bool(low > 0 or high < 0)})
    return rows


def build(dirs: Sequence[str], out_dir: str) -> str:
    """Writes `out_dir/report.md` and its plots from the records under `dirs`; returns its path."""
    recs = records_lib.load(dirs)
    os.makedirs(out_dir, exist_ok=True)
    lines = ["# Loss comparison report", "",
             f"{len(recs)} trials from {', '.join(dirs)}. Every number below is recomputed from "
             "the `results-*.jsonl` records alone. Best values are the best checkpoint of each "
             "trial by the study's main metric; `best (tuned/shared)` is the best over the "
             "settings of the tuned or shared phases, the seeds column the spread of the best "
             "setting over fresh seeds.", ""]
    for study in dict.fromkeys(r["study"] for r in recs):
        mine = [r for r in recs if r["study"] == study]
        dataset = mine[0]["dataset"]
        metric, higher = _direction(mine)
        lines += [f"## {study} ({dataset}; main metric: {metric}, "
                  f"{'higher' if higher else 'lower'} is better)", ""]
        lines += _table_md(study_table(mine)) + [""]
        for name, fn, caption in (
            ("budget", plot_budget, f"best {metric} vs budget (bootstrap mean, 95 % band)"),
            ("distribution", plot_distribution, f"{metric} over all tuned settings"),
            ("precision_recall", plot_precision_recall, "precision vs recall (best checkpoints)"),
        ):
            path = fn(mine, os.path.join(out_dir, f"{study}_{name}.png"), f"{study}: {caption}")
            if path:
                lines += [f"![{caption}]({os.path.basename(path)})", ""]
        pairs = pairwise(mine)
        if pairs:
            lines += [f"Pairwise: E[best of k={pairs[0]['k']}] difference (A − B in {metric}), "
                      "95 % bootstrap interval; * = interval excludes 0.", "",
                      "| A | B | difference | 95 % interval | |", "|---|---|---|---|---|"]
            lines += [f"| {p['a']} | {p['b']} | {_fmt(p['diff'])} | [{_fmt(p['low'])}, "
                      f"{_fmt(p['high'])}] | {'*' if p['significant'] else ''} |" for p in pairs]
            lines.append("")
        elif len({r["method"] for r in mine}) > 1:
            lines += ["Pairwise intervals need at least 2 settings per method; this study has "
                      "fewer, so its differences are not tested for significance.", ""]
        lines += _sample_section(mine, out_dir, study)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _sample_section(recs, out_dir: str, study: str) -> list[str]:
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

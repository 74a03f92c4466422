"""The figures of a loss comparison, from trial records, as PNG files: best-of-k vs budget, the
distribution of the main metric over settings, precision vs recall."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gancmp.report import records as records_lib
from gancmp.report import stats


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_budget(recs: Sequence[Mapping[str, Any]], path: str, title: str) -> str | None:
    """The paper's figure: best-of-k vs k with 95 % bootstrap bands, one line per method."""
    metric, higher = records_lib.direction(recs)
    scores = records_lib.tuned_scores(recs)
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


def plot_distribution(recs: Sequence[Mapping[str, Any]], path: str, title: str) -> str | None:
    """The main metric of every tuned setting, per method (box plot)."""
    metric, higher = records_lib.direction(recs)
    scores = {m: [records_lib.metric_value(v, higher) for v in s if np.isfinite(v)]
              for m, s in records_lib.tuned_scores(recs).items()}
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


def plot_precision_recall(recs: Sequence[Mapping[str, Any]], path: str,
                          title: str) -> str | None:
    """Precision vs recall of every trial's best checkpoint, where the records carry both."""
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

"""The figures of a loss comparison, from trial records, as PNG files: best-of-k vs budget, the
distribution of the main metric over settings, precision vs recall.

Readable at a dozen methods: the budget and precision/recall figures are small multiples (one
panel per method, on shared axes, with the reference method or the other methods in grey behind
it), so no figure needs more than one colour per panel; colours are Okabe–Ito's (distinguishable
under the common colour-vision deficiencies); budgets are whole numbers of settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from gancmp import records, storage
from gancmp.records import Record
from gancmp.report import stats, views

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BLUE = "#0072B2"  # Okabe–Ito blue: the method a panel is about
GREY = "#6E6E6E"  # the reference method
LIGHT = "#D0D0D0"  # everything else, in the background
COLUMNS = 4  # panels per row of a small-multiples figure
MIN_BOX = 5  # settings a method needs before its quartiles are drawn as a box


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, title: str, panel: tuple[float, float] = (2.5, 2.0)) -> tuple[Figure, list]:
    """A figure of n panels on shared axes, COLUMNS to a row; unused cells hidden. Returns
    (fig, axes [n])."""
    plt = _plt()
    cols = min(COLUMNS, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, sharex=True, sharey=True, squeeze=False, dpi=110,
                             figsize=(panel[0] * cols + 0.6, panel[1] * rows + 0.9))
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    for ax in flat[:n]:
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, linewidth=0.5)
    for ax in flat[max(0, n - cols):n]:
        ax.xaxis.set_tick_params(labelbottom=True)  # the last panel of a column shows its axis
    fig.suptitle(title, fontsize=9)
    return fig, flat[:n]


def _save(fig: Figure | None, path: str) -> str | None:
    if fig is None:
        return None
    with storage.open_atomic(path) as f:
        fig.savefig(f, format="png")
    _plt().close(fig)
    return path


def _better(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


def budget_curves(recs: Sequence[Record]
                  ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per method of the one search phase of `recs`, (k [n], mean [n], low [n], high [n]) of its
    best-of-k curve in the metric's units, k = 1..n settings (`stats.best_of_k_curve`: the
    unbiased E[best of k] and the middle 95 % of the best of k settings drawn from those tried,
    a spread, not a confidence interval). Unscored settings count as the phase's worst
    (`views.tuned_scores`, the rule of every statistic)."""
    _, higher = records.direction(recs)
    out = {}
    for method, s in views.tuned_scores(recs).items():
        ks = np.arange(1, len(s) + 1)
        mean, low, high = stats.best_of_k_curve(s, ks)
        # in scores, then in the metric's units (`records.score` again)
        low, high = records.score(low, higher), records.score(high, higher)
        out[method] = (ks, records.score(mean, higher), np.minimum(low, high),
                       np.maximum(low, high))
    return out


def plot_budget(recs: Sequence[Record], path: str, title: str,
                reference: str | None = None) -> str | None:
    """Saves `budget_figure` as the PNG `path`; returns it (None: no figure)."""
    return _save(budget_figure(recs, title, reference), path)


def budget_figure(recs: Sequence[Record], title: str,
                  reference: str | None = None) -> Figure | None:
    """The paper's figure as small multiples: per method, the expected best metric over k
    settings drawn at random vs k, with the band where 95 % of the best of k settings drawn from
    those tried fall (a spread, not a confidence interval), and the reference method in grey
    in every panel. None when no method has two settings (a budget of one is the
    distribution figure)."""
    metric, higher = records.direction(recs)
    curves = budget_curves(recs)
    if not curves or max(len(c[0]) for c in curves.values()) < 2:
        return None
    from matplotlib.ticker import MaxNLocator

    fig, axes = _grid(len(curves), title)
    ref = curves.get(reference) if reference else None
    for ax, (method, (ks, mean, low, high)) in zip(axes, curves.items(), strict=True):
        if ref is not None and method != reference:
            ax.fill_between(ref[0], ref[2], ref[3], color=GREY, alpha=0.18, linewidth=0)
            ax.plot(ref[0], ref[1], color=GREY, linewidth=1.2, marker=".", markersize=3)
        color = GREY if method == reference else BLUE
        ax.fill_between(ks, low, high, color=color, alpha=0.25, linewidth=0)
        ax.plot(ks, mean, color=color, linewidth=1.8, marker="o", markersize=3)
        ax.set_title(method + (" (reference)" if method == reference else ""), fontsize=8,
                     fontweight="bold" if method == reference else "normal")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    # one label for all rows: a label per row would run into the next row's
    fig.supylabel(f"{'max' if higher else 'min'} {metric} ({_better(higher)})", fontsize=8)
    fig.supxlabel("k: hyperparameter settings tried", fontsize=8)
    key = f"blue: the panel's method; grey: {reference}, the reference" if ref is not None else ""
    fig.suptitle(f"{title}\n{key}".strip(), fontsize=9)
    fig.tight_layout()
    return fig


def plot_distribution(recs: Sequence[Record], path: str, title: str,
                      reference: str | None = None) -> str | None:
    """Saves `distribution_figure` as the PNG `path`; returns it (None: no figure)."""
    return _save(distribution_figure(recs, title, reference), path)


def distribution_figure(recs: Sequence[Record], title: str,
                        reference: str | None = None) -> Figure | None:
    """The main metric of every tuned setting, one row per method (best median on top): each
    dot one setting, a bar its median, and from MIN_BOX settings on a box of its quartiles
    with whiskers to 1.5 IQR; the reference's dots in grey.
    Settings that diverged unscored are drawn at the phase's worst value (`views.tuned_scores`,
    the rule of every statistic) and counted in the row's label."""
    metric, higher = records.direction(recs)
    missing = views.unscored(recs)
    scored = {m: ([records.score(v, higher) for v in s], missing.get(m, 0))
              for m, s in views.tuned_scores(recs).items()}
    if not scored:
        return None
    sign = 1.0 if higher else -1.0
    order = sorted(scored, key=lambda m: -sign * float(np.median(scored[m][0])))  # best first
    fig, ax = _plt().subplots(figsize=(6.4, 0.34 * len(order) + 1.3), dpi=110)
    rng = np.random.default_rng(0)  # the same jitter for the same records
    for row, method in enumerate(order):
        values = scored[method][0]
        y = len(order) - row  # best on top
        color = GREY if method == reference else BLUE
        if len(values) >= MIN_BOX:
            ax.boxplot([values], positions=[y], orientation="horizontal", widths=0.6,
                       showfliers=False, medianprops={"color": "black"},
                       boxprops={"color": "#555555"}, whiskerprops={"color": "#555555"},
                       capprops={"color": "#555555"})
        else:
            median = float(np.median(values))
            ax.plot([median, median], [y - 0.3, y + 0.3], color="black", linewidth=1.2)
        ax.scatter(values, y + rng.uniform(-0.18, 0.18, len(values)), color=color, alpha=0.8,
                   s=10 if len(values) >= MIN_BOX else 22, zorder=3, linewidths=0)
    labels = [m + (f" ({scored[m][1]} unscored: at the worst)" if scored[m][1] else "")
              for m in order]
    ax.set_yticks(range(len(order), 0, -1), labels, fontsize=7)
    for tick, method in zip(ax.get_yticklabels(), order, strict=True):
        if method == reference:
            tick.set_fontweight("bold")
    ax.set_ylim(0.4, len(order) + 0.6)
    ax.set_xlabel(f"{metric} of each setting's best checkpoint ({_better(higher)})", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3, linewidth=0.5)
    ax.set_title(f"{title}\nrows by median (black bar), best on top", fontsize=9)
    fig.tight_layout()
    return fig


def plot_precision_recall(recs: Sequence[Record], path: str, title: str,
                          reference: str | None = None) -> str | None:
    """Saves `precision_recall_figure` as the PNG `path`; returns it (None: no figure)."""
    return _save(precision_recall_figure(recs, title, reference), path)


def precision_recall_figure(recs: Sequence[Record], title: str,
                            reference: str | None = None) -> Figure | None:
    """Precision vs recall of every trial's best checkpoint, where the records carry both, as
    small multiples: per method, its trials in blue over every other trial in light grey (the
    reference's panel titled in bold)."""
    points = [(r.method, r.best["recall"], r.best["precision"]) for r in recs
              if r.best and "precision" in r.best and "recall" in r.best]
    if not points:
        return None
    every = np.array([p[1:] for p in points], float)
    methods = list(dict.fromkeys(p[0] for p in points))
    fig, axes = _grid(len(methods), title, panel=(2.1, 2.1))
    for ax, method in zip(axes, methods, strict=True):
        mine = np.array([p[1:] for p in points if p[0] == method], float)
        ax.scatter(every[:, 0], every[:, 1], s=6, color=LIGHT, linewidths=0)
        ax.scatter(mine[:, 0], mine[:, 1], s=14 if len(mine) > 5 else 24, linewidths=0,
                   zorder=3, color=BLUE)
        ax.set_title(method + (" (reference)" if method == reference else ""), fontsize=8,
                     fontweight="bold" if method == reference else "normal")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks([0, 0.5, 1])
        ax.set_yticks([0, 0.5, 1])
        ax.set_aspect("equal")
    for ax in axes[::min(COLUMNS, len(axes))]:
        ax.set_ylabel("precision", fontsize=8)
    fig.supxlabel("recall (each dot: one trial's best checkpoint; grey: all other trials)",
                  fontsize=8)
    fig.tight_layout()
    return fig

"""The tables of a loss comparison, from trial records: the paper's table (best main metric over
the tuned settings, mean ± std over the seeds phase) and the pairwise differences between methods.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gancmp import records
from gancmp.records import Record
from gancmp.report import stats, views

ALPHA = 0.05  # family-wise error rate of a study's pairwise tests
REFERENCE = "NS_GAN"  # the method the others are read against, where a study has it


def study_table(recs: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per method of a study: best value over its tuned/shared trials, mean and std of
    the best values of its seeds-phase trials (without a seeds phase: of the seeds of its one
    tuned/shared setting, when it has one setting run with several seeds — nothing was selected,
    so they are the seeds of that setting), trial and divergence counts, device-hours. Values
    are the records' own (`Record.main_value`); the best is the one of the best score."""
    metric, _ = records.direction(recs)
    rows = []
    for method in views.methods(recs):
        mine = [r for r in recs if r.method == method]
        scored = [r for r in views.tuned(mine) if r.main_score is not None]
        seeds = [r.main_value for r in mine if r.phase_mode == "seeds" and r.best]
        if not seeds:
            seeds = _seeds_of_the_only_setting(mine)
        best = max(scored, key=lambda r: r.main_score, default=None)
        rows.append({
            "method": method, "metric": metric,
            "best": None if best is None else best.main_value,
            "settings": len({(r.phase, r.setting) for r in views.tuned(mine)}),
            "seeds_mean": float(np.mean(seeds)) if seeds else None,
            "seeds_std": float(np.std(seeds, ddof=1)) if len(seeds) > 1 else None,
            "seeds_n": len(seeds),
            "diverged": sum(r.status == "diverged" for r in mine),
            "device_hours": float(sum(r.device_hours or 0.0 for r in mine)),
        })
    return rows


def _seeds_of_the_only_setting(mine: Sequence[Record]) -> list[float]:
    """The best values of a method's tuned/shared trials when they are one setting (one phase
    and setting index) run with two or more seeds; else []."""
    tuned = [r for r in views.tuned(mine) if r.best]
    settings = {(r.phase, r.setting) for r in tuned}
    if len(settings) != 1 or len({r.seed for r in tuned}) < 2:
        return []
    return [r.main_value for r in tuned]


def fmt(x: float | None, digits: int = 3) -> str:
    """`x` with `digits` significant digits; an em dash for None."""
    return "—" if x is None else f"{x:.{digits}g}"


def table_md(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The markdown lines of `study_table`'s rows."""
    metric = rows[0]["metric"] if rows else "metric"
    lines = [f"| method | best {metric} (tuned/shared) | {metric} over seeds, mean ± std (n) "
             "| settings | diverged | device-hours |", "|---|---|---|---|---|---|"]
    for row in rows:
        seeds = ("—" if row["seeds_mean"] is None else
                 f"{fmt(row['seeds_mean'])} ± {fmt(row['seeds_std'])} ({row['seeds_n']})")
        lines.append(f"| {row['method']} | {fmt(row['best'])} | {seeds} | {row['settings']} | "
                     f"{row['diverged']} | {row['device_hours']:.3f} |")
    return lines


def pairwise(recs: Sequence[Record], k: int | None = None,
             num_resamples: int = stats.NUM_RESAMPLES,
             num_permutations: int = stats.NUM_PERMUTATIONS, alpha: float = ALPHA,
             seed: int = 0) -> list[dict[str, Any]]:
    """Every pair (A, B) of a study's methods, compared on the scores of their tuned/shared
    settings (k defaults to the smallest number of settings any method has). Per row:
      diff, low, high: E[best of k](A) − E[best of k](B) in the metric's units and its 95 %
        bootstrap interval (`num_resamples`, unadjusted: the size of the difference);
      cliffs_delta: Cliff's delta of A's vs B's per-setting metric values (same sign as diff);
      p: two-sided permutation p-value of the difference (`stats.permutation_test`);
      p_min: the smallest p-value the test can give at these numbers of settings;
      p_holm: p after Holm's step-down adjustment over all pairs of the study;
      significant: p_holm ≤ alpha; better: the better method where significant, else None.
    Holm rather than Benjamini–Hochberg: a reader takes each "A beats B" as a claim, so the
    chance of even one false claim (the family-wise error) is kept ≤ alpha, and Holm does so
    for the dependent tests that pairs sharing a method are. None when some method has fewer
    than 2 settings (one value has no spread to tell a difference from)."""
    _, higher = records.direction(recs)
    scores = {m: [v for v in s if np.isfinite(v)]
              for m, s in views.tuned_scores(recs).items()}
    scores = {m: v for m, v in scores.items() if v}
    if len(scores) < 2 or min(len(v) for v in scores.values()) < 2:
        return []  # one setting per method: nothing to resample, no interval to report
    k = k or min(len(v) for v in scores.values())
    rows = []
    for a, b in itertools.combinations(scores, 2):
        # in scores (higher is better), then in the metric's units (`records.score` again)
        diff, low, high = (records.score(x, higher) for x in
                           stats.difference_ci(scores[a], scores[b], k, num_resamples, seed))
        rows.append({"a": a, "b": b, "k": k, "diff": diff, "low": min(low, high),
                     "high": max(low, high),
                     "cliffs_delta": records.score(stats.cliffs_delta(scores[a], scores[b]),
                                                   higher),
                     "p": stats.permutation_test(scores[a], scores[b], k, num_permutations,
                                                 seed),
                     "p_min": stats.smallest_p_value(len(scores[a]), len(scores[b]),
                                                     num_permutations)})
    for row, adjusted in zip(rows, stats.holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = float(adjusted)
        row["significant"] = bool(adjusted <= alpha)
        a_better = (row["diff"] > 0) == higher
        row["better"] = (row["a"] if a_better else row["b"]) if row["significant"] else None
    return rows


def pairwise_md(pairs: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    """The markdown lines of `pairwise`'s rows."""
    lines = ["| A | B | Δ = A − B | 95 % interval of Δ | Cliff's δ | p | Holm p | better |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p['a']} | {p['b']} | {fmt(p['diff'])} | [{fmt(p['low'])}, "
              f"{fmt(p['high'])}] | {p['cliffs_delta']:.2f} | {fmt(p['p'], 2)} | "
              f"{fmt(p['p_holm'], 2)} | {p['better'] + ' *' if p['better'] else ''} |"
              for p in pairs]
    return lines


def reference_method(methods: Sequence[str]) -> str:
    """The method the others are read against: NS_GAN (the paper's baseline) where the study
    has it, else its first method."""
    return REFERENCE if REFERENCE in methods else methods[0]


def _versus(pair: Mapping[str, Any], method: str) -> tuple[str, float, float, float]:
    """(other method, Δ, low, high) of a pairwise row, oriented as `method` − other."""
    if pair["a"] == method:
        return pair["b"], pair["diff"], pair["low"], pair["high"]
    return pair["a"], -pair["diff"], -pair["high"], -pair["low"]


def _delta(pair: Mapping[str, Any], method: str, metric: str) -> str:
    other, diff, low, high = _versus(pair, method)
    return f"{method} − {other} = {fmt(diff)} {metric}, 95 % interval [{fmt(low)}, {fmt(high)}]"


def summary(pairs: Sequence[Mapping[str, Any]], reference: str, metric: str,
            alpha: float = ALPHA) -> list[str]:
    """Plain-language conclusions of `pairwise`'s rows, as markdown lines: which methods are
    significantly better or worse than `reference` (with Δ and its interval), the orderings the
    Holm-adjusted tests support (or the largest difference, where none does), and a warning
    when the numbers of settings leave the tests no power. [] without pairs."""
    if not pairs:
        return []
    k, m = pairs[0]["k"], len(pairs)
    how = (f"Holm-adjusted permutation tests over the {m} pairs, α = {alpha:g}, "
           f"k = {k} settings")
    lines = [f"**Summary** ({how}):", ""]
    mine = [p for p in pairs if reference in (p["a"], p["b"])]
    better = [p for p in mine if p["better"] not in (None, reference)]
    worse = [p for p in mine if p["better"] == reference]
    if not mine:
        lines.append(f"- {reference} has no scored setting, so nothing is compared with it.")
    for word, found in (("better", better), ("worse", worse)) if mine else ():
        lines.append(f"- Significantly {word} than {reference}: " + "; ".join(
            _delta(p, _versus(p, reference)[0], metric) for p in found) + "." if found else
            f"- No method is significantly {word} than {reference}.")
    significant = [p for p in pairs if p["better"]]
    if significant:
        beaten: dict[str, list[str]] = {}
        for p in significant:
            beaten.setdefault(p["better"], []).append(p["b"] if p["better"] == p["a"] else p["a"])
        lines.append("- Orderings the data support (better ≻ worse): " + "; ".join(
            f"{winner} ≻ {', '.join(losers)}" for winner, losers in beaten.items()) + ".")
    else:
        largest = max(pairs, key=lambda p: abs(p["diff"]))
        lines.append("- No pair differs significantly, so the data support no ordering of these "
                     "losses (which is not evidence that they are equal). The largest "
                     f"difference, {_delta(largest, largest['a'], metric)} (unadjusted), is not "
                     "significant after the adjustment.")
    floor = min(p["p_min"] for p in pairs)
    if floor > alpha / m:
        lines.append(f"- No pair could have been significant: with these numbers of settings "
                     f"the permutation test cannot go below p = {fmt(floor, 2)}, above Holm's "
                     f"first threshold α/{m} = {fmt(alpha / m, 2)}. More settings per method "
                     "are needed to tell these losses apart.")
    return lines + [""]

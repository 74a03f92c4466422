"""The tables of a loss comparison, from trial records: the paper's table (best main metric over
the tuned settings, mean ± std over the seeds phase) and the pairwise differences between methods.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gancmp.report import records as records_lib
from gancmp.report import stats


def study_table(recs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per method of a study: best value over its tuned/shared trials, mean and std of
    the best values of its seeds-phase trials, trial and divergence counts, device-hours."""
    metric, higher = records_lib.direction(recs)
    rows = []
    for method in records_lib.methods(recs):
        mine = [r for r in recs if r["method"] == method]
        tuned = [r["best"]["score"] for r in mine
                 if r.get("phase_mode") in records_lib.TUNED_MODES and r.get("best")]
        seeds = [records_lib.metric_value(r["best"]["score"], higher) for r in mine
                 if r.get("phase_mode") == "seeds" and r.get("best")]
        rows.append({
            "method": method, "metric": metric,
            "best": records_lib.metric_value(max(tuned), higher) if tuned else None,
            "settings": sum(r.get("phase_mode") in records_lib.TUNED_MODES for r in mine),
            "seeds_mean": float(np.mean(seeds)) if seeds else None,
            "seeds_std": float(np.std(seeds, ddof=1)) if len(seeds) > 1 else None,
            "seeds_n": len(seeds),
            "diverged": sum(r["status"] == "diverged" for r in mine),
            "device_hours": float(sum(r.get("device_hours", 0.0) for r in mine)),
        })
    return rows


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


def pairwise(recs: Sequence[Mapping[str, Any]], k: int | None = None) -> list[dict[str, Any]]:
    """Bootstrap 95 % intervals of E[best of k](A) − E[best of k](B) for every pair of methods
    (k defaults to the smallest number of settings any method has); none when some method has
    fewer than 2 settings (a bootstrap of one value has zero width and would claim significance)."""
    metric, higher = records_lib.direction(recs)
    scores = {m: [v for v in s if np.isfinite(v)]
              for m, s in records_lib.tuned_scores(recs).items()}
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


def pairwise_md(pairs: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    """The markdown lines of `pairwise`'s rows."""
    lines = [f"Pairwise: E[best of k={pairs[0]['k']}] difference (A − B in {metric}), "
             "95 % bootstrap interval; * = interval excludes 0.", "",
             "| A | B | difference | 95 % interval | |", "|---|---|---|---|---|"]
    lines += [f"| {p['a']} | {p['b']} | {fmt(p['diff'])} | [{fmt(p['low'])}, "
              f"{fmt(p['high'])}] | {'*' if p['significant'] else ''} |" for p in pairs]
    return lines

"""The tables of a loss comparison, from trial records: the paper's table (best main metric over
the tuned settings, mean ± std over the seeds phase) and the pairwise differences between methods.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gancmp import records
from gancmp.records import Record
from gancmp.report import stats, views

ALPHA = 0.05  # family-wise error rate of a study's pairwise tests
REFERENCE = "NS_GAN"  # the method the others are read against, where a study has it


def study_table(recs: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per method of a study: per tuned/shared phase (each on its own, never pooled)
    the best value over its settings and their number (`best_by_phase`, `settings_by_phase`;
    `best` and `settings` are the first such phase's, the paper's wide phase), mean and std of
    the best values of its seeds-phase trials (without a seeds phase: of the seeds of its one
    tuned/shared setting, when it has one setting run with several seeds — nothing was
    selected, so they are the seeds of that setting), trial and divergence counts,
    device-hours. Values are the records' own (`Record.main_value`); the best is the one of
    the best score."""
    metric, _ = records.direction(recs)
    phases = views.competing_phases(recs)
    rows = []
    for method in views.methods(recs):
        mine = [r for r in recs if r.method == method]
        best, settings = {}, {}
        for phase in phases:
            tried = views.tuned(views.phase_records(mine, phase))
            top = max((r for r in tried if r.main_score is not None),
                      key=lambda r: r.main_score, default=None)
            best[phase] = None if top is None else top.main_value
            settings[phase] = len({r.setting for r in tried})
        seeds = [r.main_value for r in mine if r.phase_mode == "seeds" and r.best]
        if not seeds and len(phases) == 1:
            seeds = _seeds_of_the_only_setting(mine)
        first = phases[0] if phases else None
        rows.append({
            "method": method, "metric": metric, "phases": phases,
            "best": best.get(first), "settings": settings.get(first, 0),
            "best_by_phase": best, "settings_by_phase": settings,
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
    """The markdown lines of `study_table`'s rows: a best column per search phase."""
    metric = rows[0]["metric"] if rows else "metric"
    phases = rows[0]["phases"] if rows else []
    settings = "settings" + (f" ({' / '.join(phases)})" if len(phases) > 1 else "")
    lines = ["| method | " + "".join(f"best {metric} ({p}) | " for p in phases)
             + f"{metric} over seeds, mean ± std (n) | {settings} | diverged | device-hours |",
             "|---|" + "---|" * (len(phases) + 4)]
    for row in rows:
        seeds = ("—" if row["seeds_mean"] is None else
                 f"{fmt(row['seeds_mean'])} ± {fmt(row['seeds_std'])} ({row['seeds_n']})")
        best = "".join(f"{fmt(row['best_by_phase'][p])} | " for p in phases)
        count = " / ".join(str(row["settings_by_phase"][p]) for p in phases) or "0"
        lines.append(f"| {row['method']} | {best}{seeds} | {count} | {row['diverged']} | "
                     f"{row['device_hours']:.3f} |")
    return lines


def pairwise(recs: Sequence[Record], k: int | None = None,
             num_permutations: int = stats.NUM_PERMUTATIONS, alpha: float = ALPHA,
             seed: int = 0, margin: float | None = None) -> list[dict[str, Any]]:
    """Every pair (A, B) of the methods of one search phase (`recs` may hold one tuned/shared
    phase and any seeds phase; several search phases raise ValueError, never pooled), compared
    on the scores of its settings (`views.tuned_scores`: an unscored, diverged setting counts as
    the phase's worst) at k = `stats.default_k` of the fewest settings any method has. Per row:
      diff, low, high: E[best of k](A) − E[best of k](B) in the metric's units and its 95 %
        interval (`stats.difference_ci`: jackknife SE, Welch's t; unadjusted);
      cliffs_delta: Cliff's delta of A's vs B's per-setting values (same sign as diff);
      p: two-sided permutation p-value of Δ (`stats.permutation_test`): small when A's and B's
        settings are not exchangeable, i.e. not one distribution; it does not by itself test
        "A's E[best of k] is larger";
      p_min, p_holm_min: the smallest p-value the test can give at these numbers of settings,
        and the smallest Holm-adjusted one (m·p_min, m pairs: Holm's first step);
      detectable: the half-width of Δ's interval at Holm's first level α/m, roughly the
        smallest |Δ| these settings and this spread could tell from 0;
      p_holm: p after Holm's step-down adjustment over all pairs of the phase;
      significant: p_holm ≤ alpha; better: where significant, the method whose E[best of k] is
        the larger in this sample (the test says the distributions differ, Δ says which way);
      with a `margin` (metric units), p_equiv: TOST p of |Δ| ≥ margin
        (`stats.equivalence_test`), p_equiv_holm: Holm-adjusted over the pairs, equivalent:
        p_equiv_holm ≤ alpha ("A and B are equivalent within ±margin").
    Holm rather than Benjamini–Hochberg: each row is read as a claim of its own, so the chance
    of even one false claim is kept ≤ alpha, for the dependent tests that pairs sharing a
    method are. [] when some method has fewer than 2 settings."""
    _, higher = records.direction(recs)
    scores = views.tuned_scores(recs)
    if len(scores) < 2 or min(len(v) for v in scores.values()) < 2:
        return []  # one setting per method: no spread to tell a difference from
    k = k or stats.default_k(min(len(v) for v in scores.values()))
    m = math.comb(len(scores), 2)
    rows = []
    for a, b in itertools.combinations(scores, 2):
        row = _pair(scores[a], scores[b], k, higher, num_permutations, seed, alpha / m)
        if margin is not None:
            row["margin"] = margin
            row["p_equiv"] = stats.equivalence_test(scores[a], scores[b], k, margin)
        rows.append({"a": a, "b": b, **row, "p_holm_min": min(1.0, m * row["p_min"])})
    for row, adjusted in zip(rows, stats.holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = float(adjusted)
        row["significant"] = bool(adjusted <= alpha)
        a_better = (row["diff"] > 0) == higher
        row["better"] = (row["a"] if a_better else row["b"]) if row["significant"] else None
    if margin is not None:
        for row, adjusted in zip(rows, stats.holm([r["p_equiv"] for r in rows]), strict=True):
            row["p_equiv_holm"] = float(adjusted)
            row["equivalent"] = bool(adjusted <= alpha)
    return rows


def _pair(a: Sequence[float], b: Sequence[float], k: int, higher: bool,
          num_permutations: int, seed: int, first_level: float) -> dict[str, Any]:
    """The statistics of one pair of score lists, in the metric's units (`records.score` turns
    a statistic of scores back, as the flip is its own inverse)."""
    diff, low, high = (records.score(x, higher) for x in stats.difference_ci(a, b, k))
    return {"k": k, "diff": diff, "low": min(low, high), "high": max(low, high),
            "cliffs_delta": records.score(stats.cliffs_delta(a, b), higher),
            "p": stats.permutation_test(a, b, k, num_permutations, seed),
            "p_min": stats.smallest_p_value(len(a), len(b), num_permutations),
            "detectable": stats.detectable_difference(a, b, k, 1 - first_level)}


def pairwise_md(pairs: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    """The markdown lines of `pairwise`'s rows."""
    margin = pairs[0].get("margin") if pairs else None
    equiv = f" equivalent within ±{fmt(margin)} (Holm p) |" if margin is not None else ""
    lines = ["| A | B | Δ = A − B | 95 % interval of Δ | Cliff's δ | p | Holm p | smallest "
             "possible Holm p | ≈ smallest detectable \\|Δ\\| | settings differ; larger "
             "E[best of k] |" + equiv, "|---|" * 1 + "---|" * (9 + bool(equiv))]
    for p in pairs:
        line = (f"| {p['a']} | {p['b']} | {fmt(p['diff'])} | [{fmt(p['low'])}, "
                f"{fmt(p['high'])}] | {p['cliffs_delta']:.2f} | {fmt(p['p'], 2)} | "
                f"{fmt(p['p_holm'], 2)} | {fmt(p['p_holm_min'], 2)} | {fmt(p['detectable'])} | "
                f"{p['better'] + ' *' if p['better'] else ''} |")
        if equiv:
            line += (f" {'yes' if p['equivalent'] else 'no'} "
                     f"({fmt(p['p_equiv_holm'], 2)}) |")
        lines.append(line)
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
    """Plain-language conclusions of `pairwise`'s rows, as markdown lines, each worded as what its
    test shows: which methods' settings differ from `reference`'s (with Δ, its interval, and
    which way), the pairs whose settings differ, the pairs shown equivalent within the margin
    (or why none can be), and how small a p-value the pairs could reach. [] without pairs."""
    if not pairs:
        return []
    k, m = pairs[0]["k"], len(pairs)
    how = (f"Holm-adjusted permutation tests over the {m} pairs, α = {alpha:g}, "
           f"E[best of k] at k = {k}")
    lines = [f"**Summary** ({how}):", ""]
    mine = [p for p in pairs if reference in (p["a"], p["b"])]
    better = [p for p in mine if p["better"] not in (None, reference)]
    worse = [p for p in mine if p["better"] == reference]
    if not mine:
        lines.append(f"- {reference} has no scored setting, so nothing is compared with it.")
    for word, found in (("higher", better), ("lower", worse)) if mine else ():
        what = (f"settings are distributed differently from {reference}'s, with a {word} "
                f"E[best of {k}]")
        lines.append(f"- Methods whose {what}: " + "; ".join(
            _delta(p, _versus(p, reference)[0], metric) for p in found) + "." if found else
            f"- No method's {what}.")
    significant = [p for p in pairs if p["better"]]
    if significant:
        beaten: dict[str, list[str]] = {}
        for p in significant:
            beaten.setdefault(p["better"], []).append(p["b"] if p["better"] == p["a"] else p["a"])
        order = "; ".join(f"{winner} ≻ {', '.join(losers)}" for winner, losers in beaten.items())
        lines.append(f"- Pairs whose settings differ, the larger E[best of k] first: {order}. "
                     "The test rejects that the two methods' settings are one distribution; "
                     "which way they differ is the sample's Δ.")
    else:
        largest = max(pairs, key=lambda p: abs(p["diff"]))
        lines.append("- No pair's settings differ significantly, so the data support no ordering "
                     "of these losses (which is not evidence that they are equal). The largest "
                     f"difference, {_delta(largest, largest['a'], metric)} (unadjusted), is not "
                     "significant after the adjustment.")
    return lines + _equivalence_lines(pairs, metric, alpha) + _power_lines(pairs, alpha) + [""]


def _equivalence_lines(pairs: Sequence[Mapping[str, Any]], metric: str,
                       alpha: float) -> list[str]:
    margin = pairs[0].get("margin")
    if margin is None:
        return [f"- No equivalence margin is set for {metric} (the study config's "
                "`equivalence_margins`), so no pair can be called equivalent: \"no difference "
                "found\" is not \"equal\"."]
    within = f"within ±{fmt(margin)} {metric} in E[best of {pairs[0]['k']}]"
    found = [f"{p['a']} ≈ {p['b']} (Holm p {fmt(p['p_equiv_holm'], 2)})"
             for p in pairs if p["equivalent"]]
    how = f"two one-sided tests at α = {alpha:g}, Holm-adjusted over the {len(pairs)} pairs"
    if found:
        return [f"- Equivalent {within} ({how}): " + "; ".join(found) + "."]
    return [f"- No pair is shown equivalent {within} ({how})."]


def _power_lines(pairs: Sequence[Mapping[str, Any]], alpha: float) -> list[str]:
    m = len(pairs)
    floor = min(p["p_min"] for p in pairs)
    lines = [f"- Power: the smallest Holm-adjusted p any pair could reach is "
             f"{fmt(min(p['p_holm_min'] for p in pairs), 2)} (α = {alpha:g}); per pair, the "
             "table gives it and roughly the smallest |Δ| it could detect."]
    if floor > alpha / m:
        lines.append(f"- No pair could have been significant: with these numbers of settings "
                     f"the permutation test cannot go below p = {fmt(floor, 2)}, above Holm's "
                     f"first threshold α/{m} = {fmt(alpha / m, 2)}. More settings per method "
                     "are needed to tell these losses apart.")
    return lines

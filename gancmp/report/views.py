"""The views of a study's records that the tables and figures share: its methods, its sweeps'
names, the scores of each method's competing settings. The records themselves, their direction
and their score are `gancmp.records`'.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gancmp.records import Record

TUNED_MODES = ("tuned", "shared")  # phases whose settings compete; "seeds" re-runs the best


def sweep_names(recs: Sequence[Record]) -> list[str]:
    """The sweep names the records carry (field `sweep`), in the order they first appear."""
    return list(dict.fromkeys(r.sweep for r in recs if r.sweep))


def methods(recs: Sequence[Record]) -> list[str]:
    """The methods of `recs`, in the order they first appear."""
    return list(dict.fromkeys(r.method for r in recs))


def competing_phases(recs: Sequence[Record]) -> list[str]:
    """The names of the tuned and shared phases (whose settings compete), in the order they
    first appear. The report treats each on its own: the paper's wide phase is a search of its
    own, its narrow ranges were set after looking at the wide phase, and a pool of the two would
    be neither (compare_gan v1 selects from the wide phase alone)."""
    return list(dict.fromkeys(r.phase for r in recs if r.phase_mode in TUNED_MODES))


def phase_records(recs: Sequence[Record], phase: str) -> list[Record]:
    """The records of one phase, in record order."""
    return [r for r in recs if r.phase == phase]


def tuned(recs: Sequence[Record]) -> list[Record]:
    """The records of the one tuned or shared phase of `recs` (whose settings compete), in record
    order. ValueError when `recs` hold several such phases: every statistic is of one search
    phase (`phase_records`), never of a pool."""
    phases = competing_phases(recs)
    if len(phases) > 1:
        raise ValueError(f"records of the search phases {', '.join(phases)}: statistics are of "
                         "one phase at a time (views.phase_records), never of a pool")
    return [r for r in recs if r.phase_mode in TUNED_MODES]


def tuned_scores(recs: Sequence[Record]) -> dict[str, list[float]]:
    """Per method, the score (`Record.main_score`: higher is better) of each setting of the one
    tuned/shared phase of `recs`, in record order, with the one rule for diverged settings that
    every statistic of the report uses: a trial without any score (it diverged before its first
    evaluation) counts as the worst score any method's setting reached in that phase (the
    phase's floor; compare_gan v1 likewise gave a diverged run a fixed worst FID). So it took a
    place in the budget and loses to every scored setting, in the best-of-k curves, the
    intervals, the permutation, equivalence and Cliff's δ alike. A trial that diverged after a
    scored checkpoint keeps that score (the best checkpoint, as the paper). With no score in
    the phase at all, {}."""
    scores = [(r.method, r.main_score) for r in tuned(recs)]
    finite = [s for _, s in scores if s is not None and np.isfinite(s)]
    if not finite:
        return {}
    floor = min(finite)
    out: dict[str, list[float]] = {}
    for method, score in scores:
        out.setdefault(method, []).append(floor if score is None or not np.isfinite(score)
                                          else score)
    return out


def unscored(recs: Sequence[Record]) -> dict[str, int]:
    """Per method, the settings of the one tuned/shared phase of `recs` without a score (they
    count as the phase's floor in `tuned_scores`)."""
    out: dict[str, int] = {}
    for r in tuned(recs):
        out[r.method] = out.get(r.method, 0) + (r.main_score is None)
    return out

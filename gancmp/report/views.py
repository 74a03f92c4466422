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


def tuned(recs: Sequence[Record]) -> list[Record]:
    """The records of the tuned and shared phases (whose settings compete), in record order."""
    return [r for r in recs if r.phase_mode in TUNED_MODES]


def tuned_scores(recs: Sequence[Record]) -> dict[str, list[float]]:
    """Per method, the score (`Record.main_score`: higher is better) of each tuned/shared
    setting, in record order; −inf for a diverged trial without any evaluation (it still took a
    place in the budget)."""
    out: dict[str, list[float]] = {}
    for r in tuned(recs):
        score = r.main_score
        out.setdefault(r.method, []).append(-np.inf if score is None else score)
    return out

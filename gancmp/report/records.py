"""Trial records from one or many sweep directories, merged and checked for comparability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gancmp.sweep import store

TUNED_MODES = ("tuned", "shared")  # phases whose settings compete; "seeds" re-runs the best


class MixedSetupError(ValueError):
    """Records of one dataset were measured with different metric setups."""


def load(dirs: Sequence[str]) -> list[dict[str, Any]]:
    """All records under `dirs` (every `results-*.jsonl`), one per trial id (the first finished
    one wins over a diverged one; exact duplicates from re-merged copies are dropped). Refuses to
    mix records of one dataset whose metric setups differ."""
    paths = [p for d in dirs for p in store.result_files(d)]
    if not paths:
        raise FileNotFoundError(f"no results-*.jsonl under {', '.join(dirs)}")
    records, _ = store.read(paths)
    by_id: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["trial_id"] not in by_id or by_id[r["trial_id"]]["status"] != "finished":
            by_id[r["trial_id"]] = r
    merged = list(by_id.values())
    check_setups(merged)
    return merged


def check_setups(records: Sequence[Mapping[str, Any]]) -> None:
    seen: dict[str, tuple[Any, str]] = {}
    for r in records:
        key = f"{r['study']}:{r['dataset']}"
        setup = r.get("metric_setup")
        if key in seen and seen[key][0] != setup:
            raise MixedSetupError(
                f"study {r['study']} ({r['dataset']}): trial {r['trial_id']} was measured with "
                f"{setup}, trial {seen[key][1]} with {seen[key][0]}; merge only records with "
                "one metric setup")
        seen.setdefault(key, (setup, r["trial_id"]))


def direction(recs: Sequence[Mapping[str, Any]]) -> tuple[str, bool]:
    """(main metric, higher is better) of a study's records."""
    for r in recs:
        best = r.get("best") or {}
        if "score" in best:
            return best["metric"], best["value"] == best["score"]
    return recs[0].get("metric", "metric"), True


def methods(recs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The methods of `recs`, in the order they first appear."""
    return list(dict.fromkeys(r["method"] for r in recs))


def metric_value(score: float, higher_is_better: bool) -> float:
    """The metric's own value of a score (scores are oriented so that higher is better)."""
    return score if higher_is_better else -score


def tuned_scores(recs: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per method, the score (higher is better) of each tuned/shared setting, in record order;
    −inf for a diverged trial without any evaluation (it still took a place in the budget)."""
    out: dict[str, list[float]] = {}
    for r in recs:
        if r.get("phase_mode") in TUNED_MODES:
            score = (r.get("best") or {}).get("score")
            out.setdefault(r["method"], []).append(-np.inf if score is None else score)
    return out

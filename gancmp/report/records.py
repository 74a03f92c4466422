"""Trial records from one or many sweep directories, merged and checked for comparability, and
the views of them that the tables and figures share (scores per method, the metric's direction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gancmp.sweep import store

TUNED_MODES = ("tuned", "shared")  # phases whose settings compete; "seeds" re-runs the best

# Directions of the metrics gancmp has recorded, for records written before each record carried
# its own `higher_is_better`.
KNOWN_DIRECTIONS = {"fid": False, "kid": False, "modes_covered": True, "f1": True,
                    "precision": True, "recall": True, "inception_score": True}


class MixedSetupError(ValueError):
    """Records that cannot be compared as one study: different metric setups, main metrics or
    directions, or a main metric whose direction is neither recorded nor known. One line, for
    the command line."""


def load(dirs: Sequence[str]) -> list[dict[str, Any]]:
    """All records under `dirs` (every `results-*.jsonl`), each trial counted once: a trial id
    recorded more than once (a re-run, copies of a sweep merged twice) keeps its last record,
    reading the directories in the order given and each one's shards in order. Refuses to mix
    records of one dataset whose metric setups differ, and records of one study whose main metric
    or its direction differ."""
    paths = [p for d in dirs for p in store.result_files(d)]
    if not paths:
        raise FileNotFoundError(f"no results-*.jsonl under {', '.join(dirs)}")
    by_id: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for path in paths:
        records, _ = store.read([path])
        for r in records:
            record_direction(r, path)
            by_id[r["trial_id"]] = r
            sources[r["trial_id"]] = path
    merged = list(by_id.values())
    check_setups(merged)
    for study in dict.fromkeys(r["study"] for r in merged):
        direction([r for r in merged if r["study"] == study], sources)
    return merged


def check_setups(records: Sequence[Mapping[str, Any]]) -> None:
    """Raises MixedSetupError when records of one study and dataset differ in `metric_setup`,
    or in the arithmetic they were trained with (`precision`)."""
    seen: dict[str, tuple[Any, str]] = {}
    trained: dict[str, tuple[Any, str]] = {}
    for r in records:
        key = f"{r['study']}:{r['dataset']}"
        setup = r.get("metric_setup")
        if key in seen and seen[key][0] != setup:
            raise MixedSetupError(
                f"study {r['study']} ({r['dataset']}): trial {r['trial_id']} was measured with "
                f"{setup}, trial {seen[key][1]} with {seen[key][0]}; merge only records with "
                "one metric setup")
        seen.setdefault(key, (setup, r["trial_id"]))
        arithmetic = precision(r)
        if key in trained and trained[key][0] != arithmetic:
            raise MixedSetupError(
                f"study {r['study']} ({r['dataset']}): trial {r['trial_id']} was trained with "
                f"{_arithmetic(arithmetic)}, trial {trained[key][1]} with "
                f"{_arithmetic(trained[key][0])}; merge only records of one precision")
        trained.setdefault(key, (arithmetic, r["trial_id"]))


# What a backend computed before records carried their precision: XLA's defaults (TPU: one bf16
# pass; GPU: TF32; CPU: float32), with G and D in float32.
_UNRECORDED = {"cpu": "float32", "tpu": "bfloat16", "gpu": "tensorfloat32",
               "cuda": "tensorfloat32", "rocm": "tensorfloat32"}


def precision(r: Mapping[str, Any]) -> dict[str, Any]:
    """{"matmul_precision", "compute_dtype"} a record was trained with: its own fields, or, for a
    record written before they existed, what its backend (`provenance.backend`) computed then;
    None for a value that cannot be told."""
    if r.get("matmul_precision") is not None:
        return {"matmul_precision": r["matmul_precision"],
                "compute_dtype": r.get("compute_dtype", "float32")}
    backend = (r.get("provenance") or {}).get("backend")
    return {"matmul_precision": _UNRECORDED.get(backend), "compute_dtype": "float32"}


def _arithmetic(p: Mapping[str, Any]) -> str:
    matmul = p["matmul_precision"] or "unrecorded"
    return f"matmul_precision={matmul}, compute_dtype={p['compute_dtype']}"


def record_direction(r: Mapping[str, Any], source: str | None = None) -> tuple[str, bool] | None:
    """(main metric, higher is better) of one record, None when it names no metric (an old
    record of a trial that never got evaluated). The direction is the record's own
    `higher_is_better`; records written before it existed fall back to KNOWN_DIRECTIONS. Raises
    MixedSetupError naming `source` (the record's file) and the trial otherwise."""
    where = f"trial {r.get('trial_id', '?')}"
    where = f"{source}: {where}" if source else where
    metric = r.get("metric")
    best_metric = (r.get("best") or {}).get("metric")
    if metric and best_metric and metric != best_metric:
        raise MixedSetupError(f"{where}: metric is {metric!r} but its best checkpoint was "
                              f"ranked by {best_metric!r}")
    metric = metric or best_metric
    if not metric:
        return None
    higher = r.get("higher_is_better")
    if higher is None:
        if metric not in KNOWN_DIRECTIONS:
            raise MixedSetupError(
                f"{where}: metric {metric!r} has no higher_is_better and its direction is not "
                f"known (known: {', '.join(sorted(KNOWN_DIRECTIONS))}); add "
                "\"higher_is_better\": true or false to its records")
        return metric, KNOWN_DIRECTIONS[metric]
    if not isinstance(higher, bool):
        raise MixedSetupError(f"{where}: higher_is_better must be true or false, got {higher!r}")
    return metric, higher


def direction(recs: Sequence[Mapping[str, Any]],
              sources: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(main metric, higher is better) shared by a study's records (see `record_direction`).
    Raises MixedSetupError when two records disagree on either (naming both trials and, given
    `sources` = trial id -> file, their files) or when no record names its metric."""
    sources = sources or {}
    first: tuple[tuple[str, bool], Mapping[str, Any]] | None = None
    for r in recs:
        d = record_direction(r, sources.get(r.get("trial_id", "")))
        if d is None:
            continue
        if first is None:
            first = (d, r)
        elif d != first[0]:
            (metric, higher), other = first
            raise MixedSetupError(
                f"study {r.get('study', '?')}: trial {r.get('trial_id', '?')}{_in(sources, r)} "
                f"ranks by {_said(*d)}, trial {other.get('trial_id', '?')}{_in(sources, other)} by "
                f"{_said(metric, higher)}; merge only records of one main metric and direction")
    if first is None:
        study = recs[0].get("study", "?") if recs else "?"
        raise MixedSetupError(f"study {study}: no record names its main metric (field "
                              "\"metric\"), so the report cannot tell better from worse")
    return first[0]


def _said(metric: str, higher: bool) -> str:
    return f"{metric} ({'higher' if higher else 'lower'} is better)"


def _in(sources: Mapping[str, str], r: Mapping[str, Any]) -> str:
    path = sources.get(r.get("trial_id", ""))
    return f" ({path})" if path else ""


def sweep_names(recs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The sweep names the records carry (field "sweep"), in the order they first appear."""
    return list(dict.fromkeys(r["sweep"] for r in recs if r.get("sweep")))


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

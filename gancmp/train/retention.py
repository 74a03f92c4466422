"""Which checkpoints of a group stay in its directory once they are scored (a sweep's
`keep_checkpoints`): "latest_and_best" (the default) keeps the latest checkpoint (a resume starts
from it) and, for each trial of the group, its best-scored one (`best`, and `best_ema` with a
generator EMA: what `gancmp sample` and `gancmp.load_generator(..., step=record.best.step)`
draw from), and every checkpoint not scored yet (a resumed run scores it first); every other
checkpoint is deleted as soon as a newer evaluation supersedes it. "all" keeps every checkpoint.

A group checkpoint holds the stacked state of its K trials, so a trial's best keeps the whole
group checkpoint of that step: at the end a group keeps at most min(checkpoints, 1 + K) of them
(fewer when trials share their best step). A trial config's `keep_checkpoints` (orbax's cap on
the latest N) still applies on top, and deletes the oldest whatever their scores.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from gancmp.config import ConfigError

POLICIES = ("latest_and_best", "all")
DEFAULT = "latest_and_best"


def policy(sweep: Any) -> str:
    """The sweep's `keep_checkpoints` (default "latest_and_best"); ConfigError, one line naming
    the allowed values, for anything else."""
    value = sweep.get("keep_checkpoints", DEFAULT) if sweep is not None else DEFAULT
    if value not in POLICIES:
        raise ConfigError(f"sweep keep_checkpoints: unknown {value!r}; allowed: "
                          f"{', '.join(POLICIES)}")
    return value


def steps_to_keep(steps: Collection[int], evals: Any) -> set[int]:
    """The checkpoints of `steps` that "latest_and_best" keeps, given the group's evaluations
    `evals` (`evaluation.TrialEvals`: `by_step` {step: one metrics dict per trial} and
    `summary(i)`, whose `best` / `best_ema` name trial i's best step): the latest, every
    unscored one, and each trial's best (by the main metric, and by its EMA's)."""
    if not steps:
        return set()
    keep = {max(steps)} | {s for s in steps if s not in evals.by_step}
    trials = max((len(rows) for rows in evals.by_step.values()), default=0)
    for i in range(trials):
        summary = evals.summary(i)
        for best in (summary.get("best"), summary.get("best_ema")):
            if best and best.get("step") is not None:
                keep.add(int(best["step"]))
    return keep


def prune(checkpoints: Any, evals: Any, keep: str) -> list[int]:
    """Deletes the checkpoints of `checkpoints` (`checkpoint.Checkpoints`) that policy `keep`
    does not keep (`steps_to_keep`); returns their steps. Called by every process of a job
    (orbax's delete is collective) after an evaluation, with the same `evals` everywhere."""
    if keep == "all" or evals is None:
        return []
    checkpoints.wait()  # the save in flight is complete before anything is deleted
    steps = checkpoints.steps()
    kept = steps_to_keep(steps, evals)
    gone = [s for s in steps if s not in kept]
    for step in gone:
        checkpoints.delete(step)
    return gone


def plan_bytes(state_bytes: int, checkpoints: int, trials: int, keep: str = DEFAULT,
               keep_latest: int | None = None) -> dict[str, int]:
    """Bytes a group writes as checkpoints and keeps at its end, for `gancmp plan`:
    {"written": every checkpoint's state, "kept": at most what stays} — `state_bytes` the
    stacked state of its `trials` trials (one checkpoint), `checkpoints` how many it saves,
    `keep` the sweep's policy, `keep_latest` the trial config's `keep_checkpoints` (None: no
    cap). "latest_and_best" keeps at most 1 + `trials` checkpoints (the latest and each trial's
    best; fewer when bests coincide), "all" every one; a cap keeps at most that many."""
    if keep not in POLICIES:
        raise ValueError(f"keep: unknown {keep!r}; allowed: {', '.join(POLICIES)}")
    count = checkpoints if keep == "all" else min(checkpoints, 1 + trials)
    if keep_latest is not None:
        count = min(count, keep_latest)
    return {"written": state_bytes * checkpoints, "kept": state_bytes * count}

"""`gancmp sweep`: expand a sweep into trials, skip the finished ones, train the rest in vmapped
groups, and append one record per finished trial to this shard's `results-<i>.jsonl`. One
process at a time runs a shard (`records.lock_path`); a trial is recorded once (a group resumed
after a kill records only the members it had not recorded).

Groups: trials of one study, phase and method that agree on the static hyperparameters
(disc_iters, D batch norm) share a program, in chunks of at most K (`phase_groups`). Group j of
a phase belongs to shard j mod N, counted over the phase's full trial list, so the assignment does
not move as trials finish. A group checkpoints its stacked state under `groups/<id>/`, and its
evaluations under `groups/<id>/evals.jsonl`, so a killed sweep resumes where it stopped.

A multi-process job (a pod slice: `gancmp sweep` started on every host, `runtime.initialize`) is
one sweep: every process runs every group together, over the devices of all hosts; the records
are read by the main process and broadcast, each process evaluates the trials on its own devices
(`SpreadEvaluator`), and the main process alone writes the records, evaluations and pictures of
every trial. `--shard i/N` splits a sweep between separate jobs (single-host machines) instead.

Layout (`gancmp.sweep.parallel`): on TPU/GPU a group's trials spread over every chip, as many per
chip as the compiled program's memory and the sweep's `max_trials_per_device` allow, each class
of trials padded to one fixed K (one program per class); data parallelism only for a model that
does not fit one chip. On a CPU split into one device per core (`gancmp sweep --cpu_devices`) a
group of at least one trial per device spreads its trials over them (`laid_out`). A
trial computes the same arithmetic in any group and layout up to float rounding
(tests/test_sweep.py), bit for bit only in one layout; over thousands of steps GAN training
amplifies the rounding until two layouts' numbers are unrelated. So every record carries its
layout (devices, parallelism, trials computed, steps per call), and a group is resumed only in the
layout of its checkpoints (`workdir.Bookkeeping`: `--cpu_devices` changed under a checkpointed
group is refused); a `max_trials_per_group` that regroups the trials makes new groups (new
directories), trained from step 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import subprocess
import time
from collections.abc import Collection, Sequence
from importlib import metadata
from typing import Any

import jax
import ml_collections

from gancmp import records, runtime, storage
from gancmp.config import ConfigError, check_fields, env_seconds
from gancmp.metrics import evaluators
from gancmp.metrics.resources import EvalResources
from gancmp.records import Record
from gancmp.runtime import is_main_process
from gancmp.sweep import parallel
from gancmp.sweep.ahead import CompileAhead, compile_ahead
from gancmp.sweep.study import (
    SweepTrial,
    current_id,
    expand_phase,
    validate,
)
from gancmp.train import evaluation, loop, retention
from gancmp.train.memory import MemoryProbe
from gancmp.train.step import Programs
from gancmp.trial import Trial

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "gancmp")


def parse_shard(text: str) -> tuple[int, int]:
    """"i/N" → (i, N), with 0 ≤ i < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard: expected i/N such as 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise ConfigError(f"--shard: index {i} out of range for {n} shards (0..{n - 1})")
    return i, n


COMMIT_ENV = "GANCMP_GIT_COMMIT"


def provenance() -> dict[str, Any]:
    """Code and package versions of this run. The commit is $GANCMP_GIT_COMMIT when set (a
    launcher that copied the code with `git archive`, which leaves no .git:
    experiments/tpu/launch.sh), else the checkout's HEAD, else None."""
    commit = os.environ.get(COMMIT_ENV) or None
    try:
        commit = commit or subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True,
            cwd=os.path.dirname(__file__), timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"git_commit": commit, "packages": versions, "backend": jax.default_backend()}


def groups_of(trials: Sequence[SweepTrial], max_size: int) -> list[list[SweepTrial]]:
    """Trials grouped by `group_key` (order of first appearance), chunked to `max_size`."""
    by_key: dict[str, list[SweepTrial]] = {}
    for t in trials:
        by_key.setdefault(t.group_key(), []).append(t)
    out = []
    for members in by_key.values():
        out.extend(members[i:i + max_size] for i in range(0, len(members), max_size))
    return out


def max_group_size(sweep, trial: Trial) -> int:
    """Trials per group, K (`parallel.layout_for`): on CPU, for conv nets
    `cpu_conv_trials_per_device` (default 1) per device — vmapping the quarter-width InfoGAN step
    over K trials turns its convolutions into grouped ones that XLA:CPU runs slowly (K = 16: 0.3×
    the trials/hour of K = 1) — and `max_trials_per_group` for MLPs; on TPU/GPU the sweep's cap
    of trials per device times the devices (memory is checked per class when a group runs)."""
    return parallel.layout_for(sweep, trial, 1 << 30, measure=False).group_size


def laid_out(trial: Trial, group_size: int) -> Trial:
    """The trial as a group of `group_size` trials runs it under the default policy
    (`parallel.laid_out`)."""
    layout = parallel.layout_for(ml_collections.ConfigDict(), trial, group_size, measure=False)
    return parallel.laid_out(trial, layout, group_size)


def phase_groups(sweep, study, phase, trials: Sequence[SweepTrial],
                 sizes: dict[str, tuple[int, ...]] | None = None,
                 probe: MemoryProbe | None = None
                 ) -> list[tuple[list[SweepTrial], parallel.Layout]]:
    """A phase's groups with their layouts: its trials by `Trial.group_key` (order of first
    appearance), each class laid out by `parallel.layout_for` (its sizes: `sizes`, the class's
    count in each phase, `class_sizes`, else its size here; its memory measured by `probe`,
    the sweep's) and chunked to K."""
    out = []
    overrides = phase.get("overrides")
    for members in groups_of(trials, 1 << 30):
        size = (sizes or {}).get(parallel.class_key(members[0], overrides), len(members))
        layout = parallel.layout_for(sweep, members[0].trial, size, probe=probe)
        out.extend(parallel.chunks(members, layout))
    return out


def class_sizes(sweep, study) -> dict[str, tuple[int, ...]]:
    """`parallel.study_class_sizes` of the study (seeds phases count as `num_seeds` re-runs of
    their source's classes). Only the accelerator policy uses them (`parallel.layout_policy`:
    CPU groups are never padded)."""
    if parallel.layout_policy(sweep) == "cpu":
        return {}
    return parallel.study_class_sizes([(p, [] if p.mode == "seeds" else
                                        expand_phase(sweep, study, p, []))
                                       for p in study.phases])


class SpreadEvaluator:
    """An evaluator (`gancmp.metrics.evaluators.Evaluator`) for a multi-process job: each
    process evaluates the trials on its own devices and every process gets every trial's
    metrics, in trial order (`runtime.map_trials`), so the main process records them all. It is
    given the padded group's states (`group.Group.unpadded` leaves them whole in a job) and
    evaluates the first `count`."""

    def __init__(self, inner: evaluators.Evaluator, count: int):
        self.inner, self.count = inner, count

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def evaluate_group(self, states) -> list[dict[str, Any]]:
        return runtime.map_trials(self.inner.evaluate_group, states, self.count)


def _group_id(group: Sequence[SweepTrial], padded_to: int = 0) -> str:
    """The group's directory name: its trials' ids, and the padded size when it is padded (a
    checkpoint holds that many trials)."""
    pad = f"|pad{padded_to}" if padded_to > len(group) else ""
    return hashlib.sha256(("|".join(t.trial_id for t in group) + pad).encode()).hexdigest()[:16]


def group_trials(group: Sequence[SweepTrial], layout: parallel.Layout | None = None
                 ) -> tuple[tuple[Trial, ...], int]:
    """(the trials, padded K or 0) a group runs with: laid out by `layout`, else by the default
    policy (`laid_out`)."""
    if layout is None:
        trials = tuple(laid_out(t.trial, len(group)) for t in group)
    else:
        trials = tuple(parallel.laid_out(t.trial, layout, len(group)) for t in group)
    pad_to = layout.group_size if layout is not None and layout.padded else 0
    return trials, pad_to


def run_group(group: Sequence[SweepTrial], workdir: str, shard: int, phase_size: int,
              phase_mode: str, progress: bool = True, *, sweep_name: str,
              recorded: Collection[str] = (),
              layout: parallel.Layout | None = None,
              keep: str = retention.DEFAULT,
              resources: EvalResources | None = None,
              programs: Programs | None = None) -> list[Record]:
    """Trains and evaluates one group of the sweep `sweep_name` (`group_records`); returns its
    records and appends those of trials not in `recorded` (trial ids already in the results) to
    shard `shard`'s results file at once (on gs://, one object per group)."""
    out, new = group_records(group, workdir, phase_size, phase_mode, progress,
                             sweep_name=sweep_name, recorded=recorded, layout=layout, keep=keep,
                             resources=resources, programs=programs)
    if new and is_main_process():  # the group's records in one append (one object on gs://)
        records.append(records.results_path(workdir, shard), *new)
    return out


def group_records(group: Sequence[SweepTrial], workdir: str, phase_size: int, phase_mode: str,
                  progress: bool = True, *, sweep_name: str, recorded: Collection[str] = (),
                  layout: parallel.Layout | None = None, keep: str = retention.DEFAULT,
                  resources: EvalResources | None = None, programs: Programs | None = None
                  ) -> tuple[list[Record], list[Record]]:
    """Trains and evaluates one group of the sweep `sweep_name` in `workdir/groups/<id>/`
    (resuming from its checkpoints); returns (its records, those to append: not interrupted and
    not in `recorded`) without writing them (`run_group` does; the Ray engine's driver does).
    Each record is `records.from_trial` with the trial's identity, its group and `"sweep":
    sweep_name` added. Wall time and device-hours are the group's totals over every resume
    (`workdir.Bookkeeping`), shared equally by its trials (`records.from_trial`);
    `group_wall_time_s` is the whole. `keep`: the checkpoints kept once scored (`retention`:
    the sweep's `keep_checkpoints`). `resources`: the sweep's `EvalResources`, shared by its
    groups' evaluators (None: the group's own); `programs`: the sweep's train programs
    (`step.Programs`; None: the group's own)."""
    trials, pad_to = group_trials(group, layout)
    group_rel = os.path.join("groups", _group_id(group, pad_to))
    group_dir = os.path.join(workdir, group_rel)
    storage.makedirs(group_dir)
    evals = _group_evals(group_dir, trials[0], len(group), resources)
    trained = loop.train_and_evaluate(trials, group_dir, evals, progress=progress,
                                      names=[t.trial_id for t in group], pad_to=pad_to,
                                      keep=keep, programs=programs)
    prov = provenance()
    out, new = [], []
    for i, (trial, rec) in enumerate(zip(group, trained, strict=True)):
        rec = dataclasses.replace(
            rec, sweep=sweep_name, trial_id=trial.trial_id, study=trial.study, phase=trial.phase,
            setting=trial.setting, phase_size=phase_size, phase_mode=phase_mode,
            group_dir=group_rel, group_index=i,
            group_seeds=[t.seed for t in group], group_hparams=[dict(t.hparams) for t in group],
            provenance=prov)
        if rec.status != "interrupted" and trial.trial_id not in recorded:
            new.append(rec)
        out.append(rec)
    return out, new


def group_dir_of(workdir: str, group: Sequence[SweepTrial],
                 layout: parallel.Layout | None = None) -> str:
    """The directory `group_records` trains `group` in (`workdir/groups/<id>`)."""
    return os.path.join(workdir, "groups", _group_id(group, group_trials(group, layout)[1]))


def _group_evals(group_dir: str, trial: Trial, count: int,
                 resources: EvalResources | None) -> evaluation.TrialEvals:
    """The group's evaluated checkpoints and evaluator (of `resources`); in a multi-process
    job every process evaluates its own trials (`SpreadEvaluator`) and resumes from the main
    process's view."""
    evaluator = evaluation.make_evaluator(trial, resources)
    if runtime.multiprocess():
        evaluator = SpreadEvaluator(evaluator, count)
    evals = evaluation.TrialEvals(group_dir, evaluator, group=True)
    if runtime.multiprocess():  # every process resumes from the main process's view
        evals.by_step = {int(s): rows for s, rows in runtime.broadcast_json(
            {str(s): rows for s, rows in evals.by_step.items()}).items()}
    return evals


def check_sweep(sweep: ml_collections.ConfigDict) -> str:
    """Validates a sweep before anything runs (fields, keep_checkpoints, its name); returns its
    name. ConfigError in one line."""
    validate(sweep)
    retention.policy(sweep)  # a bad keep_checkpoints: one line before anything runs
    name = sweep.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"sweep name: must be a non-empty string (recorded in every trial's "
                          f"record), got {name!r}")
    return name


def run_sweep(sweep: ml_collections.ConfigDict, workdir: str, shard: tuple[int, int] = (0, 1),
              progress: bool = True, log=print, wait: bool = True) -> dict[str, int]:
    """Runs this shard's part of the sweep; returns counts of trials run (and of those,
    diverged), skipped (finished before), phases waiting for other shards, and
    `interrupted` (1 when SIGTERM stopped it: the running group checkpointed, nothing after it
    ran). Holds the shard's lock (`records.lock_path`; the main process of a job): a second
    process on the same workdir and shard raises `storage.LockedError` naming the holder. A
    shard of several (`shard` i/N, N > 1) writes no report: its last line says how to build
    it once every shard has finished. A shard of several waits at a seeds phase whose source
    phase other shards still train (`_phase_trials`); `wait=False` skips such a phase instead
    (counted in `waiting`)."""
    name = check_sweep(sweep)
    storage.makedirs(workdir)
    index, count = shard
    held = (storage.lock(records.lock_path(workdir, index)) if is_main_process()
            else contextlib.nullcontext())
    with held:
        counts = _run_shard(sweep, name, workdir, index, count, progress, log, wait)
    if count > 1 and not counts["interrupted"] and is_main_process():
        log(f"shard {index}/{count} done; a sharded sweep writes no report: once all {count} "
            f"shards have finished, build it with `gancmp report {workdir}`")
    return counts


def todo_groups(sweep, study, phase, trials: Sequence[SweepTrial], sizes,
                done: Collection[str], mine=lambda j: True, probe: MemoryProbe | None = None
                ) -> tuple[list[tuple[int, list[SweepTrial], parallel.Layout]], int, int]:
    """(the phase's groups still to run, as (index j, trials, layout); the trials skipped,
    every one recorded; the phase's group count), over the groups j for which `mine(j)` (a
    shard's share); `probe`: the sweep's `MemoryProbe` (`phase_groups`)."""
    groups = phase_groups(sweep, study, phase, trials, sizes, probe)
    todo, skipped = [], 0
    for j, (group, layout) in enumerate(groups):
        if not mine(j):
            continue
        if all(t.trial_id in done for t in group):
            skipped += len(group)
            continue
        todo.append((j, group, layout))
    return todo, skipped, len(groups)


def finished_ids(recorded: Sequence[Record]) -> set[str]:
    """The trial ids recorded as finished or diverged: never trained again."""
    return {r.trial_id for r in recorded if r.status in ("finished", "diverged")}


def _run_shard(sweep, name: str, workdir: str, index: int, count: int, progress: bool,
               log, wait: bool = True) -> dict[str, int]:
    counts = {"run": 0, "skipped": 0, "waiting": 0, "diverged": 0, "interrupted": 0}
    # the shard's own: every group shares the train programs (with the compile-ahead thread),
    # the evaluation's programs and references, and the layouts the programs' measured memory;
    # all freed when the shard is done
    resources, probe, programs = EvalResources(), MemoryProbe(), Programs()
    ahead = CompileAhead(compile_ahead(sweep), programs)
    for study in sweep.studies:
        sizes = class_sizes(sweep, study)
        for phase in study.phases:
            recorded, trials = _phase_trials(sweep, study, phase, workdir,
                                             wait and count > 1, log)
            done = finished_ids(recorded)
            if trials is None:
                counts["waiting"] += 1
                log(f"{study.name}/{phase.name}: waits for phase {phase.source} to finish on "
                    "every shard; run `gancmp sweep` again afterwards")
                continue
            todo, skipped, n_groups = todo_groups(sweep, study, phase, trials, sizes, done,
                                                  lambda j: j % count == index, probe)
            counts["skipped"] += skipped
            for i, (j, group, layout) in enumerate(todo):
                ahead.wait()
                if i + 1 < len(todo):  # compiled while this group trains
                    _, following, following_layout = todo[i + 1]
                    ahead.start(*group_trials(following, following_layout))
                log(f"{study.name}/{phase.name}: {group[0].method} × {len(group)} trials "
                    f"(group {j + 1}/{n_groups})")
                recs = run_group(group, workdir, index, len(trials), phase.mode, progress,
                                 sweep_name=name, recorded=done, layout=layout,
                                 keep=retention.policy(sweep), resources=resources,
                                 programs=programs)
                if any(r.status == "interrupted" for r in recs):
                    log("interrupted: checkpoints saved; run the same command to resume")
                    counts["interrupted"] = 1
                    return counts
                counts["run"] += len(group)
                counts["diverged"] += sum(r.status == "diverged" for r in recs)
    return counts


PHASE_POLL_ENV = "GANCMP_PHASE_POLL_S"
_sleep = time.sleep  # the wait between looks at the other shards' records (tests replace it)


def _phase_trials(sweep, study, phase, workdir: str, wait: bool, log
                  ) -> tuple[list[Record], list[SweepTrial] | None]:
    """(the sweep's records, the phase's trials: `expand_phase`, None while a seeds phase waits
    for its source phase). With `wait` (a shard of several), a waiting phase is a barrier: the
    records are read again every $GANCMP_PHASE_POLL_S seconds (default 60) until the other
    shards have recorded the source phase, so that a shard exits only when its part of the
    sweep is done (never 0 with a phase left: a `--watch` would call the sweep finished)."""
    said = False
    while True:
        recorded = read_recorded(workdir)
        # `study` reads records as their JSON objects
        trials = expand_phase(sweep, study, phase, [r.to_json() for r in recorded])
        if trials is not None or not wait:
            return recorded, trials
        if not said:
            log(f"{study.name}/{phase.name}: waits for phase {phase.source} to finish on every "
                "shard (the records are read again every "
                f"{_poll_seconds():g} s; SIGTERM stops the wait)")
            said = True
        _sleep(_poll_seconds())


def _poll_seconds() -> float:
    return env_seconds(PHASE_POLL_ENV, 60.0, "seconds between looks at the other shards' records")


def read_recorded(workdir: str) -> list[Record]:
    """The records of the sweep in `workdir` (every shard), as the main process reads them: one
    view for every process of a job."""
    recorded, _ = records.read(records.result_files(workdir), warn=is_main_process())
    # a record of version 1 names its trial as gancmp then did: renamed as this version does
    recorded = [dataclasses.replace(r, trial_id=current_id(r.to_json())) if r.schema == 1
                else r for r in recorded]
    return [Record.from_json(r) for r in
            runtime.broadcast_json([r.to_json() for r in recorded])]


_recorded = read_recorded  # the name the tests of earlier issues use


def override_trials(sweep: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Applies `FIELD=VALUE` overrides (`gancmp sweep --trial data_dir=gs://b/tfds`; dotted
    fields such as `fid.inception_weights`) to the trial config of every study, in place. A
    value takes the type of its field (bool, int, float, else text); an unknown
    field is a ConfigError naming the closest one."""
    for text in overrides:
        field, sep, value = text.partition("=")
        if not sep or not field:
            raise ConfigError(f"--trial: expected FIELD=VALUE such as data_dir=gs://b/tfds, "
                              f"got {text!r}")
        for study in sweep.studies:
            node, parts = study.trial, field.split(".")
            for depth, part in enumerate(parts):
                where = "--trial " + ".".join(parts[:depth]) if depth else "--trial "
                check_fields([part], list(node.keys()), where.rstrip(".").replace(" .", " "))
                if depth < len(parts) - 1:
                    node = node[part]
            with node.unlocked():
                node[parts[-1]] = _typed(value, node.get_type(parts[-1]), field)


def _typed(text: str, kind: type, field: str) -> Any:
    """`text` as a value of the field's type `kind` (`ConfigDict.get_type`)."""
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if kind in (int, float):
            return kind(text)
    except ValueError:
        said = {bool: "true or false", int: "an integer", float: "a number"}[kind]
        raise ConfigError(f"--trial {field}={text}: expected {said}") from None
    return text

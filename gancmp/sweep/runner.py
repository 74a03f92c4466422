"""`gancmp sweep`: expand a sweep into trials, skip the finished ones, train the rest in vmapped
groups, and append one record per finished trial to this shard's `results-<i>.jsonl`. One
process at a time runs a shard (`store.lock_path`); a trial is recorded once (a group resumed
after a kill records only the members it had not recorded).

Groups: trials of one study, phase and method that agree on the static hyperparameters
(disc_iters, D batch norm) share a program, in chunks of at most `max_group_size` trials. Group j of
a phase belongs to shard j mod N, counted over the phase's full trial list, so the assignment does
not move as trials finish. A group checkpoints its stacked state under `groups/<id>/`, and its
evaluations under `groups/<id>/evals.jsonl`, so a killed sweep resumes where it stopped.

Layout: on TPU/GPU a group is data-parallel over the devices; on a CPU split into one device per
core (`gancmp sweep --cpu_devices`) a group of at least one trial per device spreads its trials
over them (`execution_config`). A trial computes the same arithmetic in any group and layout
(equal to float rounding: tests/test_sweep.py); over thousands of steps GAN training amplifies
rounding as it does between any two compiled programs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Collection, Sequence
from importlib import metadata
from typing import Any

import jax
import ml_collections

from gancmp import storage
from gancmp.configfile import load_config_file
from gancmp.runtime import is_main_process
from gancmp.sweep import store
from gancmp.sweep.study import Trial, expand_phase, validate
from gancmp.train import evaluation, loop
from gancmp.train.config import ConfigError, make_setup
from gancmp.train.workdir import trial_record

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


def provenance() -> dict[str, Any]:
    """Code and package versions of this run."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
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


def groups_of(trials: Sequence[Trial], max_size: int) -> list[list[Trial]]:
    """Trials grouped by `group_key` (order of first appearance), chunked to `max_size`."""
    by_key: dict[str, list[Trial]] = {}
    for t in trials:
        by_key.setdefault(t.group_key(), []).append(t)
    out = []
    for members in by_key.values():
        out.extend(members[i:i + max_size] for i in range(0, len(members), max_size))
    return out


def cpu_trial_parallel() -> bool:
    """Whether groups spread their trials over the devices: on CPU with more than one device (one
    per core, `gancmp sweep --cpu_devices`). Measured on 2 cores (experiments/bench/RESULTS.md):
    against one trial on one device whose kernels use both cores, one quarter-width polygon
    InfoGAN per core gives 1.4× the trials/hour, ring MLP groups up to 2.0× (2.7× through the
    whole sweep runner); splitting each batch over the cores instead would pay a cross-device
    mean per step. On TPU/GPU, and in a multi-process job, groups stay data-parallel."""
    return (jax.default_backend() == "cpu" and jax.process_count() == 1
            and jax.device_count() > 1)


def max_group_size(sweep, trial_config) -> int:
    """Trials per vmapped group: `max_trials_per_group`, except for conv nets on CPU, where each
    device (core) gets `cpu_conv_trials_per_device` (default 1). Measured on 2 CPU cores: vmapping
    the quarter-width InfoGAN step over K trials turns its convolutions into grouped ones that
    XLA:CPU runs slowly (K = 16: 0.3× the trials/hour of K = 1); the ring MLP gains from vmapping.
    On TPU/GPU a group fills the device."""
    if jax.default_backend() == "cpu" and trial_config.get("arch") != "mlp":
        per_device = int(sweep.get("cpu_conv_trials_per_device", 1))
        return per_device * (jax.device_count() if cpu_trial_parallel() else 1)
    return int(sweep.get("max_trials_per_group", 16))


def execution_config(trial_config: ml_collections.ConfigDict,
                     group_size: int) -> ml_collections.ConfigDict:
    """The trial config a group of `group_size` trials runs with: the trial's own, except on a CPU
    with several devices (`cpu_trial_parallel`), where a group of at least one trial per device
    spreads its trials over them (trial parallelism) and a smaller group runs on one device
    (padding it with copies of a trial would only waste the other cores). How trials are laid
    out over devices is not part of a trial's identity: a trial computes the same arithmetic
    either way."""
    if not cpu_trial_parallel() or trial_config.get("parallelism", "data") == "trials":
        return trial_config
    config = ml_collections.ConfigDict(trial_config.to_dict())
    if group_size >= jax.device_count():
        config.parallelism = "trials"
    else:
        config.num_devices = 1
    return config


def _group_id(group: Sequence[Trial]) -> str:
    return hashlib.sha256("|".join(t.trial_id for t in group).encode()).hexdigest()[:16]


def run_group(group: Sequence[Trial], workdir: str, shard: int, phase_size: int,
              phase_mode: str, progress: bool = True, *, sweep_name: str,
              recorded: Collection[str] = ()) -> list[dict[str, Any]]:
    """Trains and evaluates one group of the sweep `sweep_name`; returns its records
    (`workdir.trial_record`, with the trial's identity, its group and `"sweep": sweep_name`) and
    appends those of trials not in `recorded` (trial ids already in the results). Wall time and
    device-hours are the group's totals over every resume (`train.bookkeeping`), shared equally
    by its trials."""
    config = execution_config(group[0].config, len(group))
    setup = make_setup(config)
    group_rel = os.path.join("groups", _group_id(group))
    group_dir = os.path.join(workdir, group_rel)
    storage.makedirs(group_dir)
    evals = evaluation.TrialEvals(group_dir, evaluation.make_evaluator(setup, config), group=True)
    outcomes = loop.train_group(
        config, setup, [t.seed for t in group], [t.hparams for t in group], group_dir,
        on_checkpoint=evals.add, progress=progress, names=[t.trial_id for t in group])
    prov = provenance()
    out = []
    for i, (trial, outcome) in enumerate(zip(group, outcomes, strict=True)):
        wall, device_hours = outcome["wall_time_s"], outcome["device_hours"]
        rec = trial_record(
            outcome, setup, trial.config, evals.summary(i),
            sweep=sweep_name, trial_id=trial.trial_id, study=trial.study, phase=trial.phase,
            setting=trial.setting, phase_size=phase_size, phase_mode=phase_mode,
            group_dir=group_rel, group_index=i,
            group_seeds=[t.seed for t in group], group_hparams=[dict(t.hparams) for t in group],
            group_wall_time_s=wall, wall_time_s=wall / len(group),
            device_hours=device_hours / len(group), provenance=prov)
        if rec["status"] != "interrupted" and trial.trial_id not in recorded and is_main_process():
            store.append(store.results_path(workdir, shard), rec)
        out.append(rec)
    return out


def run_sweep(sweep: ml_collections.ConfigDict, workdir: str, shard: tuple[int, int] = (0, 1),
              progress: bool = True, log=print) -> dict[str, int]:
    """Runs this shard's part of the sweep; returns counts of trials run (and of those,
    diverged), skipped (finished before), phases waiting for other shards, and `interrupted`
    (1 when SIGTERM stopped it: the running group checkpointed, nothing after it ran). Holds the
    shard's lock (`store.lock_path`; the main process of a job): a second process on the same
    workdir and shard raises `storage.LockedError` naming the holder."""
    validate(sweep)
    name = sweep.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"sweep name: must be a non-empty string (recorded in every trial's "
                          f"record), got {name!r}")
    storage.makedirs(workdir)
    index, count = shard
    held = (storage.lock(store.lock_path(workdir, index)) if is_main_process()
            else contextlib.nullcontext())
    with held:
        return _run_shard(sweep, name, workdir, index, count, progress, log)


def _run_shard(sweep, name: str, workdir: str, index: int, count: int, progress: bool,
               log) -> dict[str, int]:
    counts = {"run": 0, "skipped": 0, "waiting": 0, "diverged": 0, "interrupted": 0}
    for study in sweep.studies:
        for phase in study.phases:
            records, _ = store.read(store.result_files(workdir), warn=False)
            done = {r["trial_id"] for r in records if r["status"] in ("finished", "diverged")}
            trials = expand_phase(sweep, study, phase, records)
            if trials is None:
                counts["waiting"] += 1
                log(f"{study.name}/{phase.name}: waits for phase {phase.source} to finish on "
                    "every shard; run `gancmp sweep` again afterwards")
                continue
            groups = groups_of(trials, max_group_size(sweep, study.trial))
            for j, group in enumerate(groups):
                if j % count != index:
                    continue
                if all(t.trial_id in done for t in group):
                    counts["skipped"] += len(group)
                    continue
                log(f"{study.name}/{phase.name}: {group[0].method} × {len(group)} trials "
                    f"(group {j + 1}/{len(groups)})")
                recs = run_group(group, workdir, index, len(trials), phase.mode, progress,
                                 sweep_name=name, recorded=done)
                if any(r["status"] == "interrupted" for r in recs):
                    log("interrupted: checkpoints saved; run the same command to resume")
                    counts["interrupted"] = 1
                    return counts
                counts["run"] += len(group)
                counts["diverged"] += sum(r["status"] == "diverged" for r in recs)
    return counts


def load_sweep_config(path: str) -> ml_collections.ConfigDict:
    """A sweep config file's `get_config()`."""
    return load_config_file(path)



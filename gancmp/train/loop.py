"""One trial end to end — or a group of trials that share a program, trained together.

Trains for the configured number of D updates with a progress bar, logs losses to TensorBoard
(tensorboardX: no TensorFlow needed), checkpoints every `checkpoint_every` D updates and at the
end of the budget (`gancmp.train.schedule`; at device-call boundaries), resumes from the latest
checkpoint, saves a checkpoint and stops cleanly on SIGTERM, records a NaN run as `diverged`,
and ends with a sample grid and `result.json`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from gancmp.data import source as data_source
from gancmp.runtime import is_main_process
from gancmp.train import evaluation, schedule
from gancmp.train import samples as samples_lib
from gancmp.train import step as step_lib
from gancmp.train.config import TrialSetup, make_setup, trial_hparams
from gancmp.train.state import TrainState
from gancmp.train.workdir import (
    check_config,
    checkpoints,
    samples_path,
    tb_dir,
    trial_record,
    write_result,
)


class _Preemption:
    """Turns SIGTERM into a flag checked at call boundaries (a preempted TPU VM gets one)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: no handler
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _writer(workdir: str):
    from tensorboardX import SummaryWriter

    return SummaryWriter(tb_dir(workdir))


def _progress(total: int, initial: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="D step", dynamic_ncols=True,
                mininterval=2.0, leave=False)


def train_group(
    config: ml_collections.ConfigDict,
    setup: TrialSetup,
    seeds: Sequence[int],
    hparams: Sequence[Mapping[str, Any]],
    workdir: str,
    *,
    on_checkpoint: Callable[[int, TrainState], Any] | None = None,
    progress: bool = True,
    data: data_source.DataSource | None = None,
) -> list[dict[str, Any]]:
    """Trains K trials (same setup; their own seeds and numeric hyperparameters) in one vmapped
    program, checkpointing the stacked state under `workdir`. Returns each trial's training
    outcome (the first part of its record, `workdir.trial_record`) with `status` in {"finished",
    "diverged", "interrupted"}.

    `on_checkpoint(step, states)` runs after each checkpoint, and on the restored checkpoint when
    resuming (so it must be idempotent; evaluation hooks in here); `data` replaces the
    configured dataset (tests, benchmarks).
    """
    os.makedirs(workdir, exist_ok=True)
    if data is None:
        data = data_source.load(setup.dataset, config.get("data_dir"), config.get("data_seed", 0))
    ckpts = checkpoints(workdir, config.get("keep_checkpoints"))
    writer = bar = None
    try:
        group = step_lib.create_group(config, setup, seeds, hparams, data.arrays,
                                      checkpoints=ckpts)
        k, step, states = group.size, group.step, group.states
        if step and on_checkpoint is not None:  # a run killed between saving and evaluating
            on_checkpoint(step, group.unpadded(states))
        total = config.num_d_steps
        diverged_at: list[int | None] = [None] * k
        last: dict[str, np.ndarray] = {}
        writer = _writer(workdir) if is_main_process() else None
        bar = _progress(total, step, f"{setup.method.name} {setup.dataset}") if progress else None
        start, start_step, interrupted = time.time(), step, False
        with _Preemption() as preemption:
            while step < total:
                train_fn, iterations = group.call_at(step)
                per_call = iterations * setup.disc_iters
                states, metrics = train_fn(states, group.arrays)
                metrics = jax.device_get(metrics)  # [K, steps_per_call] each; waits for the call
                metrics = {name: v[:k] for name, v in metrics.items()}  # drop the padding
                step += per_call
                last = {name: v[:, -1] for name, v in metrics.items()}
                _mark_divergence(metrics, diverged_at, step)
                if writer is not None and (step % config.log_every < per_call or step == total):
                    _log(writer, last, step, k)
                if bar is not None:
                    bar.update(per_call)
                    bar.set_postfix({n: f"{float(np.nanmean(v)):.3g}" for n, v in last.items()})
                if all(d is not None for d in diverged_at):
                    break
                if group.plan.is_checkpoint(step) or preemption.requested:
                    ckpts.save(step, states)
                    if on_checkpoint is not None:
                        on_checkpoint(step, group.unpadded(states))
                if preemption.requested and step < total:
                    interrupted = True
                    break
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        ckpts.close()
    wall = time.time() - start
    write = is_main_process() and not interrupted
    pictures = (samples_lib.final_samples(setup, group.unpadded(jax.device_get(states)))
                if write else None)
    outcomes = []
    for i in range(k):
        status = ("diverged" if diverged_at[i] is not None
                  else "interrupted" if interrupted else "finished")
        outcomes.append({
            "status": status, "seed": int(group.seeds[i]), "hparams": _plain(group.hparams[i]),
            "steps": int(step), "num_d_steps": int(total), "diverged_at": diverged_at[i],
            "final_losses": {n: float(v[i]) for n, v in last.items()},
            "wall_time_s": wall, "steps_this_run": int(step - start_step),
            "device_kind": jax.devices()[0].device_kind, "num_devices": setup.num_devices,
            "parallelism": setup.parallelism, "trials_in_group": k,
            "steps_per_call": group.steps_per_call,
        })
        if status == "finished" and pictures is not None:
            outcomes[-1]["samples"] = samples_lib.write_samples(
                setup, pictures[i], samples_path(workdir, k, i))
    return outcomes


def _mark_divergence(metrics: Mapping[str, np.ndarray], diverged_at: list, step: int) -> None:
    bad = np.zeros(len(diverged_at), bool)
    for v in metrics.values():
        bad |= ~np.all(np.isfinite(v), axis=tuple(range(1, v.ndim)))
    for i in np.flatnonzero(bad):
        if diverged_at[i] is None:
            diverged_at[i] = step


def _log(writer, last: Mapping[str, np.ndarray], step: int, k: int) -> None:
    for name, values in last.items():
        for i, v in enumerate(values):
            writer.add_scalar(name if k == 1 else f"trial_{i}/{name}", float(v), step)
    writer.flush()


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()}


def train(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> dict:
    """One trial from `config` in `workdir`; resumes if `workdir` holds checkpoints. With
    `config.eval_every`, evaluates checkpoints as it goes (see `gancmp.train.evaluation`). Writes
    `workdir/result.json` and returns its content (`workdir.trial_record`)."""
    setup = make_setup(config)
    check_config(config, workdir)
    evals = on_checkpoint = None
    if config.get("eval_every"):
        evals = evaluation.TrialEvals(workdir, evaluation.make_evaluator(setup, config))
        # eval_every is a multiple of checkpoint_every: every so many checkpoints
        every = (config.eval_every // config.checkpoint_every
                 * schedule.checkpoint_interval(config.checkpoint_every, setup.disc_iters))
        on_checkpoint = evals.hook(every, config.num_d_steps)
    outcome = train_group(config, setup, [config.seed], [trial_hparams(config)], workdir,
                          on_checkpoint=on_checkpoint, progress=progress)[0]
    record = trial_record(outcome, setup, config, evals.summary() if evals else None)
    write_result(workdir, record)
    return record

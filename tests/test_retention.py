"""Checkpoint retention (issue 22 item 10, `gancmp.train.retention`): a sweep keeps each group's
latest checkpoint and each trial's best-scored one, deleting the scored and superseded ones as
it goes; `keep_checkpoints="all"` keeps every one; the plan's bytes written and kept."""

from __future__ import annotations

import os

import ml_collections
import pytest

from gancmp import records
from gancmp.config import ConfigError
from gancmp.sweep import runner
from gancmp.train import retention
from tests.helpers import load_config


class _Evals:
    """`TrialEvals`' two members `steps_to_keep` reads: by_step and summary(i)."""

    def __init__(self, by_step, best, best_ema=None):
        self.by_step, self._best, self._best_ema = by_step, best, best_ema or {}

    def summary(self, i):
        out = {"best": {"step": self._best[i]} if self._best[i] is not None else {}}
        if i in self._best_ema:
            out["best_ema"] = {"step": self._best_ema[i]}
        return out


def test_the_latest_each_trials_best_and_every_unscored_checkpoint_are_kept():
    rows = [{"fid": 1.0}, {"fid": 2.0}]
    by_step = {10: rows, 20: rows, 30: rows, 40: rows}
    evals = _Evals(by_step, best=[20, 20], best_ema={1: 30})
    assert retention.steps_to_keep([10, 20, 30, 40, 50], evals) == {20, 30, 50}
    assert retention.steps_to_keep([10, 20, 30, 40], evals) == {20, 30, 40}
    assert retention.steps_to_keep([], evals) == set()
    nan = _Evals({10: rows, 20: rows}, best=[None, None])  # nothing scored a number
    assert retention.steps_to_keep([10, 20], nan) == {20}


def test_the_plan_counts_bytes_written_and_kept():
    assert retention.plan_bytes(100, 20, 4) == {"written": 2000, "kept": 500}
    assert retention.plan_bytes(100, 3, 16) == {"written": 300, "kept": 300}
    assert retention.plan_bytes(100, 20, 4, "all") == {"written": 2000, "kept": 2000}
    assert retention.plan_bytes(100, 20, 4, keep_latest=1)["kept"] == 100
    with pytest.raises(ValueError, match="latest_and_best, all"):
        retention.plan_bytes(100, 20, 4, "some")


def _sweep(keep=None):
    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = "keep", 0, 16, ""
    if keep is not None:
        c.keep_checkpoints = keep
    study = ml_collections.ConfigDict()
    study.name, study.methods = "ring8", "NS_GAN"
    study.trial = load_config("ring8_mlp", num_d_steps=60, checkpoint_every=10, batch_size=32,
                              steps_per_call=5)
    study.trial.eval = ml_collections.ConfigDict({"num_samples": 300})
    study.phases = [ml_collections.ConfigDict(dict(
        name="tuned", mode="tuned", range="narrow", num_settings=2, seeds=[0],
        fixed=dict(disc_iters=1, d_batch_norm=False)))]
    c.studies = [study]
    return c


def _on_disk(workdir: str, rec: records.Record) -> list[int]:
    folder = os.path.join(workdir, rec.group_dir, "checkpoints")
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def test_a_sweep_keeps_the_latest_and_the_best_and_all_when_asked(tmp_path):
    workdir = str(tmp_path / "default")
    runner.run_sweep(_sweep(), workdir, progress=False, log=lambda m: None)
    recs, _ = records.read(records.result_files(workdir))
    assert len(recs) == 2 and all(len(r.evals) == 6 for r in recs)  # every one was scored
    wanted = {60} | {r.best["step"] for r in recs}
    assert _on_disk(workdir, recs[0]) == sorted(wanted)
    everything = str(tmp_path / "all")
    runner.run_sweep(_sweep("all"), everything, progress=False, log=lambda m: None)
    recs, _ = records.read(records.result_files(everything))
    assert _on_disk(everything, recs[0]) == [10, 20, 30, 40, 50, 60]
    with pytest.raises(ConfigError, match="keep_checkpoints: unknown 'some'; allowed: "):
        runner.run_sweep(_sweep("some"), str(tmp_path / "bad"), progress=False)

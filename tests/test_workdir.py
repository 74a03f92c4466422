"""The trial directory and the records: evals files of a trial and of a sweep group, the best
checkpoint, the config check on resume, and what every sweep record carries."""

import json
import os

import ml_collections
import numpy as np
import pytest

from gancmp import records
from gancmp.config import ConfigError
from gancmp.metrics.evaluators import Evaluator
from gancmp.sweep import runner
from gancmp.train import workdir
from gancmp.train.evaluation import TrialEvals
from gancmp.trial import make_trial
from tests.helpers import load_config


def test_evals_files_of_a_trial_and_of_a_group(tmp_path):
    """TrialEvals evaluates each checkpoint once and keeps each directory's format: a trial
    workdir's rows hold one metrics dict, a sweep group's rows a list with one dict per trial;
    both read back as per-trial lists, and the best checkpoint follows the metric's direction."""
    calls = []

    def evaluate_group(states):  # `states` stands in for a stacked state: one fid per trial
        calls.append(states)
        return [{"fid": v, "status": "ok"} for v in states]

    evaluator = Evaluator("fid", False, {"metric": "fid"}, None, 0, None)
    evaluator.evaluate_group = evaluate_group
    (tmp_path / "g").mkdir()
    (tmp_path / "t").mkdir()
    group = TrialEvals(str(tmp_path / "g"), evaluator, group=True)
    group.add(10, [3.0, 1.0])
    group.add(20, [2.0, 5.0])
    assert group.add(10, [9.0, 9.0]) == [{"fid": 3.0, "status": "ok"},
                                          {"fid": 1.0, "status": "ok"}]  # recorded, not redone
    assert calls == [[3.0, 1.0], [2.0, 5.0]]
    rows = [json.loads(line) for line in (tmp_path / "g" / "evals.jsonl").read_text().splitlines()]
    assert rows == [{"step": 10, "metrics": [{"fid": 3.0, "status": "ok"},
                                             {"fid": 1.0, "status": "ok"}]},
                    {"step": 20, "metrics": [{"fid": 2.0, "status": "ok"},
                                             {"fid": 5.0, "status": "ok"}]}]
    again = TrialEvals(str(tmp_path / "g"), evaluator, group=True)  # a resumed group
    assert again.by_step == group.by_step
    assert (again.summary(0)["best"]["step"], again.summary(0)["best"]["value"]) == (20, 2.0)
    assert (again.summary(1)["best"]["step"], again.summary(1)["best"]["value"]) == (10, 1.0)
    assert again.evals(1) == [{"step": 10, "fid": 1.0, "status": "ok"},
                              {"step": 20, "fid": 5.0, "status": "ok"}]
    assert (again.summary(1)["metric"], again.summary(1)["higher_is_better"]) == ("fid", False)

    trial = TrialEvals(str(tmp_path / "t"), evaluator)
    trial.add(10, [4.0])
    assert json.loads((tmp_path / "t" / "evals.jsonl").read_text()) == {
        "step": 10, "metrics": {"fid": 4.0, "status": "ok"}}
    assert TrialEvals(str(tmp_path / "t"), evaluator).by_step == {10: [{"fid": 4.0,
                                                                        "status": "ok"}]}


def test_best_checkpoint_of_a_diverged_trial():
    """A nonfinite checkpoint scores the worst value: the best is the best finite checkpoint when
    there is one, else the nonfinite one (FID inf); a missing or NaN value is never the best."""
    fid = Evaluator("fid", False, {}, None, 0, None)
    evals = [{"step": 10, "fid": 40.0, "status": "ok"}, {"step": 20, "fid": 30.0, "status": "ok"},
             {"step": 30, "fid": np.inf, "status": "nonfinite"}, {"step": 40, "fid": np.nan}]
    best = fid.best(evals)
    assert (best["step"], best["value"], best["score"]) == (20, 30.0, -30.0)
    assert fid.best(evals[2:])["step"] == 30 and fid.best(evals[3:]) == {}
    modes = Evaluator("modes_covered", True, {}, None, 0, None)
    best = modes.best([{"step": 5, "modes_covered": 3}, {"step": 9, "modes_covered": 7},
                       {"step": 12, "modes_covered": -np.inf, "status": "nonfinite"}])
    assert (best["step"], best["score"]) == (9, 7.0)


def test_a_workdir_refuses_another_trial_but_not_a_longer_budget(tmp_path):
    config = load_config("ring8_mlp", num_d_steps=100)
    workdir.check_config(make_trial(config), str(tmp_path / "w"))
    assert workdir.read_config(str(tmp_path / "w")).num_d_steps == 100
    config.num_d_steps, config.log_every = 200, 7  # a longer budget, other logging: the same run
    workdir.check_config(make_trial(config), str(tmp_path / "w"))
    assert workdir.read_config(str(tmp_path / "w")).num_d_steps == 200
    config.lr, config.seed = 0.5, 3
    os.makedirs(tmp_path / "w" / workdir.CHECKPOINTS_DIR / "100")  # the workdir holds a run
    with pytest.raises(ConfigError, match=r"different config \(fields: lr, seed\)"):
        workdir.check_config(make_trial(config), str(tmp_path / "w"))
    with pytest.raises(FileNotFoundError, match="holds no trial"):
        workdir.read_config(str(tmp_path / "elsewhere"))


def _one_group_sweep(name="tiny"):
    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = name, 0, 16, ""
    study = ml_collections.ConfigDict()
    study.name = "ring8"
    study.trial = load_config("ring8_mlp", num_d_steps=20, checkpoint_every=10, batch_size=32,
                              steps_per_call=5)
    study.trial.eval = ml_collections.ConfigDict({"num_samples": 300})
    study.methods = "NS_GAN"
    study.phases = [ml_collections.ConfigDict(dict(
        name="tuned", mode="tuned", range="narrow", num_settings=2, seeds=[0],
        fixed=dict(disc_iters=1, d_batch_norm=False)))]
    c.studies = [study]
    return c


def test_sweep_records_name_their_sweep_and_metric_direction(tmp_path):
    """Every record carries the sweep's name and its metric's direction; the group's evals file
    has one row per checkpoint with one metrics dict per trial, the records' `evals`."""
    runner.run_sweep(_one_group_sweep(), str(tmp_path), progress=False, log=lambda *a: None)
    recorded, _ = records.read(records.result_files(str(tmp_path)))
    assert len(recorded) == 2
    for r in recorded:
        assert r.sweep == "tiny" and r.status == "finished"
        assert (r.metric, r.higher_is_better) == ("modes_covered", True)
        assert r.best["value"] == max(e["modes_covered"] for e in r.evals)
    (group_dir,) = {r.group_dir for r in recorded}
    rows = [json.loads(line) for line in
            open(os.path.join(tmp_path, group_dir, workdir.EVALS_FILE)).read().splitlines()]
    assert [row["step"] for row in rows] == [10, 20]
    for r in recorded:
        assert r.evals == [{"step": row["step"], **row["metrics"][r.group_index]}
                              for row in rows]


@pytest.mark.parametrize("name", [None, "", 3])
def test_sweep_without_a_name_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="sweep name: must be a non-empty string"):
        runner.run_sweep(_one_group_sweep(name), str(tmp_path), progress=False)

"""Sweeps: the search space, vmapped groups, kill-and-restart, records → report."""

import importlib
import json
import os
import sys

import ml_collections
import numpy as np
import pytest

from gancmp import methods, records
from gancmp import trial as trial_lib
from gancmp.config import ConfigError
from gancmp.records import Record
from gancmp.report import build
from gancmp.sweep import parallel, runner, space
from gancmp.sweep.study import expand_phase, validate
from gancmp.train import loop
from gancmp.trial import make_trial
from tests.helpers import group_of, load_config


@pytest.mark.parametrize("name", methods.PAPER_METHODS)
@pytest.mark.parametrize("range_name", space.RANGES)
def test_samples_follow_the_table(name, range_name):
    method = methods.get(name)
    settings = space.sample_settings(method, range_name, 60, seed=3)
    assert settings[0] == method.hparams()  # the authors' default comes first
    for s in settings[1:]:
        assert space.check_range(method, range_name, s) == []
    lo, hi = (-5, -2) if range_name == "wide" else (-4, -3)
    logs = np.log10([s["lr"] for s in settings[1:]])
    assert lo <= logs.min() and logs.max() <= hi
    # log-uniform: log10(lr) is spread evenly, so its mean sits mid-range
    assert abs(logs.mean() - (lo + hi) / 2) < 0.25 * (hi - lo)
    if range_name == "narrow":
        assert {s["beta1"] for s in settings[1:]} == {0.5}
        assert {s["disc_iters"] for s in settings[1:]} == {1}
        if name in ("WGAN_GP", "DRAGAN"):
            assert not any(s["d_batch_norm"] for s in settings[1:])
    else:
        assert {s["disc_iters"] for s in settings[1:]} == {1, 5}
    assert settings == space.sample_settings(method, range_name, 60, seed=3)  # deterministic
    assert settings[1:] != space.sample_settings(method, range_name, 60, seed=4)[1:]


def test_method_specific_ranges():
    wgan = space.sample_settings(methods.get("WGAN"), "wide", 40, 0)[1:]
    assert all(1e-3 <= s["clip"] <= 1.0 for s in wgan)
    began = space.sample_settings(methods.get("BEGAN"), "narrow", 40, 0)[1:]
    assert {s["lambda_k"] for s in began} == {1e-3}
    assert all(0.6 <= s["gamma"] <= 0.9 for s in began)
    gp = space.sample_settings(methods.get("WGAN_GP"), "wide", 40, 0)[1:]
    assert all(0.1 <= s["penalty_weight"] <= 100 for s in gp)
    assert methods.get("WGAN").hparams()["clip"] == 0.01


def test_bad_ranges():
    with pytest.raises(ValueError, match="low <= high"):
        space.LogUniform(-2, -5)
    with pytest.raises(ValueError, match="expected"):
        space.parse(("gauss", 0, 1))


def _tiny_sweep(methods_="NS_GAN,WGAN", imports=""):
    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = "tiny", 0, 16, imports
    study = ml_collections.ConfigDict()
    study.name = "ring8"
    study.trial = load_config("ring8_mlp", num_d_steps=40, checkpoint_every=20, batch_size=32,
                              steps_per_call=5)
    study.trial.eval = ml_collections.ConfigDict({"num_samples": 500})
    study.methods = methods_
    study.phases = [
        ml_collections.ConfigDict(dict(name="tuned", mode="tuned", range="narrow",
                                       num_settings=2, seeds=[0],
                                       fixed=dict(disc_iters=1, d_batch_norm=False))),
        ml_collections.ConfigDict(dict(name="seeds", mode="seeds", source="tuned",
                                       num_seeds=2)),
    ]
    c.studies = [study]
    return c


def _table(workdir):
    """The report's table and every trial's evaluations; wall times aside."""
    recs = records.load([workdir])
    rows = [{k: v for k, v in row.items() if k != "device_hours"}
            for row in build.study_table(recs)]
    return rows, sorted(
        (r.trial_id, r.status, json.dumps(r.evals, sort_keys=True)) for r in recs)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> str:
    """The workdir of `_tiny_sweep("NS_GAN")` run once to the end: the reference of the
    kill-and-restart test and the records of the report test (one run checked both ways)."""
    workdir = str(tmp_path_factory.mktemp("straight"))
    runner.run_sweep(_tiny_sweep("NS_GAN"), workdir, progress=False, log=lambda *a: None)
    return workdir


def test_killed_sweep_restarts_to_the_same_report(straight, tmp_path, monkeypatch):
    sweep = _tiny_sweep("NS_GAN")
    # kill #1: inside the second group, after its first checkpoint was saved
    calls = {"n": 0}
    real_train_group = loop.train_group

    def killed_train_group(*args, on_checkpoint=None, **kwargs):
        calls["n"] += 1

        def hook(step, states):
            if calls["n"] == 2 and step == 20:
                raise KeyboardInterrupt
            on_checkpoint(step, states)

        return real_train_group(*args, on_checkpoint=hook, **kwargs)

    monkeypatch.setattr(loop, "train_group", killed_train_group)
    with pytest.raises(KeyboardInterrupt):
        runner.run_sweep(sweep, str(tmp_path / "killed"), progress=False, log=lambda *a: None)
    monkeypatch.setattr(loop, "train_group", real_train_group)
    recs, _ = records.read(records.result_files(str(tmp_path / "killed")))
    assert len(recs) == 2  # the first group's records survived
    counts = runner.run_sweep(sweep, str(tmp_path / "killed"), progress=False,
                              log=lambda *a: None)
    assert counts["skipped"] == 2 and counts["run"] == 2  # no finished trial re-run
    assert _table(straight) == _table(tmp_path / "killed")
    # a third run has nothing left to do
    assert runner.run_sweep(sweep, str(tmp_path / "killed"), progress=False,
                            log=lambda *a: None)["run"] == 0


def test_report_table_recomputed_from_the_jsonl(straight, tmp_path):
    workdir = straight
    path = build.build([workdir], str(tmp_path / "report"))
    text = open(path).read()
    assert "| NS_GAN |" in text and "ring8_budget.png" in text
    assert os.path.getsize(tmp_path / "report" / "ring8_budget.png") > 1000
    # recompute each method's best and seeds mean straight from the lines of the files
    lines = [json.loads(line) for p in records.result_files(workdir) for line in open(p)]
    for row in build.study_table(records.load([workdir])):
        mine = [r for r in lines if r["method"] == row["method"]]
        tuned = [r["best"]["value"] for r in mine if r["phase"] == "tuned" and r["best"]]
        seeds = [r["best"]["value"] for r in mine if r["phase"] == "seeds" and r["best"]]
        assert row["best"] == max(tuned)
        assert row["seeds_mean"] == pytest.approx(np.mean(seeds))
        assert row["settings"] == 2 and row["seeds_n"] == 2
        assert f"| {row['method']} | {row['best']:.3g} |" in text


def test_vmapped_and_trial_parallel_groups_equal_trials_alone(tmp_path):
    config = load_config("ring8_mlp", num_d_steps=30, checkpoint_every=30, batch_size=32,
                         steps_per_call=10)
    setup = make_trial(config).setup
    hps = [dict(methods.get("NS_GAN").hparams(), lr=lr, beta1=b1)
           for lr, b1 in ((1e-3, 0.5), (3e-3, 0.0), (5e-4, 0.9))]
    seeds = [0, 1, 2]
    group = loop.train_group(group_of(config, seeds, hps), str(tmp_path / "g"), progress=False)
    # trial parallelism: the 3 trials spread over the 4 devices (padded to 4), whole batches
    config_t = config.copy_and_resolve_references()
    config_t.parallelism = "trials"
    by_trial = loop.train_group(group_of(config_t, seeds, hps), str(tmp_path / "t"),
                                progress=False)
    assert len(by_trial) == 3
    one_device = make_trial(config, num_devices=1).setup  # the arithmetic of a trial-mode device
    for i, run, alone_setup in ((0, group, setup), (2, group, setup), (2, by_trial, one_device)):
        alone = loop.train_group(group_of(config, [seeds[i]], [hps[i]], like=alone_setup),
                                 str(tmp_path / f"a{i}{alone_setup.num_devices}"),
                                 progress=False)[0]
        for name, value in alone["final_losses"].items():
            np.testing.assert_allclose(run[i]["final_losses"][name], value, rtol=1e-4, atol=1e-6)


def test_cpu_sweeps_spread_each_group_over_the_devices():
    # 4 simulated CPU devices (conftest): one trial group per device, results as if alone (above)
    sweep = _tiny_sweep()
    assert parallel.layout_policy(sweep) == "cpu"  # "auto" on a CPU
    ring = make_trial(sweep.studies[0].trial)
    conv = make_trial(load_config("polygons_infogan"))
    assert runner.max_group_size(sweep, ring) == 16
    assert runner.max_group_size(sweep, conv) == 4  # one conv trial per device
    sweep.cpu_conv_trials_per_device = 2
    assert runner.max_group_size(sweep, conv) == 8
    run_as = runner.laid_out(ring, 6).setup
    assert run_as.parallelism == "trials" and ring.setup.parallelism == "data"  # ring unchanged
    assert run_as.trial_devices == 4 and run_as.per_device_batch == 32
    alone = runner.laid_out(ring, 3).setup  # fewer trials than devices: one device
    assert alone.num_devices == 1 and alone.per_device_batch == 32


def test_user_module_loss_joins_a_sweep(tmp_path, monkeypatch):
    (tmp_path / "my_losses.py").write_text(
        "import jax, jax.numpy as jnp\n"
        "from gancmp import losses, methods\n"
        "def sq_hinge(r, f):\n"
        "    '''D = E relu(1 - r)^2 + E relu(1 + f)^2, G = -E f.'''\n"
        "    return (jnp.mean(jax.nn.relu(1 - r) ** 2) + jnp.mean(jax.nn.relu(1 + f) ** 2),\n"
        "            -jnp.mean(f))\n"
        "losses.register('sq_hinge', sq_hinge)\n"
        "methods.register(methods.Method('SQ_HINGE', 'sq_hinge'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sweep = _tiny_sweep("SQ_HINGE", imports="my_losses")
    sweep.studies[0].phases = sweep.studies[0].phases[:1]
    # counted: the validation of a trial (`trial._setup`, what `make_trial` checks) and the
    # imports of the user module
    validated, imported = [], []
    real_setup, real_import = trial_lib._setup, importlib.import_module
    monkeypatch.setattr(trial_lib, "_setup", lambda c, *a: validated.append(c.get("seed"))
                        or real_setup(c, *a))
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imported.append(name)
                        or real_import(name, *a))
    runner.run_sweep(sweep, str(tmp_path / "w"), progress=False, log=lambda *a: None)
    recs = records.load([str(tmp_path / "w")])
    assert {r.method for r in recs} == {"SQ_HINGE"} and len(recs) == 2
    assert all(r.status == "finished" and r.best for r in recs)
    # once per trial, plus the study's check of its base config before anything runs
    assert len(validated) == len(recs) + 1
    assert imported.count("my_losses") == 1  # once per process, not once per trial or group
    sys.modules.pop("my_losses", None)


def test_corrupt_line_is_reported_and_skipped(tmp_path, capsys):
    path = str(tmp_path / "results-0.jsonl")
    records.append(path, Record.from_json({"trial_id": "a", "x": 1}))
    with open(path, "a") as f:
        f.write('{"trial_id": "b", "x": \n')
    records.append(path, Record.from_json({"trial_id": "c", "x": 3}))
    recs, bad = records.read([path])
    assert [(r.trial_id, r.extra) for r in recs] == [("a", {"x": 1}), ("c", {"x": 3})]
    assert len(bad) == 1 and bad[0].line == 2
    assert f"{path}:2" in capsys.readouterr().err


def test_bad_sweep_input(tmp_path):
    with pytest.raises(ConfigError, match="--shard"):
        runner.parse_shard("4/4")
    with pytest.raises(ConfigError, match="unknown 'NOPE'"):
        runner.run_sweep(_tiny_sweep("NOPE"), str(tmp_path), progress=False)
    sweep = _tiny_sweep()
    sweep.studies[0].phases[0].ranges = {"lr": ("log", -2.0, -4.0)}
    with pytest.raises(ConfigError, match="low <= high"):
        runner.run_sweep(sweep, str(tmp_path), progress=False)


def test_seeds_phase_waits_for_its_source():
    sweep = _tiny_sweep()
    study = sweep.studies[0]
    assert expand_phase(sweep, study, study.phases[1], []) is None


def _records_of(sweep, study, phase, best=1, score=1.0):
    """Records of every trial of a tuned phase as the config expands it now, setting `best` of
    each method scoring `score` (the others 0)."""
    trials = expand_phase(sweep, study, phase, [])
    return [{"study": study.name, "phase": phase.name, "phase_size": len(trials),
             "trial_id": t.trial_id, "method": t.method, "setting": t.setting,
             "hparams": dict(t.hparams), "best": {"score": score * (t.setting == best)}}
            for t in trials]


def test_a_grown_source_phase_is_chosen_from_once_its_new_trials_are_recorded(capsys):
    """num_settings raised 2 → 3 on a finished sweep: the seeds phase waits for the 2 new
    trials only, then picks from all 6 (records of both expansions); lowered again, the records
    of the dropped setting are left out with one line. An empty source phase is refused."""
    sweep = _tiny_sweep()
    study = sweep.studies[0]
    tuned, seeds = study.phases
    old = _records_of(sweep, study, tuned)  # setting 1 best
    tuned.num_settings = 3
    old_ids = {r["trial_id"] for r in old}
    new = [r for r in _records_of(sweep, study, tuned, best=2, score=2.0)
           if r["trial_id"] not in old_ids]
    assert len(new) == 2  # the first two settings keep their trial ids
    assert expand_phase(sweep, study, seeds, old) is None  # the new trials are not recorded
    trials = expand_phase(sweep, study, seeds, old + new)
    assert trials is not None and {t.setting for t in trials} == {2} and len(trials) == 4
    capsys.readouterr()
    tuned.num_settings = 2
    trials = expand_phase(sweep, study, seeds, old + new)
    assert {t.setting for t in trials} == {1}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 recorded trials of phase tuned" in err[0], err
    for field, value in (("num_settings", 0), ("methods", "")):
        sweep = _tiny_sweep()
        node = sweep.studies[0].phases[0] if field == "num_settings" else sweep.studies[0]
        node[field] = value
        with pytest.raises(ConfigError, match=field) as e:
            validate(sweep)
        assert "\n" not in str(e.value)


def test_shared_mode_gives_every_method_the_same_settings():
    sweep = _tiny_sweep("NS_GAN,WGAN,WGAN_GP,BEGAN")
    study = sweep.studies[0]
    phase = ml_collections.ConfigDict(dict(name="shared", mode="shared", range="narrow",
                                           num_settings=3, seeds=[0]))
    trials = expand_phase(sweep, study, phase, [])
    by_method = {}
    for t in trials:
        by_method.setdefault(t.method, []).append(t.hparams)
    assert sorted(by_method) == ["BEGAN", "NS_GAN", "WGAN", "WGAN_GP"]
    for i in range(3):
        settings = [hps[i] for hps in by_method.values()]
        assert len({(s["lr"], s["beta1"], s["disc_iters"]) for s in settings}) == 1
        assert 1e-4 <= settings[0]["lr"] <= 1e-3 and settings[0]["beta1"] == 0.5
        ns, wgan_gp = by_method["NS_GAN"][i], by_method["WGAN_GP"][i]
        assert wgan_gp["d_batch_norm"] is False  # no D batch norm under a gradient penalty
        assert by_method["WGAN"][i]["d_batch_norm"] == ns["d_batch_norm"]
    # each method's own parameters stay at its authors' defaults
    assert {h["clip"] for h in by_method["WGAN"]} == {0.01}
    assert {h["penalty_weight"] for h in by_method["WGAN_GP"]} == {10.0}
    assert {(h["gamma"], h["lambda_k"]) for h in by_method["BEGAN"]} == {(0.75, 1e-3)}
    assert len({h["lr"] for h in by_method["NS_GAN"]}) == 3  # distinct settings


def test_pairwise_intervals_need_two_settings_per_method():
    def rec(method, value):
        return Record(method=method, phase_mode="tuned", status="finished",
                      best={"metric": "f1", "value": value, "score": value})
    one_each = [rec("A", 0.1), rec("B", 0.0)]
    assert build.pairwise(one_each) == []  # one value per method: no spread to test against
    rows = build.pairwise([*one_each, rec("A", 0.3), rec("B", 0.05)])
    assert len(rows) == 1 and rows[0]["k"] == 1  # stats.default_k(2)
    assert rows[0]["low"] <= rows[0]["diff"] <= rows[0]["high"]


def test_the_seeds_phase_never_reuses_the_selected_run(tmp_path, monkeypatch):
    """v1's seeds 0..M−1 included the selected run's own seed 0 (retrained on nondeterministic
    GPUs, close to a fresh draw); here the same seed is the same computation, so the seeds
    phase trains M fresh seeds (1..M after a seed-0 source): the winner of the selection is
    not in the mean over seeds (issue 24, item 5). Every group's evaluator is made with the
    sweep's one `EvalResources` (its compiled programs and references shared by the groups)."""
    from gancmp.train import evaluation

    made, make = [], evaluation.make_evaluator
    monkeypatch.setattr(evaluation, "make_evaluator",
                        lambda trial, resources=None: made.append(resources) or make(trial,
                                                                                    resources))
    sweep = _tiny_sweep("NS_GAN")
    sweep.studies[0].phases = [
        ml_collections.ConfigDict(dict(name="shared", mode="shared", range="narrow",
                                       num_settings=1, seeds=[0],
                                       fixed=dict(disc_iters=1, d_batch_norm=False))),
        ml_collections.ConfigDict(dict(name="seeds", mode="seeds", source="shared",
                                       num_seeds=2, seed_protocol="v1")),
    ]
    workdir = str(tmp_path)
    counts = runner.run_sweep(sweep, workdir, progress=False, log=lambda *a: None)
    assert counts["run"] == 3  # shared seed 0; seeds 1 and 2
    assert len(made) == 2 and made[0] is not None and made[1] is made[0]  # two groups, one
    recs, _ = records.read(records.result_files(workdir))
    by = {(r.phase, r.seed): r for r in recs}
    assert sorted(by) == [("seeds", 1), ("seeds", 2), ("shared", 0)]
    source = by[("shared", 0)]
    for seed in (1, 2):
        rec = by[("seeds", seed)]
        assert rec.reused_from is None and rec.wall_time_s > 0  # trained, not copied
        assert rec.hparams == source.hparams and rec.trial_id != source.trial_id
    row, = build.study_table(records.load([workdir]))
    assert row["seeds_n"] == 2
    again = runner.run_sweep(sweep, workdir, progress=False, log=lambda *a: None)
    assert (again["run"], again["skipped"]) == (0, 3)


def test_a_shard_waits_at_the_phase_barrier_until_the_other_shard_records(tmp_path,
                                                                         monkeypatch):
    """Shard 1/2 trains its tuned group, then waits at the seeds phase (never exiting with a
    phase left) while shard 0 trains the other tuned group — run here from the wait itself —
    and then goes on to its seeds group: both phases done, nothing waiting. `wait=False`
    skips the phase instead, counting it."""
    sweep, workdir = _tiny_sweep(), str(tmp_path)
    looks = []

    def other_shard_runs(seconds):
        looks.append(seconds)
        if len(looks) == 1:
            runner.run_sweep(_tiny_sweep(), workdir, (0, 2), progress=False, log=lambda m: None)

    monkeypatch.setenv(runner.PHASE_POLL_ENV, "0.5")
    monkeypatch.setattr(runner, "_sleep", other_shard_runs)
    lines = []
    counts = runner.run_sweep(sweep, workdir, (1, 2), progress=False, log=lines.append)
    assert looks == [0.5] and counts["waiting"] == 0 and not counts["interrupted"]
    assert any("seeds: waits for phase tuned" in line for line in lines)
    recs, _ = records.read(records.result_files(workdir))
    assert {r.phase for r in recs} == {"tuned", "seeds"}
    assert len([r for r in recs if r.phase == "tuned"]) == 4  # both shards' groups
    skipped = runner.run_sweep(_tiny_sweep(), str(tmp_path / "alone"), (1, 2), progress=False,
                               log=lambda m: None, wait=False)
    assert skipped["waiting"] == 1 and looks == [0.5]

"""Nothing recorded is lost or counted twice: torn lines, re-run trials and groups, damaged
checkpoints, finished workdirs, time over resumes, and locks."""

import json
import os

import ml_collections
import pytest

from gancmp import records
from gancmp.records import Record
from gancmp.train import workdir
from gancmp.trial import make_trial
from tests.helpers import group_of, load_config


def _rec(trial_id, **fields):
    return Record.from_json({"trial_id": trial_id, "study": "s", "dataset": "d", "method": "M",
                             "status": "finished", "metric": "fid", "higher_is_better": False,
                             "metric_setup": {"n": 1}, **fields})


def test_a_record_after_a_torn_results_line_is_kept_and_the_line_warned_of_once(tmp_path,
                                                                               capsys):
    from gancmp.sweep import runner

    path = records.results_path(str(tmp_path), 0)
    records.append(path, _rec("a"))
    with open(path, "a") as f:
        f.write('{"trial_id": "b", "stat')  # a writer killed mid-record
    records.append(path, _rec("c"))
    recs, bad = records.read([path])
    assert [r.trial_id for r in recs] == ["a", "c"]
    assert [b.line for b in bad] == [2]
    # a sweep reads its results at each phase, then its report reads them: one warning
    runner._recorded(str(tmp_path))
    records.load([str(tmp_path)])
    assert records.read([path])[1] == bad  # still skipped and returned, not warned of again
    err = capsys.readouterr().err
    assert err.count("skipped a torn or corrupt line") == 1
    assert f"{path}:2: skipped a torn or corrupt line" in err


def test_the_store_keeps_one_record_per_trial_the_last(tmp_path):
    path = records.results_path(str(tmp_path), 0)
    for r in (_rec("a", x=1), _rec("b", x=2), _rec("a", x=3, status="diverged")):
        records.append(path, r)
    recs, _ = records.read([path])
    assert [(r.trial_id, r.extra["x"], r.status) for r in recs] == [("a", 3, "diverged"),
                                                                     ("b", 2, "finished")]


def test_the_report_counts_each_trial_once_the_last_record_wins(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    for path, recs in ((records.results_path(one, 0), [_rec("a", x=1), _rec("b", x=1)]),
                       (records.results_path(one, 1), [_rec("a", x=2)]),
                       (records.results_path(two, 0), [_rec("b", x=3, status="diverged"),
                                                     _rec("c", x=1)])):
        for r in recs:
            records.append(path, r)
    merged = records.load([one, two])
    assert sorted((r.trial_id, r.extra["x"], r.status) for r in merged) == [
        ("a", 2, "finished"), ("b", 3, "diverged"), ("c", 1, "finished")]


def test_a_torn_evals_line_is_skipped_and_the_next_row_starts_on_its_own_line(tmp_path, capsys):
    d = str(tmp_path)
    workdir.append_eval(d, 10, [{"fid": 3.0}], group=False)
    with open(os.path.join(d, workdir.EVALS_FILE), "a") as f:
        f.write('{"step": 20, "metri')  # killed while appending
    assert workdir.read_evals(d) == {10: [{"fid": 3.0}]}
    assert f"{workdir.EVALS_FILE}:2: skipped a torn or corrupt line" in capsys.readouterr().err
    workdir.append_eval(d, 20, [{"fid": 2.0}], group=False)
    assert workdir.read_evals(d) == {10: [{"fid": 3.0}], 20: [{"fid": 2.0}]}


def _tiny_sweep(methods="NS_GAN"):
    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = "tiny", 0, 16, ""
    study = ml_collections.ConfigDict()
    study.name = "ring8"
    study.trial = load_config("ring8_mlp", num_d_steps=20, checkpoint_every=10, batch_size=32,
                              steps_per_call=5)
    study.trial.eval = ml_collections.ConfigDict({"num_samples": 300})
    study.methods = methods
    study.phases = [ml_collections.ConfigDict(dict(
        name="tuned", mode="tuned", range="narrow", num_settings=2, seeds=[0],
        fixed=dict(disc_iters=1, d_batch_norm=False)))]
    c.studies = [study]
    return c


def _quiet(*args):
    pass


def test_a_shard_of_several_says_how_to_build_the_report(tmp_path):
    """`--shard i/N` with N > 1 writes no report (the others may still run): its last line
    says how to build it."""
    from gancmp.sweep import runner

    lines = []
    counts = runner.run_sweep(_tiny_sweep(), str(tmp_path), (1, 2), progress=False,
                              log=lines.append)
    assert counts["run"] == 0  # the one group belongs to shard 0
    assert lines[-1] == (f"shard 1/2 done; a sharded sweep writes no report: once all 2 shards "
                         f"have finished, build it with `gancmp report {tmp_path}`")


def test_a_partly_recorded_group_appends_its_missing_members_and_rescores_a_lost_eval(
        tmp_path, capsys):
    """A sweep killed while appending its group's records: the rerun records the rest of the
    group, never a second record of a trial. The group's evals.jsonl lost its row of the first
    checkpoint (a torn line): the resumed group evaluates that checkpoint again, so `best` is
    over every checkpoint, as before."""
    from gancmp.sweep import runner

    w = str(tmp_path)
    sweep = _tiny_sweep()
    # every checkpoint kept: the default keeps only the latest and the bests, and a row of a
    # deleted checkpoint could not be scored again (a real torn row is the last one written,
    # whose checkpoint, the latest, is always kept)
    sweep.keep_checkpoints = "all"
    runner.run_sweep(sweep, w, progress=False, log=_quiet)
    path = records.results_path(w, 0)
    lines = open(path).read().splitlines()
    assert len(lines) == 2
    open(path, "w").write(lines[0] + "\n")  # the kill came after the first record
    evals_path = os.path.join(w, json.loads(lines[0])["group_dir"], workdir.EVALS_FILE)
    rows = open(evals_path).read().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [10, 20]
    open(evals_path, "w").write(rows[0][:25] + "\n" + rows[1] + "\n")  # step 10's row torn
    counts = runner.run_sweep(sweep, w, progress=False, log=_quiet)
    assert "evals.jsonl:1: skipped a torn or corrupt line" in capsys.readouterr().err
    assert sorted(json.loads(r)["step"] for r in open(evals_path).read().splitlines()
                  if r.endswith("}")) == [10, 20]
    assert counts["run"] == 2
    after = open(path).read().splitlines()
    assert len(after) == 2 and after[0] == lines[0]
    assert json.loads(after[1])["trial_id"] == json.loads(lines[1])["trial_id"]
    again = json.loads(after[1])
    before = json.loads(lines[1])
    # the same trial, recorded as it was (its losses were kept with the checkpoint)
    for key in ("status", "steps", "final_losses", "evals", "best", "hparams"):
        assert again[key] == before[key], key


# --- damaged checkpoints ------------------------------------------------------------------------

def _ring(**overrides):
    base = dict(num_d_steps=300, checkpoint_every=100, batch_size=32)
    base.update(overrides)
    return load_config("ring8_mlp", **base)


def _train_group(config, w, **kwargs):
    from gancmp.train import loop

    return loop.train_group(group_of(config, [0]), w, progress=False, **kwargs)[0]


def _saved(path):
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(os.path.join(path, "default"))


def test_a_damaged_latest_checkpoint_is_set_aside_and_the_run_resumes_before_it(tmp_path,
                                                                               capsys):
    import shutil

    import jax
    import numpy as np

    w = str(tmp_path / "w")
    ck = os.path.join(w, workdir.CHECKPOINTS_DIR)
    _train_group(_ring(), w)
    shutil.copytree(os.path.join(ck, "300"), str(tmp_path / "300"))
    open(os.path.join(ck, "300", "default", "manifest.ocdbt"), "w").close()  # emptied
    shutil.rmtree(os.path.join(ck, "200", "default"))  # an item folder gone
    capsys.readouterr()
    outcome = _train_group(_ring(), w)
    err = capsys.readouterr().err
    assert outcome["status"] == "finished" and outcome["steps_this_run"] == 200  # from 100
    for step in (300, 200):
        assert f"gancmp: warning: checkpoint {step} in {ck} is damaged (" in err
    assert "Traceback" not in err
    damaged = os.path.join(w, workdir.DAMAGED_DIR)
    names = sorted(os.listdir(damaged))
    assert [n.split(".")[0] for n in names] == ["200", "300"]
    assert all(".damaged-" in n for n in names)
    assert os.path.getsize(os.path.join(damaged, names[1], "default", "manifest.ocdbt")) == 0
    assert sorted(os.listdir(ck)) == ["100", "200", "300"]
    # resume is exact: the retrained checkpoint equals the one that was damaged
    for a, b in zip(jax.tree.leaves(_saved(str(tmp_path / "300"))),
                    jax.tree.leaves(_saved(os.path.join(ck, "300"))), strict=True):
        np.testing.assert_array_equal(a, b)

    # every checkpoint damaged (data files cut short): the run starts over, saying so
    for step in ("100", "200", "300"):
        for folder, _, files in os.walk(os.path.join(ck, step, "default")):
            for f in files:
                if os.path.basename(folder) == "d":
                    os.truncate(os.path.join(folder, f), 3)
    outcome = _train_group(_ring(), w)
    err = capsys.readouterr().err
    assert outcome["steps_this_run"] == 300
    assert f"gancmp: warning: {ck}: no readable checkpoint left; starting over from step 0" in err
    assert len(os.listdir(damaged)) == 5


def test_a_checkpoint_of_another_state_is_not_taken_for_damage(tmp_path, capsys):
    import numpy as np

    from gancmp.train.checkpoint import Checkpoints

    ckpts = Checkpoints(str(tmp_path / "ck"))
    assert ckpts.restore_latest({"a": np.zeros(3)}) == (0, None)  # none yet: no warning
    ckpts.save(5, {"a": np.arange(3.0), "b": np.ones(2, np.float32)})
    step, state = ckpts.restore_latest({"a": np.zeros(3), "b": np.zeros(2, np.float32)})
    assert step == 5 and state["a"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError):  # orbax: the structures differ
        ckpts.restore_latest({"a": np.zeros(3), "c": np.zeros(2, np.float32)})
    assert ckpts.steps() == [5] and not os.path.exists(ckpts.damaged)
    assert "warning" not in capsys.readouterr().err
    ckpts.close()


@pytest.mark.parametrize("damage", ["stray folder", "empty latest", "no default"])
def test_a_step_folder_without_a_readable_item_is_set_aside_as_damaged(tmp_path, capsys, damage):
    """A step folder orbax cannot read a structure from (a kill between its creation and its
    first file, a stray `9999`, a missing `default/`) is damage, not another model: a rerun (a
    fresh manager) sets it aside with a warning naming it and restores the one before."""
    import shutil

    import numpy as np

    from gancmp.train.checkpoint import Checkpoints

    directory = str(tmp_path / "ck")
    ckpts = Checkpoints(directory)
    for step in (5, 10):
        ckpts.save(step, {"a": np.full(3, float(step))})
    ckpts.close()
    bad = "9999" if damage == "stray folder" else "10"
    if damage == "no default":
        shutil.rmtree(os.path.join(directory, bad, "default"))
    else:
        shutil.rmtree(os.path.join(directory, bad), ignore_errors=True)
        os.makedirs(os.path.join(directory, bad))
    ckpts = Checkpoints(directory)
    step, state = ckpts.restore_latest({"a": np.zeros(3)})
    ckpts.close()
    expected = 10 if bad == "9999" else 5
    assert step == expected and state["a"].tolist() == [float(expected)] * 3
    err = capsys.readouterr().err
    assert f"gancmp: warning: checkpoint {bad} in {directory} is damaged (" in err
    assert "Traceback" not in err
    assert [n.split(".")[0] for n in os.listdir(ckpts.damaged)] == [bad]
    assert bad not in os.listdir(directory)


# --- a finished workdir, time over resumes ------------------------------------------------------

def test_a_finished_trial_is_reported_and_left_untouched(tmp_path):
    from gancmp.train import loop

    w = str(tmp_path / "w")
    config = _ring(num_d_steps=100, checkpoint_every=50)
    first = loop.train_trial(make_trial(config), w, progress=False)[0]
    assert first.status == "finished" and first.final_losses
    files = {name: (os.stat(os.path.join(w, name)).st_mtime_ns,
                    open(os.path.join(w, name), "rb").read())
             for name in (workdir.RESULT_FILE, workdir.CONFIG_FILE, workdir.BOOKKEEPING_FILE)}
    record, done = loop.train_trial(make_trial(config), w, progress=False)
    assert done and record == first
    for name, (mtime, content) in files.items():
        path = os.path.join(w, name)
        assert (os.stat(path).st_mtime_ns, open(path, "rb").read()) == (mtime, content), name
    # a longer budget is not done: it trains on, and its time adds to the first run's
    config.num_d_steps = 150
    record, done = loop.train_trial(make_trial(config), w, progress=False)
    assert not done and record.steps == 150 and record.steps_this_run == 50
    assert record.wall_time_s > first.wall_time_s


def test_time_and_device_hours_add_up_over_resumes(tmp_path, monkeypatch):
    """A clock that advances 10 s per evaluated checkpoint: the totals count every process, and
    a kill loses only the time after the last checkpoint's bookkeeping was written."""
    now = {"t": 1000.0}
    monkeypatch.setattr(workdir, "clock", lambda: now["t"])
    seen = set()

    def evaluate(step, states, kill_at=None):
        if step not in seen:
            seen.add(step)
            now["t"] += 10.0
        if step == kill_at:
            raise KeyboardInterrupt

    w = str(tmp_path / "w")
    config = _ring(num_d_steps=20, checkpoint_every=10, steps_per_call=5)
    devices = make_trial(config).setup.num_devices
    first = _train_group(config, w, on_checkpoint=evaluate)  # checkpoints 10, 20
    assert first["wall_time_s"] == 20.0
    assert first["device_hours"] == pytest.approx(20.0 * devices / 3600)
    config.num_d_steps = 40
    with pytest.raises(KeyboardInterrupt):  # killed while evaluating checkpoint 30
        _train_group(config, w, on_checkpoint=lambda s, x: evaluate(s, x, kill_at=30))
    books = json.load(open(os.path.join(w, workdir.BOOKKEEPING_FILE)))
    assert (books["step"], books["wall_time_s"]) == (30, 20.0)  # written as 30 was saved
    last = _train_group(config, w, on_checkpoint=evaluate)  # resumes at 30, evaluates 40
    assert last["steps_this_run"] == 10
    assert last["wall_time_s"] == 30.0  # 20 + 10; the 10 s of the killed evaluation are lost
    assert last["device_hours"] == pytest.approx(30.0 * devices / 3600)
    assert last["final_losses"] and last["diverged_at"] is None


def test_a_resume_in_another_layout_is_refused_and_the_layout_recorded(tmp_path):
    """A trial's numbers depend on its execution layout: a group checkpointed trial-parallel on
    2 devices, resumed on 1 (`--cpu_devices=1`), is refused in one line naming both layouts,
    and resumes in its own; the records carry the layout."""
    from gancmp.config import ConfigError
    from gancmp.train import loop

    w = str(tmp_path / "w")
    config = _ring(num_d_steps=10, checkpoint_every=10, steps_per_call=5, parallelism="trials")
    two, one = (make_trial(config, num_devices=n).setup for n in (2, 1))
    first = loop.train_group(group_of(config, [0, 1], like=two), w, progress=False)
    layout = {"num_devices": 2, "parallelism": "trials", "trials_computed": 2,
              "steps_per_call": 5}
    assert [{k: o[k] for k in layout} for o in first] == [layout, layout]
    books = json.load(open(os.path.join(w, workdir.BOOKKEEPING_FILE)))
    assert books["layout"] == layout
    config.num_d_steps = 20
    with pytest.raises(ConfigError) as e:
        loop.train_group(group_of(config, [0, 1], like=one), w, progress=False)
    assert str(e.value) == (
        f"{w}: checkpoint 10 was trained with num_devices=2, this run has num_devices=1, and a "
        "trial's numbers depend on its layout; resume with the layout of the checkpoint (as "
        "many devices: config.num_devices, gancmp sweep --cpu_devices), or delete "
        f"{w}/checkpoints to train again from step 0")
    assert json.load(open(os.path.join(w, workdir.BOOKKEEPING_FILE))) == books  # untouched
    again = loop.train_group(group_of(config, [0, 1], like=two), w, progress=False)
    assert [(o["steps"], o["steps_this_run"], o["num_devices"]) for o in again] == [(20, 10, 2)] * 2


def test_a_sweep_records_its_groups_time_over_resumes(tmp_path, monkeypatch):
    """device_hours in the records (the report's column) is the group's total over every run,
    shared equally by its trials."""
    from gancmp.sweep import runner
    from gancmp.train import loop

    now = {"t": 0.0}
    monkeypatch.setattr(workdir, "clock", lambda: now["t"])
    real = loop.train_group
    kills = {"left": 1}

    def train_group(*args, on_checkpoint=None, **kwargs):
        def hook(step, states):
            now["t"] += 36.0
            if step == 20 and kills["left"]:
                kills["left"] -= 1
                raise KeyboardInterrupt
            on_checkpoint(step, states)
        return real(*args, on_checkpoint=hook, **kwargs)

    monkeypatch.setattr(loop, "train_group", train_group)
    w = str(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        runner.run_sweep(_tiny_sweep(), w, progress=False, log=_quiet)
    runner.run_sweep(_tiny_sweep(), w, progress=False, log=_quiet)
    recs, _ = records.read(records.result_files(w))
    assert len(recs) == 2
    # run 1: 36 s evaluating checkpoint 10 (kept), killed evaluating 20 (those 36 s lost);
    # run 2: resumes at 20 and evaluates it again, 36 s: 72 s for the group, 36 s per trial
    for r in recs:
        assert r.group_wall_time_s == 72.0 and r.wall_time_s == 36.0
        assert r.device_hours == pytest.approx(72.0 * r.num_devices / 2 / 3600)


# --- locks --------------------------------------------------------------------------------------

def _held_by_a_live_process(path):
    import socket

    holder = {"pid": os.getppid(), "host": socket.gethostname(),
              "start": "2030-01-01T00:00:00Z", "token": "t"}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").write(json.dumps(holder))
    return holder


def test_a_second_sweep_on_the_same_shard_refuses_and_touches_nothing(tmp_path):
    from gancmp import storage
    from gancmp.sweep import runner

    w = str(tmp_path)
    holder = _held_by_a_live_process(records.lock_path(w, 0))
    with pytest.raises(storage.LockedError, match=rf"in use by pid {holder['pid']} on "
                                                  rf"{holder['host']} since 2030-01-01T00:00:00Z"):
        runner.run_sweep(_tiny_sweep(), w, progress=False, log=_quiet)
    assert sorted(os.listdir(w)) == ["results-0.lock"]  # no group, no record
    # another shard of the same sweep has its own lock
    assert records.lock_path(w, 1) != records.lock_path(w, 0)


def test_a_second_train_on_the_same_workdir_refuses(tmp_path):
    from gancmp import storage
    from gancmp.train import evaluation, loop

    w = str(tmp_path / "w")
    holder = _held_by_a_live_process(os.path.join(w, workdir.LOCK_FILE))
    with pytest.raises(storage.LockedError, match=rf"in use by pid {holder['pid']}"):
        loop.train_trial(make_trial(_ring()), w, progress=False)[0]
    assert os.listdir(w) == [workdir.LOCK_FILE]
    workdir.check_config(make_trial(_ring()), w)
    with pytest.raises(storage.LockedError, match=rf"in use by pid {holder['pid']}"):
        evaluation.evaluate_trial(w)


def test_a_run_that_failed_before_its_first_checkpoint_leaves_its_workdir_reusable(
        tmp_path, monkeypatch, capsys):
    """A bad input found after the workdir was claimed (at the data load; a first compile is
    the same) leaves config.json and, after an abort, a lock: the corrected command, with
    another config, takes the workdir and trains. Once it holds a run, another config is
    refused."""
    import socket
    import subprocess
    import sys

    from gancmp.config import ConfigError
    from gancmp.data import source as data_source
    from gancmp.train import loop

    def unreadable(*args, **kwargs):
        raise OSError("ring8: cannot be read")

    w = str(tmp_path / "w")
    wrong = _ring(num_d_steps=20, checkpoint_every=10, steps_per_call=5, lr=0.5)
    monkeypatch.setattr(data_source, "load", unreadable)
    with pytest.raises(OSError, match="cannot be read"):
        loop.train_trial(make_trial(wrong), w, progress=False)
    monkeypatch.undo()
    assert os.listdir(w) == [workdir.CONFIG_FILE]  # claimed; the lock was released
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    open(os.path.join(w, workdir.LOCK_FILE), "w").write(json.dumps(
        {"pid": int(gone.stdout), "host": socket.gethostname(), "start": "2020-01-01T00:00:00Z",
         "token": "x"}))
    capsys.readouterr()
    right = _ring(num_d_steps=20, checkpoint_every=10, steps_per_call=5)
    record, done = loop.train_trial(make_trial(right), w, progress=False)
    assert record.status == "finished" and not done and record.steps == 20
    assert workdir.read_config(w).lr == right.lr
    err = capsys.readouterr().err
    assert (f"gancmp: warning: {os.path.join(w, workdir.CONFIG_FILE)}: replaced by the new "
            "config (fields: lr); the run it held failed before its first checkpoint") in err
    with pytest.raises(ConfigError, match=r"holds a run with a different config \(fields: lr\)"):
        loop.train_trial(make_trial(wrong), w, progress=False)


class _Unreadable:
    """A leaf with a shape and no readable value: copying it to the host fails the test."""

    def __init__(self, shape, dtype=None):
        self.shape = shape
        if dtype is not None:
            self.dtype = dtype

    def __array__(self, *args, **kwargs):
        raise AssertionError("a leaf of `like` was copied to the host")


def test_restore_reads_no_value_of_like_and_takes_dtypes_from_the_checkpoint(tmp_path):
    """`restore_latest` builds its target from shapes and dtypes alone (issue 22 item 9): a
    leaf that cannot be copied to the host (as an array sharded over another process's devices)
    is never read; a leaf without a dtype takes the one orbax's metadata records."""
    import jax
    import numpy as np

    from gancmp.train.checkpoint import Checkpoints

    ckpts = Checkpoints(str(tmp_path / "ck"))
    ckpts.save(7, {"a": np.arange(3.0, dtype=np.float32), "n": np.arange(4, dtype=np.int32)})
    ckpts.wait()
    like = {"a": _Unreadable((3,), np.dtype(np.float32)), "n": _Unreadable((4,))}
    step, state = ckpts.restore_latest(like)
    assert step == 7 and state["a"].tolist() == [0.0, 1.0, 2.0]
    assert state["n"].dtype == np.int32 and state["n"].tolist() == [0, 1, 2, 3]
    abstract = {"a": jax.ShapeDtypeStruct((3,), np.float32),
                "n": jax.ShapeDtypeStruct((4,), np.int32)}
    assert ckpts.restore_latest(abstract)[1]["a"].dtype == np.float32
    ckpts.close()

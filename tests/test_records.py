"""Records: version-1 lines (real ones, `fixtures/records/v1.jsonl`, written before `schema`
existed) load and round-trip; the report built from them is the one the dict-based report gave
(`fixtures/records/v1_tables.md`, made by the code of 7b36fb4; its headers since issue 24: a best
column per search phase, the power columns); the metric's direction turns into
a score in one function, for the evaluator's best checkpoint and the report alike; one
constructor builds a new record."""

import dataclasses
import json
import math
import os
import shutil
import types

import pytest

from gancmp import records
from gancmp.records import Record
from gancmp.report import tables

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "records")


def _v1_lines():
    with open(os.path.join(FIXTURES, "v1.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_version_1_lines_load_and_round_trip():
    lines = _v1_lines()
    assert {(x["study"], x["phase_mode"]) for x in lines} == {
        ("ring8", "tuned"), ("ring8", "seeds"), ("triangles", "shared")}
    for x in lines:
        assert "schema" not in x
        r = Record.from_json(x)
        assert r.schema == 1 and r.extra == {}  # every key of today's records is declared
        assert r.to_json() == {**x, "schema": records.SCHEMA}  # every value kept
        again = Record.from_json(json.loads(records.dumps(r)))
        assert again == dataclasses.replace(r, schema=records.SCHEMA)
        assert (r.trial_id, r.method, r.main_value) == (x["trial_id"], x["method"],
                                                        x["best"]["value"])
    # a key no field declares is kept and written back; a newer version is refused
    r = Record.from_json({**lines[0], "schema": 2, "new_field": [1]})
    assert r.extra == {"new_field": [1]} and r.to_json()["new_field"] == [1]
    with pytest.raises(ValueError, match="record schema 3"):
        Record.from_json({**lines[0], "schema": 3})


def test_a_version_1_result_json_still_counts_as_done(tmp_path):
    """A `gancmp train` workdir of the previous version: its result.json (a record without
    identity or `schema`) is read back, and a trial done for its budget is not trained again."""
    from gancmp.train import workdir

    assert records.GROUPS["identity"][:2] == ("sweep", "trial_id")
    x = {k: v for k, v in _v1_lines()[0].items() if k not in records.GROUPS["identity"]}
    (tmp_path / workdir.RESULT_FILE).write_text(json.dumps(x, indent=2))
    budget = types.SimpleNamespace(budget=types.SimpleNamespace(num_d_steps=x["steps"]))
    done = workdir.finished_record(str(tmp_path), budget)
    assert done == Record.from_json(x) and done.trial_id is None
    longer = types.SimpleNamespace(budget=types.SimpleNamespace(num_d_steps=x["steps"] + 1))
    assert workdir.finished_record(str(tmp_path), longer) is None


def _tables_text(recs):
    out = []
    for study in dict.fromkeys(r.study for r in recs):
        mine = [r for r in recs if r.study == study]
        out += [f"## {study}"] + tables.table_md(tables.study_table(mine))
        pairs = tables.pairwise(mine)
        out += tables.pairwise_md(pairs, "m") + tables.summary(pairs, "NS_GAN", "m")
    return "\n".join(out) + "\n"


def test_the_report_of_version_1_records_is_the_dict_based_one(tmp_path):
    shutil.copy(os.path.join(FIXTURES, "v1.jsonl"), tmp_path / "results-0.jsonl")
    recs = records.load([str(tmp_path)])
    with open(os.path.join(FIXTURES, "v1_tables.md")) as f:
        assert _tables_text(recs) == f.read()


def test_the_direction_flips_in_one_function():
    nan = math.nan
    fid = [{"step": 1, "fid": 30.0}, {"step": 2, "fid": 10.0}, {"step": 3, "fid": nan},
           {"step": 4, "fid": math.inf}]
    modes = [{"step": 1, "modes_covered": 3}, {"step": 2, "modes_covered": 8},
             {"step": 3, "modes_covered": 8}]
    best_fid = records.best_checkpoint(fid, "fid", higher_is_better=False)
    best_modes = records.best_checkpoint(modes, "modes_covered", higher_is_better=True)
    assert (best_fid["step"], best_fid["value"], best_fid["score"]) == (2, 10.0, -10.0)
    assert (best_modes["step"], best_modes["value"], best_modes["score"]) == (2, 8, 8.0)
    assert records.best_checkpoint([{"step": 1, "fid": nan}], "fid", False) == {}
    assert records.score(records.score(12.5, False), False) == 12.5  # its own inverse
    # the report's value is the recorded one, the best by the same score
    for metric, higher, evals, best in (("fid", False, fid, 10.0), ("modes_covered", True,
                                                                      modes, 8)):
        recs = [Record(trial_id=f"t{e['step']}", study="s", dataset="d", method="A",
                       phase_mode="tuned", phase="tuned", setting=e["step"],
                       status="finished", metric=metric, higher_is_better=higher,
                       best=records.best_checkpoint([e], metric, higher)) for e in evals]
        (row,) = tables.study_table(recs)
        assert row["best"] == best and type(row["best"]) is type(best)
        assert [r.main_score for r in recs] == [
            records.score(r.best.get("value"), higher) for r in recs]


def test_one_constructor_and_the_identity_a_sweep_adds():
    trial = types.SimpleNamespace(
        setup=types.SimpleNamespace(method=types.SimpleNamespace(name="NS_GAN"),
                                    dataset="ring8", arch="mlp"),
        config_json='{"seed": 0}')
    outcome = {"status": "finished", "steps": 10, "wall_time_s": 8.0, "device_hours": 0.5,
               "trials_in_group": 2, "diverged_at": None}
    r = records.from_trial(outcome, trial, {"metric": "fid", "higher_is_better": False})
    assert (r.method, r.config, r.wall_time_s, r.device_hours) == ("NS_GAN", {"seed": 0},
                                                                   4.0, 0.25)
    assert r.trial_id is None and "trial_id" not in r.to_json()  # a single trial: no identity
    assert r.to_json()["diverged_at"] is None and r.to_json()["schema"] == 2
    swept = dataclasses.replace(r, trial_id="s/t/0", study="s", group_wall_time_s=8.0)
    assert Record.from_json(swept.to_json()) == swept
    with pytest.raises(TypeError):
        records.from_trial({**outcome, "undeclared": 1}, trial)

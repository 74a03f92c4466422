"""The report: tables, statistics and figures recomputed from synthetic trial records whose truth
is known."""

import os

import numpy as np
import pytest

from gancmp.report import build, records, tables
from gancmp.report.records import MixedSetupError
from gancmp.sweep import store

PAPER_ORDER = ("MM_GAN", "NS_GAN", "LSGAN", "WGAN", "WGAN_GP", "DRAGAN", "BEGAN", "HINGE",
               "SNGAN", "RSGAN", "FISHER")


def make_records(shifts, settings=4, seeds=3, metric="fid", higher=False, seed=0,
                 study="s", dataset="d", sweep="syn", spread=1.0, pr=True, with_direction=True):
    """Synthetic records of one study: per method (name -> shift of its mean), `settings` tuned
    trials and `seeds` seeds-phase trials whose best metric is drawn from N(10 + shift, spread)
    (lower is better: a negative shift is better when `higher` is False)."""
    rng = np.random.default_rng(seed)
    out = []
    for method, shift in shifts.items():
        for phase, count in (("tuned", settings), ("seeds", seeds)):
            for i in range(count):
                value = float(10.0 + shift + spread * rng.standard_normal())
                best = {"metric": metric, "value": value, "step": 100,
                        "score": value if higher else -value}
                if pr:
                    best.update(precision=float(rng.uniform(0.2, 0.9)),
                                recall=float(rng.uniform(0.1, 0.8)))
                r = {"trial_id": f"{study}-{method}-{phase}-{i}", "study": study,
                     "dataset": dataset, "phase": phase, "phase_mode": phase,
                     "method": method, "setting": i, "status": "finished", "best": best,
                     "metric": metric, "metric_setup": {"n": 1}, "device_hours": 0.01,
                     "sweep": sweep}
                if with_direction:
                    r["higher_is_better"] = higher
                out.append(r)
    return out


def write_records(workdir, recs, shard=0):
    path = store.results_path(str(workdir), shard)
    os.makedirs(str(workdir), exist_ok=True)
    for r in recs:
        store.append(path, r)
    return str(workdir)


def _tables(workdir):
    recs = records.load([workdir])
    return [{k: v for k, v in row.items() if k != "device_hours"}
            for row in tables.study_table(recs)]


def test_direction_is_read_from_the_records(tmp_path):
    # an FID study: lower is better, so the best is the smallest value and the pairwise
    # differences are in FID units (A − B > 0: A is worse)
    recs = make_records({"A": 0.0, "B": 5.0}, settings=3, seeds=2, spread=0.1)
    workdir = write_records(tmp_path / "w", recs)
    assert records.direction(records.load([workdir])) == ("fid", False)
    rows = _tables(workdir)
    for row in rows:
        tuned = [r["best"]["value"] for r in recs
                 if r["method"] == row["method"] and r["phase"] == "tuned"]
        assert row["best"] == min(tuned)
    pair = tables.pairwise(records.load([workdir]))[0]
    assert (pair["a"], pair["b"]) == ("A", "B") and pair["diff"] == pytest.approx(-5, abs=0.5)
    # the recorded direction wins over anything the values could suggest: the same numbers
    # recorded as "higher is better" turn the best into the largest value
    flipped = [dict(r, higher_is_better=True, best=dict(r["best"], score=r["best"]["value"]))
               for r in recs]
    workdir = write_records(tmp_path / "f", flipped)
    assert records.direction(records.load([workdir])) == ("fid", True)
    for row in _tables(workdir):
        assert row["best"] == max(r["best"]["value"] for r in recs
                                  if r["method"] == row["method"] and r["phase"] == "tuned")


@pytest.mark.parametrize("metric,higher", [("fid", False), ("kid", False), ("f1", True),
                                           ("modes_covered", True), ("inception_score", True),
                                           ("precision", True), ("recall", True)])
def test_old_records_fall_back_to_the_known_directions(tmp_path, metric, higher):
    recs = make_records({"A": 0.0}, settings=2, seeds=0, metric=metric, higher=higher,
                        with_direction=False)
    assert "higher_is_better" not in recs[0]
    assert records.direction(records.load([write_records(tmp_path, recs)])) == (metric, higher)


def test_unknown_or_mixed_directions_are_refused_in_one_line(tmp_path):
    old = make_records({"A": 0.0}, settings=2, seeds=0, metric="sharpness",
                       with_direction=False)
    workdir = write_records(tmp_path / "old", old)
    with pytest.raises(MixedSetupError, match="sharpness") as e:
        records.load([workdir])
    assert store.results_path(workdir, 0) in str(e.value) and "\n" not in str(e.value)
    # the same unknown metric with its direction recorded is fine
    new = make_records({"A": 0.0}, settings=2, seeds=0, metric="sharpness", higher=True)
    assert records.direction(records.load([write_records(tmp_path / "new", new)])) == (
        "sharpness", True)
    # two shards of one study that disagree on the direction, or on the metric
    fid = make_records({"A": 0.0}, settings=2, seeds=0)
    for other in (make_records({"B": 0.0}, settings=2, seeds=0, higher=True),
                  make_records({"B": 0.0}, settings=2, seeds=0, metric="kid")):
        workdir = str(tmp_path / f"mixed-{other[0]['metric']}-{other[0]['higher_is_better']}")
        write_records(workdir, fid, shard=0)
        write_records(workdir, other, shard=1)
        with pytest.raises(MixedSetupError, match="study s: trial s-B-tuned-0") as e:
            records.load([workdir])
        assert store.results_path(workdir, 1) in str(e.value) and "\n" not in str(e.value)
    bad = [dict(r, higher_is_better="yes") for r in fid]
    with pytest.raises(MixedSetupError, match="higher_is_better must be true or false"):
        records.load([write_records(tmp_path / "bad", bad)])


def test_sweep_name_in_the_title(tmp_path):
    workdir = write_records(tmp_path, make_records({"A": 0.0, "B": 1.0}, settings=2, seeds=0,
                                                   sweep="quick", pr=False))
    text = open(build.build([workdir], str(tmp_path / "report"))).read()
    assert text.startswith("# Loss comparison report: sweep quick\n")

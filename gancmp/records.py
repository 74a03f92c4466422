"""What a trial produced: the `Record` (one versioned schema, one constructor), the metric's
direction and score (the one place a "lower is better" metric is turned into "higher is better"),
and the results files (`results-<i>.jsonl`: append, read, merge, refuse mixed setups).

A record is one JSON object, flat: `result.json` of a `gancmp train` workdir holds one, a sweep's
`results-<i>.jsonl` one per line. Versions (field `schema`):
  1  every record written before the field existed (no `schema` key);
  2  the same fields, with `"schema": 2`.
`Record.from_json` reads both (a key it does not know is kept in `extra` and written back, so
nothing is lost); `Record.to_json` writes the current version. A record written by a newer
gancmp (a larger `schema`) is refused with a message, never half read.

Results files: records are appended whole, a group's at once, and fsync'd, starting on a fresh
line (`storage.append_lines`; on gs:// each append is one new object, never a rewrite of the
file), so a killed sweep loses at most the group it was recording; a torn or
corrupt line is reported with its file and line number and skipped, never taking the other records
with it. A trial id has one record: when a file holds several (a trial recorded again), the reader
keeps the last, and the runner never appends a trial that is already recorded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gancmp import storage

if TYPE_CHECKING:
    from gancmp.trial import Trial

SCHEMA = 2  # the version `to_json` writes; a record without `schema` is version 1
BadLine = storage.BadLine

# Directions of the metrics gancmp has recorded, for records written before each record carried
# its own `higher_is_better`.
KNOWN_DIRECTIONS = {"fid": False, "kid": False, "modes_covered": True, "f1": True,
                    "precision": True, "recall": True, "inception_score": True,
                    # issue 25's (`gancmp.metrics.suite`; their records carry the direction)
                    "density": True, "coverage": True, "prd_f8": True, "prd_f1_8": True,
                    "fd_inf": False, "cmmd": False}


class MixedSetupError(ValueError):
    """Records that cannot be compared as one study: different metric setups, main metrics or
    directions, or a main metric whose direction is neither recorded nor known. One line, for
    the command line."""


def score(value: Any, higher_is_better: bool) -> Any:
    """The metric oriented so that higher is better: `value` itself, or −`value` for a metric
    where lower is better (FID); None for a missing or NaN value. The only place the direction
    flips a number: the evaluator ranks checkpoints by it, the report ranks records by it, and,
    as the flip is its own inverse (score(score(v, h), h) == v), turns a statistic of scores
    (a best-of-k mean, a difference) back into the metric's units with it. Numbers come back as
    float; arrays of values (the report's statistics) are flipped element-wise."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) or getattr(value, "ndim", None) == 0:
        value = float(value)
        if math.isnan(value):
            return None
    return value if higher_is_better else -value


def best_checkpoint(evals: Sequence[Mapping[str, Any]], metric: str,
                    higher_is_better: bool) -> dict[str, Any]:
    """The best of a trial's evaluated checkpoints [{"step", **metrics}] by `metric` (the paper
    scores every checkpoint and keeps the best): {"metric", "value", "step", "score"
    (`score(value)`), **metrics}; {} when nothing was evaluated (or only NaN). The first of
    equally good checkpoints wins."""
    scored = [(score(e.get(metric), higher_is_better), e) for e in evals]
    scored = [(s, e) for s, e in scored if s is not None]
    if not scored:
        return {}
    best, e = max(scored, key=lambda se: se[0])
    return {"metric": metric, "value": e[metric], "step": e["step"],
            "score": best, **{k: v for k, v in e.items() if k != "step"}}


@dataclasses.dataclass(frozen=True)
class Record:
    """One trial's record. Every field may be None in a record read back (old or partial
    records: the report's own tests write a few fields); `to_json` leaves a None field out,
    except `diverged_at` (null: it never diverged). Units: seconds, device-hours, D updates.

    What was trained: `method`, `dataset`, `arch`, `seed`, `hparams` (the method's numeric
    hyperparameters), `config` (the trial's whole config), `num_d_steps` (its budget),
    `matmul_precision` and `compute_dtype` (the arithmetic it was trained with).

    How training went: `status` ("finished", "diverged" or "interrupted"), `steps` (D updates
    done), `diverged_at` (the step of the first NaN/inf, else None), `final_losses`,
    `wall_time_s` and `device_hours` (the trial's share: its group's totals over every resume
    divided equally among the group's `trials_in_group` trials), `steps_this_run`,
    `device_kind`, `samples` (the final sample picture; a finished trial only), and the
    execution layout, which the numbers depend on beyond float rounding (README,
    "Reproducibility"): `num_devices`, `parallelism`, `trials_computed` (the trials the
    group's program computed, padding included) and `steps_per_call`.

    Evaluation (absent when the trial was never evaluated): `metric` (the main metric),
    `higher_is_better` (its direction), `metric_setup` and `metric_setup_hash` (how it was
    measured), `evals` (every evaluated checkpoint, [{"step", **metrics}]), `best`
    (`best_checkpoint` by `metric`), `best_ema` (by "ema/<metric>", with a generator EMA).

    Sweep identity (None for a single trial; added by the sweep runner): `sweep`, `trial_id`,
    `study`, `phase`, `phase_mode` ("tuned", "shared" or "seeds"), `phase_size`, `setting`,
    `group_dir`, `group_index`, `group_seeds`, `group_hparams`, `group_wall_time_s` (the
    group's whole time), `provenance` (code and package versions, backend), `reused_from` (a
    seeds-phase trial recorded as a copy of its source trial's record: written by versions
    before issue 24 only; a seeds phase now trains fresh seeds).

    `schema`: the version the record was read as (`SCHEMA` for a new one). `extra`: keys of a
    read record that no field declares, written back as they were.
    """

    # what was trained
    method: str | None = None
    dataset: str | None = None
    arch: str | None = None
    seed: int | None = None
    hparams: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    num_d_steps: int | None = None
    matmul_precision: str | None = None
    compute_dtype: str | None = None
    # how training went
    status: str | None = None
    steps: int | None = None
    diverged_at: int | None = None
    final_losses: dict[str, float] | None = None
    wall_time_s: float | None = None
    device_hours: float | None = None
    steps_this_run: int | None = None
    device_kind: str | None = None
    num_devices: int | None = None
    parallelism: str | None = None
    trials_in_group: int | None = None
    trials_computed: int | None = None
    steps_per_call: int | None = None
    samples: str | None = None
    # evaluation
    metric: str | None = None
    higher_is_better: bool | None = None
    metric_setup: dict[str, Any] | None = None
    metric_setup_hash: str | None = None
    evals: list[dict[str, Any]] | None = None
    best: dict[str, Any] | None = None
    best_ema: dict[str, Any] | None = None
    # sweep identity
    sweep: str | None = None
    trial_id: str | None = None
    study: str | None = None
    phase: str | None = None
    phase_mode: str | None = None
    phase_size: int | None = None
    setting: int | None = None
    group_dir: str | None = None
    group_index: int | None = None
    group_seeds: list[int] | None = None
    group_hparams: list[dict[str, Any]] | None = None
    group_wall_time_s: float | None = None
    provenance: dict[str, Any] | None = None
    reused_from: str | None = None
    # the format
    schema: int = SCHEMA
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Any) -> Record:
        """A record from its JSON object, version 1 or 2. ValueError for something that is not
        a record: not an object, a `schema` this version cannot read, a declared field used
        for the format (`extra`)."""
        if not isinstance(value, Mapping):
            raise ValueError(f"a record is a JSON object, got {type(value).__name__}")
        version = value.get("schema", 1)
        if version not in (1, SCHEMA):
            raise ValueError(f"record schema {version!r}: this gancmp reads versions 1 to "
                             f"{SCHEMA}; read it with a newer gancmp")
        known = {k: v for k, v in value.items() if k in _DATA_FIELDS}
        extra = {k: v for k, v in value.items() if k not in _DATA_FIELDS and k != "schema"}
        if "extra" in extra:
            raise ValueError("a record's key `extra` is reserved")
        return cls(**known, schema=version, extra=extra)

    def to_json(self) -> dict[str, Any]:
        """The record's JSON object in the current version (`"schema": SCHEMA`): its fields in
        declaration order (None ones left out, `diverged_at` always written), then `extra`."""
        out: dict[str, Any] = {"schema": SCHEMA}
        for name in _DATA_FIELDS:
            value = getattr(self, name)
            if value is not None or name in _KEEP_NULL:
                out[name] = value
        out.update(self.extra)
        return out

    def direction(self, source: str | None = None) -> tuple[str, bool] | None:
        """(main metric, higher is better), None when the record names no metric (an old
        record of a trial never evaluated). The direction is the record's `higher_is_better`;
        records written before it existed fall back to KNOWN_DIRECTIONS. Raises
        MixedSetupError naming `source` (the record's file) and the trial otherwise."""
        where = f"trial {self.trial_id or '?'}"
        where = f"{source}: {where}" if source else where
        best_metric = (self.best or {}).get("metric")
        if self.metric and best_metric and self.metric != best_metric:
            raise MixedSetupError(f"{where}: metric is {self.metric!r} but its best checkpoint "
                                  f"was ranked by {best_metric!r}")
        metric = self.metric or best_metric
        if not metric:
            return None
        higher = self.higher_is_better
        if higher is None:
            if metric not in KNOWN_DIRECTIONS:
                raise MixedSetupError(
                    f"{where}: metric {metric!r} has no higher_is_better and its direction is "
                    f"not known (known: {', '.join(sorted(KNOWN_DIRECTIONS))}); add "
                    "\"higher_is_better\": true or false to its records")
            return metric, KNOWN_DIRECTIONS[metric]
        if not isinstance(higher, bool):
            raise MixedSetupError(f"{where}: higher_is_better must be true or false, got "
                                  f"{higher!r}")
        return metric, higher

    @property
    def main_value(self) -> float | None:
        """The main metric at the best checkpoint, as recorded (`best["value"]`); None when the
        trial has no best checkpoint (never evaluated, or diverged before its first)."""
        return (self.best or {}).get("value")

    @property
    def main_score(self) -> float | None:
        """`score` of `main_value` (higher is better), for ranking trials; None without one."""
        direction = self.direction()
        return None if direction is None else score(self.main_value, direction[1])


_DATA_FIELDS = tuple(f.name for f in dataclasses.fields(Record) if f.name not in
                     ("schema", "extra"))
# The record's fields by group, in declaration order (`Record`'s docstring says what each holds)
GROUPS = {
    "trained": _DATA_FIELDS[:_DATA_FIELDS.index("status")],
    "training": _DATA_FIELDS[_DATA_FIELDS.index("status"):_DATA_FIELDS.index("metric")],
    "evaluation": _DATA_FIELDS[_DATA_FIELDS.index("metric"):_DATA_FIELDS.index("sweep")],
    "identity": _DATA_FIELDS[_DATA_FIELDS.index("sweep"):],
}
_KEEP_NULL = frozenset({"diverged_at"})


def from_trial(outcome: Mapping[str, Any], trial: Trial,
               evaluation: Mapping[str, Any] | None = None) -> Record:
    """The one constructor of a new record: the training `outcome` of one trial of a group
    (`loop.train_group`: status, steps, losses, layout, and the group's wall time and
    device-hours, which become this trial's equal share), what was trained (`trial`: method,
    dataset, arch, its config) and the evaluation summary (`evaluation.TrialEvals.summary`:
    evals, best, metric, higher_is_better, metric_setup). A sweep adds its identity with
    `dataclasses.replace`. An unknown key of `outcome` or `evaluation` is a TypeError (every
    field is declared on `Record`)."""
    setup, share = trial.setup, int(outcome.get("trials_in_group") or 1)
    fields = {**outcome, "method": setup.method.name, "dataset": setup.dataset,
              "arch": setup.arch, "config": json.loads(trial.config_json), **(evaluation or {})}
    fields["group_wall_time_s"] = fields.get("wall_time_s")  # the group's, beside this share
    for total in ("wall_time_s", "device_hours"):
        if fields.get(total) is not None:
            fields[total] = fields[total] / share
    return Record(**fields)


# --- the results files ---------------------------------------------------------------------


def results_path(workdir: str, shard: int) -> str:
    """Shard `shard`'s results file, `results-<shard>.jsonl`."""
    return os.path.join(str(workdir), f"results-{shard}.jsonl")


def lock_path(workdir: str, shard: int) -> str:
    """The lock of shard `shard` of the sweep in `workdir` (`storage.lock`): one process at a
    time trains and records that shard."""
    return os.path.join(str(workdir), f"results-{shard}.lock")


def result_files(workdir: str) -> list[str]:
    """Every shard's results file under `workdir` (`storage.jsonl_files`: on gs:// a file is
    its appended parts, `results-<i>.jsonl.parts/`, after a whole file written by an earlier
    gancmp)."""
    return storage.jsonl_files(str(workdir), "results-*.jsonl")


def dumps(record: Record, **kwargs: Any) -> str:
    """The record as JSON text (values JSON cannot hold: numpy scalars and arrays as numbers
    and lists, anything else as str); `kwargs` go to `json.dumps` (indent)."""
    return json.dumps(record.to_json(), default=_plain, **kwargs)


def append(path: str, *recs: Record) -> None:
    """Appends the records, one line each, keys sorted, in one append (`storage.append_lines`:
    local files fsync'd; gs:// one new object holding them, whatever the file holds already)."""
    storage.append_lines(path, [dumps(r, sort_keys=True) for r in recs])


def read(paths: Iterable[str], warn: bool = True) -> tuple[list[Record], list[BadLine]]:
    """The records of the given files, one per trial id — the last one read (files in the order
    given) at the place of the first — and the lines skipped as corrupt or not a record (with
    `warn`, each one warning line on stderr, once per process: a sweep reads its results at
    every phase and its report reads them again)."""
    by_id: dict[str, Record] = {}
    bad: list[BadLine] = []
    for path in paths:
        values, skipped = storage.read_jsonl(path, check=_check, warn=False)
        bad.extend(skipped)
        for b in skipped:
            if warn and b not in _WARNED:
                _WARNED.add(b)
                storage.warning(str(b))
        for value in values:
            record = Record.from_json(value)
            by_id[record.trial_id] = record
    return list(by_id.values()), bad


_WARNED: set[BadLine] = set()  # the skipped lines this process has warned of (`read`)


def _check(value: Any) -> None:
    record = Record.from_json(value)  # ValueError: not a record
    if not isinstance(record.trial_id, str):
        raise ValueError("not a trial record (no trial_id)")


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def load(dirs: Sequence[str]) -> list[Record]:
    """All records under `dirs` (every `results-*.jsonl`), each trial counted once: a trial id
    recorded more than once (a re-run, copies of a sweep merged twice) keeps its last record,
    reading the directories in the order given and each one's shards in order. Refuses
    (MixedSetupError) to mix records of one study that differ in what was trained (dataset,
    model, budget: `check_setups`), in their metric setup or precision, or in their main metric
    or its direction."""
    paths = [p for d in dirs for p in result_files(d)]
    if not paths:
        raise FileNotFoundError(f"no results-*.jsonl under {', '.join(dirs)}")
    by_id: dict[str, Record] = {}
    sources: dict[str, str] = {}
    for path in paths:
        for r in read([path])[0]:
            r.direction(path)
            by_id[r.trial_id] = r
            sources[r.trial_id] = path
    merged = list(by_id.values())
    check_setups(merged)
    for study in dict.fromkeys(r.study for r in merged):
        direction([r for r in merged if r.study == study], sources)
    return merged


# What changes a trial's numbers besides its method, hyperparameters and seed: the records of one
# study must agree on each (`check_setups`); the record's own field, else its config's. A record
# that carries no value of a field (an old or partial record) is not compared on it.
SETUP_FIELDS = ("dataset", "data_seed", "arch", "width_multiplier", "z_dim", "batch_size",
                "num_d_steps", "checkpoint_every", "bn_momentum", "resample_z_for_g",
                "g_ema_decay")


def check_setups(records: Sequence[Record]) -> None:
    """Raises MixedSetupError, one line naming the field and both values, when records of one
    study differ in what was trained (`SETUP_FIELDS`: dataset, model, budget ...), in
    `metric_setup`, or in the arithmetic they were trained with (`precision`)."""
    first: dict[Any, Record] = {}
    for r in records:
        a = first.setdefault(r.study, r)
        where = f"study {r.study} ({r.dataset}): trial {r.trial_id} was"
        for field in SETUP_FIELDS:
            mine, theirs = setup_value(r, field), setup_value(a, field)
            if None not in (mine, theirs) and mine != theirs:
                raise MixedSetupError(
                    f"{where} trained with {field}={mine}, trial {a.trial_id} with "
                    f"{field}={theirs}; merge only records of one {field}")
        if a.metric_setup != r.metric_setup:
            raise MixedSetupError(
                f"{where} measured with {r.metric_setup}, trial {a.trial_id} with "
                f"{a.metric_setup}; merge only records with one metric setup")
        if precision(a) != precision(r):
            raise MixedSetupError(
                f"{where} trained with {_arithmetic(precision(r))}, trial {a.trial_id} with "
                f"{_arithmetic(precision(a))}; merge only records of one precision")


def setup_value(r: Record, field: str) -> Any:
    """A `SETUP_FIELDS` value of a record: its own field, else its config's; None if neither."""
    value = getattr(r, field, None)
    return (r.config or {}).get(field) if value is None else value


# What a backend computed before records carried their precision: XLA's defaults (TPU: one bf16
# pass; GPU: TF32; CPU: float32), with G and D in float32.
_UNRECORDED = {"cpu": "float32", "tpu": "bfloat16", "gpu": "tensorfloat32",
               "cuda": "tensorfloat32", "rocm": "tensorfloat32"}


def precision(r: Record) -> dict[str, Any]:
    """{"matmul_precision", "compute_dtype"} a record was trained with: its own fields, or, for a
    record written before they existed, what its backend (`provenance.backend`) computed then;
    None for a value that cannot be told."""
    if r.matmul_precision is not None:
        return {"matmul_precision": r.matmul_precision,
                "compute_dtype": r.compute_dtype or "float32"}
    backend = (r.provenance or {}).get("backend")
    return {"matmul_precision": _UNRECORDED.get(backend), "compute_dtype": "float32"}


def _arithmetic(p: Mapping[str, Any]) -> str:
    matmul = p["matmul_precision"] or "unrecorded"
    return f"matmul_precision={matmul}, compute_dtype={p['compute_dtype']}"


def direction(recs: Sequence[Record], sources: Mapping[str, str] | None = None
              ) -> tuple[str, bool]:
    """(main metric, higher is better) shared by a study's records (`Record.direction`).
    Raises MixedSetupError when two records disagree on either (naming both trials and, given
    `sources` = trial id -> file, their files) or when no record names its metric."""
    sources = sources or {}
    first: tuple[tuple[str, bool], Record] | None = None
    for r in recs:
        d = r.direction(sources.get(r.trial_id or ""))
        if d is None:
            continue
        if first is None:
            first = (d, r)
        elif d != first[0]:
            (metric, higher), other = first
            raise MixedSetupError(
                f"study {r.study or '?'}: trial {r.trial_id or '?'}{_in(sources, r)} ranks by "
                f"{_said(*d)}, trial {other.trial_id or '?'}{_in(sources, other)} by "
                f"{_said(metric, higher)}; merge only records of one main metric and direction")
    if first is None:
        study = (recs[0].study if recs else None) or "?"
        raise MixedSetupError(f"study {study}: no record names its main metric (field "
                              "\"metric\"), so the report cannot tell better from worse")
    return first[0]


def _said(metric: str, higher: bool) -> str:
    return f"{metric} ({'higher' if higher else 'lower'} is better)"


def _in(sources: Mapping[str, str], r: Record) -> str:
    path = sources.get(r.trial_id or "")
    return f" ({path})" if path else ""

"""A sweep config expanded into trials.

A sweep config (`configs/sweeps/*.py`) is a ConfigDict:

    name, seed (of the hyperparameter draws), max_trials_per_group, max_trials_per_device,
    layout and device_memory_gib (`gancmp.sweep.parallel`), compile_ahead
    (`gancmp.sweep.ahead`), imports,
    studies: list of
        name, trial (a full trial config: dataset, arch, budget ...), methods ("all", "paper",
        "paper_gans" or comma-separated names), equivalence_margins (optional, {metric: m}: the
        report tests "A and B are equivalent within ±m" for that metric), phases: list of
            name, mode ("tuned" | "shared" | "seeds"), range ("wide" | "narrow"),
            num_settings, seeds (list; tuned/shared), num_seeds, source phase and
            seed_protocol ("independent" | "v1"; seeds mode),
            overrides (trial config fields), fixed (hyperparameters pinned after sampling),
            ranges (the study's own distributions, e.g. {"lr": ("log", -3, -2)})

`tuned`: `num_settings` settings per method, drawn from that method's ranges (the paper's
protocol; setting 0 is the authors' default). `shared`: the same `num_settings` settings of the
shared parameters (lr, β1, disc_iters, D batch norm) for every method, its own parameters at their
defaults (the "same hyperparameters" comparison; a method's own ranges that fix a shared
parameter still hold: in the narrow range WGAN_GP and DRAGAN never get D batch norm). `seeds`: the
best setting of each method in the `source` phase, re-run with `num_seeds` seeds
(`seeds_phase_seeds`): "independent" (the default) draws seeds no tuned trial used, 1000, 1001,
...; "v1" small seeds as compare_gan v1's phase 3 (`generate_tasks_lib.py` `Phase3Auto`,
L193–196: `tf_seed` in range(num_repeat)). Neither includes the selected run's own seed: v1's
seeds 0..49 did, but v1 trained seed 0 again on GPUs whose reductions are nondeterministic, close
to a fresh draw, while here the same seed is the same computation, and the winner of the
selection itself in the mean over seeds would make it optimistic (the winner's curse). So "v1"
is 1..50 after a source run of seed 0: 50 fresh runs of the selected setting. Either way each
seed's data order follows the seed unless the trial config fixes `data_order_seed`. (Sweeps of
earlier versions recorded the selected run again as their seed 0, `reused_from` its source
trial: such a record is no longer among the phase's trials.) A seeds phase waits until every
trial of its source phase, as the config expands it now, is recorded: growing a finished phase
(a larger `num_settings`) waits for its new trials only; records of trials the expansion no
longer has (a smaller `num_settings`) are left out of the choice, with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import ml_collections

from gancmp import methods, storage
from gancmp.config import ConfigError, check_fields, import_user_modules
from gancmp.runtime import is_main_process
from gancmp.sweep import space
from gancmp.trial import Trial, check_method, make_trial, method_fits

MODES = ("tuned", "shared", "seeds")
# The fields a sweep, a study and a phase may have (see the module docstring); any other name is
# refused with the close matches, so a typo never passes as a dead field.
SWEEP_FIELDS = ("name", "seed", "max_trials_per_group", "max_trials_per_device", "compile_ahead",
                "cpu_conv_trials_per_device", "layout", "device_memory_gib", "keep_checkpoints",
                "imports", "studies")
STUDY_FIELDS = ("name", "trial", "methods", "phases", "equivalence_margins")
PHASE_FIELDS = ("name", "mode", "range", "num_settings", "seeds", "num_seeds", "source",
                "overrides", "fixed", "ranges", "seed_protocol")
SEED_PROTOCOLS = ("independent", "v1")
# (group, field, default) of config fields added after sweeps had recorded trials: left out of
# a trial's digest at their default, so that the trials recorded before keep their ids
DIGEST_DEFAULTS = (("fid", "matmul_precision", "float32"), ("eval", "metrics", None),
                   ("eval", "main_metric", None), ("eval", "feature_weights", None))
SEEDS_PHASE_OFFSET = 1000  # independent seeds-phase seeds: 1000, 1001, ... (never a tuned one's)


@dataclasses.dataclass(frozen=True)
class SweepTrial:
    """One trial of a sweep: the validated trial (`gancmp.trial.Trial`, made once when its
    phase is expanded) and where it came from (the identity its record carries)."""

    trial_id: str
    study: str
    phase: str
    method: str
    setting: int
    seed: int
    hparams: Mapping[str, Any] = dataclasses.field(compare=False, hash=False)
    trial: Trial = dataclasses.field(compare=False, hash=False)

    def group_key(self) -> str:
        """Trials with equal keys share one compiled program (vmapped together)."""
        return f"{self.study}/{self.phase}/{self.method}/d{self.hparams['disc_iters']}" \
               f"/bn{int(bool(self.hparams['d_batch_norm']))}"


def seeds_phase_seeds(protocol: str, num_seeds: int, exclude: Collection[int] = ()
                      ) -> list[int]:
    """The `num_seeds` seeds a seeds phase re-runs the best setting with: the first of
    `SEEDS_PHASE_OFFSET`, `SEEDS_PHASE_OFFSET` + 1, ... ("independent") or of 0, 1, ... ("v1",
    compare_gan v1's small `tf_seed`s) that are not in `exclude` (the selected run's own seed:
    no seeds-phase run repeats the run the selection saw)."""
    if protocol not in SEED_PROTOCOLS:
        raise ConfigError(f"seed_protocol: unknown {protocol!r}; allowed: "
                          f"{', '.join(SEED_PROTOCOLS)}")
    seed, out, skip = SEEDS_PHASE_OFFSET if protocol == "independent" else 0, [], set(exclude)
    while len(out) < num_seeds:
        if seed not in skip:
            out.append(seed)
        seed += 1
    return out


def method_names(selection: str | Sequence[str], trial: Any = None) -> list[str]:
    """"all" (every registered method; with a `trial` config, every one that can train on its
    dataset and arch, `check_method`), "paper" (the paper's study, as compare_gan v1 swept it:
    its seven GANs and the VAE baseline), "paper_gans" (the seven GANs), or names (a list or one
    comma-separated string)."""
    if isinstance(selection, str):
        if selection == "all":
            return [n for n in methods.names() if trial is None
                    or method_fits(methods.get(n), trial.dataset, trial.arch)]
        if selection == "paper":
            return [*methods.PAPER_METHODS, *methods.PAPER_BASELINES]
        if selection == "paper_gans":
            return list(methods.PAPER_METHODS)
        selection = [s.strip() for s in selection.split(",") if s.strip()]
    for name in selection:
        if name not in methods.names():
            allowed = ", ".join(["all", "paper", "paper_gans", *methods.names()])
            raise ConfigError(f"sweep methods: unknown {name!r}; allowed: {allowed}")
    return list(selection)


def validate(sweep: ml_collections.ConfigDict) -> None:
    """Checks a sweep config before anything runs; errors name the study and field."""
    check_fields(sweep, SWEEP_FIELDS, "sweep")
    import_user_modules(sweep)
    names = set()
    for study in sweep.studies:
        check_fields(study, STUDY_FIELDS, f"study {study.get('name')!r}")
        if study.name in names:
            raise ConfigError(f"sweep studies: duplicate study name {study.name!r}")
        names.add(study.name)
        if not method_names(study.methods, study.trial):
            raise ConfigError(f"study {study.name!r} methods: {study.methods!r} names no method "
                              f"that can train on {study.trial.dataset} with {study.trial.arch}")
        phases = set()
        for phase in study.phases:
            where = f"study {study.name!r} phase {phase.get('name')!r}"
            check_fields(phase, PHASE_FIELDS, where)
            known = methods.hparam_defaults()
            check_fields(phase.get("fixed") or {}, known, f"{where} fixed", "hyperparameter")
            check_fields(phase.get("ranges") or {}, known, f"{where} ranges", "hyperparameter")
            check_fields(phase.get("overrides") or {}, study.trial, f"{where} overrides")
            if phase.mode not in MODES:
                raise ConfigError(f"{where}: mode {phase.mode!r}; allowed: {', '.join(MODES)}")
            if phase.mode == "seeds":
                if phase.source not in phases:
                    raise ConfigError(f"{where}: source {phase.source!r} is not an earlier phase")
                try:
                    seeds_phase_seeds(phase.get("seed_protocol", "independent"), 0)
                except ConfigError as e:
                    raise ConfigError(f"{where}: {e}") from None
            elif not _trials_per_method(phase, where):
                raise ConfigError(f"{where}: num_settings {phase.get('num_settings')!r} with "
                                  f"seeds {list(phase.get('seeds', [0]))} gives no trials; "
                                  "num_settings must be at least 1 and seeds not empty")
            elif phase.range not in space.RANGES:
                raise ConfigError(
                    f"{where}: range {phase.range!r}; allowed: {', '.join(space.RANGES)}")
            else:
                for name in method_names(study.methods, study.trial):
                    try:
                        space.space(methods.get(name), phase.range, _ranges(phase))
                    except ValueError as e:
                        raise ConfigError(f"{where}: {e}") from None
            phases.add(phase.name)
        make_trial(study.trial)
        for name in method_names(study.methods, study.trial):
            try:
                check_method(methods.get(name), study.trial.dataset, study.trial.arch)
            except ConfigError as e:
                raise ConfigError(f"study {study.name!r} methods: {e}") from None


def _trials_per_method(phase, where: str) -> int:
    """Trials of each method a tuned or shared phase has: its settings times its seeds."""
    settings = phase.get("num_settings")
    if not isinstance(settings, int) or isinstance(settings, bool):
        raise ConfigError(f"{where}: num_settings: expected an integer, got {settings!r}")
    return max(settings, 0) * len(phase.get("seeds", [0]))


def _trial(study, phase: str, method: str, setting: int, seed: int,
           hparams: Mapping[str, Any], extra: Mapping[str, Any]) -> SweepTrial:
    config = ml_collections.ConfigDict(study.trial.to_dict())
    config.update(dict(extra))
    config.method = method
    config.seed = seed
    for name, value in hparams.items():
        config[name] = value
    digest = trial_digest(config.to_dict(), methods.get(method))
    trial_id = f"{study.name}/{phase}/{method}/s{setting:03d}/seed{seed}/{digest}"
    return SweepTrial(trial_id, study.name, phase, method, setting, seed, dict(hparams),
                      make_trial(config))


def trial_digest(config: Mapping[str, Any], method: methods.Method) -> str:
    """8 hex digits naming a trial's config (the end of its trial id): a sha256 of the config
    as JSON with sorted keys, less the hyperparameter fields of other methods (set or not, the
    trial ignores them). So a user module that declares a new hyperparameter changes no trial's
    id, and a record written before each method carried only its own hyperparameters gets the
    id its trial has now (`current_id`). Config fields added since trials were first recorded
    (`DIGEST_DEFAULTS`) count only when they differ from their default, so a trial keeps its
    id."""
    own, declared = method.hparams(), methods.hparam_defaults()
    plain = json.loads(json.dumps(dict(config), default=str))
    kept = {k: v for k, v in plain.items() if k not in declared or k in own}
    for group, field, default in DIGEST_DEFAULTS:
        if isinstance(kept.get(group), dict) and kept[group].get(field, default) == default:
            kept[group] = {k: v for k, v in kept[group].items() if k != field}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:8]


def current_id(record: Mapping[str, Any]) -> str:
    """The id the current version gives the trial of `record` (a record of an earlier version
    named its trial by a digest over every hyperparameter declared then); the recorded id when
    its method is not registered in this process."""
    if record.get("method") not in methods.names() or "config" not in record:
        return record["trial_id"]
    prefix = record["trial_id"].rsplit("/", 1)[0]
    return f"{prefix}/{trial_digest(record['config'], methods.get(record['method']))}"


def expand_phase(sweep, study, phase, records: Sequence[Mapping[str, Any]]
                 ) -> list[SweepTrial] | None:
    """The trials of one phase, or None when a seeds phase still waits for its source phase."""
    trials: list[SweepTrial] = []
    extra = dict(phase.get("overrides", {}))
    imports = _merged_imports(study.trial.get("imports"), sweep.get("imports"))
    if imports != (study.trial.get("imports") or ""):
        # the sweep's modules travel in every trial's config: a trial is rebuilt from its record
        # alone (`gancmp sample --trial`, `gancmp.load_generator`)
        extra["imports"] = imports
    names = method_names(study.methods, study.trial)
    if phase.mode in ("tuned", "shared"):
        for name in names:
            method = methods.get(name)
            if phase.mode == "tuned":
                settings = space.sample_settings(method, phase.range, phase.num_settings,
                                                 sweep.seed, overrides=_ranges(phase))
            else:
                pins = space.pinned(method, phase.range)
                settings = [method.hparams({**s, **{k: v for k, v in pins.items() if k in s}})
                            for s in _shared_settings(sweep, phase)]
            fixed = dict(phase.get("fixed", {}))
            for i, hp in enumerate(settings):
                hp = {**hp, **fixed}
                trials.extend(_trial(study, phase.name, name, i, seed, hp, extra)
                              for seed in phase.get("seeds", [0]))
        return trials
    source = next(p for p in study.phases if p.name == phase.source)
    expected = expand_phase(sweep, study, source, records)
    best = None if expected is None else best_settings(
        records, study.name, phase.source, names, {t.trial_id for t in expected})
    if best is None:
        return None
    protocol = phase.get("seed_protocol", "independent")
    for name in names:
        if name not in best:  # every trial of the method diverged: nothing to re-run
            continue
        rec = best[name]
        seeds = seeds_phase_seeds(protocol, phase.num_seeds, exclude=(rec.get("seed"),))
        trials.extend(_trial(study, phase.name, name, rec["setting"], seed, rec["hparams"], extra)
                      for seed in seeds)
    return trials


def _merged_imports(*lists: Any) -> str:
    """Module names of several `imports` fields (comma-separated strings or lists), each once,
    in order, comma-separated."""
    names: dict[str, None] = {}
    for mods in lists:
        if isinstance(mods, str):
            mods = mods.split(",")
        names.update((m.strip(), None) for m in mods or () if m.strip())
    return ",".join(names)


def _ranges(phase) -> dict[str, Any]:
    ranges = phase.get("ranges") or {}
    return {k: tuple(v) for k, v in dict(ranges).items()}


def _shared_settings(sweep, phase) -> list[dict[str, Any]]:
    """Settings of the shared parameters, identical for every method (the shared mode)."""
    reference = methods.Method("__shared__", "ns")
    drawn = space.sample_settings(reference, phase.range, phase.num_settings, sweep.seed,
                                  include_default=False, overrides=_ranges(phase))
    shared = set(methods.SHARED.search[phase.range])
    return [{k: v for k, v in s.items() if k in shared} for s in drawn]


def best_settings(records, study: str, phase: str, names: Sequence[str],
                  trial_ids: Collection[str]):
    """{method: its best record} of a finished phase, by the dataset's main metric, over the
    records of `trial_ids` (the phase's trials as the config expands it now); None while any of
    them is unrecorded. Records of a trial no longer among them (the phase once had more
    settings) are left out, with one warning line: a config that grows a finished phase waits
    only for its new trials, one that shrinks it chooses among the trials it still has."""
    mine = [r for r in records if r["study"] == study and r["phase"] == phase]
    recorded, trial_ids = {r["trial_id"] for r in mine}, set(trial_ids)
    if not trial_ids <= recorded:
        return None
    stale = len(recorded - trial_ids)
    if stale and is_main_process():
        storage.warning(f"study {study}: {stale} recorded trial{'s' * (stale > 1)} of phase "
                        f"{phase} {'are' if stale > 1 else 'is'} not among its "
                        f"{len(trial_ids)} trials as the config expands it now (an earlier "
                        "config's); left out of the choice of the best settings")
    best: dict[str, dict] = {}
    for r in mine:
        score = r.get("best", {}).get("score")
        if r["trial_id"] not in trial_ids or r["method"] not in names or score is None:
            continue
        if r["method"] not in best or score > best[r["method"]]["best"]["score"]:
            best[r["method"]] = r
    return best

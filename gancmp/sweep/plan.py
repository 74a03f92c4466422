"""`gancmp plan`: what a sweep costs before it is launched — trials, groups, programs, D updates,
FLOPs, checkpoint bytes, device memory per chip and hours on named accelerators — from the sweep
config alone: no training, no data.

Counts follow the runner (`runner.phase_groups`, `parallel.choose_layout`) on each accelerator's
devices. A seeds phase re-runs the best setting of its source phase, unknown before the sweep has
run: the plan assumes each method's setting 0 (the authors' default) wins, which fixes the class
(D steps, D batch norm) its seeds train in and so which program they reuse.

FLOPs: training from `nets.flops.train_step_flops` (the paper's layers; one G update per
`disc_iters` D updates) plus the gradient penalties (WGAN-GP, DRAGAN: D forward and input
gradient, differentiated again, ≈ 6 D forwards per D update), the VAE as 3 × (encoder +
decoder) per update; padding trials (`parallel`) are computed, so they count in the hours (not
in `train_flop`). Evaluation at every checkpoint (as sweeps do): generating the samples, and for
image sets the features of each metric network the config asks for (`config.eval.metrics`:
a metric naming "dinov2" needs DINOv2 ViT-L/14 at 224×224, "clip" or "cmmd" CLIP ViT-L/14 at
336×336, every other the Inception at 299×299; none given: the Inception alone; each counted by
`forward_macs`, `metric_network_flops`) plus KID's and precision/recall's n×n feature products
in each network's feature space, and the real test set's features once per study; polygon
sets: the samples plus recall's latent optimisation (targets × restarts × steps of G forward
and backward). Device memory per chip from the
compiled programs (`train.memory`, compiled here on this CPU: an estimate of an accelerator's),
one trial measured and extended linearly to the chip's trials. Compilation: `costs.COMPILE_S`
per program, on the critical path unless the runner compiles it ahead while the group before it
in the same phase trains and evaluates (`gancmp.sweep.ahead`; then only the excess counts).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from gancmp import losses, precision
from gancmp.config import ConfigError
from gancmp.data import registry as data_registry
from gancmp.metrics import networks, suite
from gancmp.nets.flops import forward_macs, train_step_flops
from gancmp.sweep import costs, parallel
from gancmp.sweep.ahead import compile_ahead
from gancmp.sweep.runner import groups_of
from gancmp.sweep.study import SweepTrial, expand_phase, validate
from gancmp.train import retention, schedule
from gancmp.train.memory import MemoryProbe
from gancmp.train.state import abstract_states

ACCEL_STEPS_PER_CALL = 100  # `step.plan_calls` on TPU/GPU: a rolled loop of up to 100


def check_accelerator(name: str) -> costs.Accelerator:
    """The accelerator called `name`; ConfigError naming the allowed ones otherwise."""
    known = costs.accelerators()
    if name not in known:
        raise ConfigError(f"--accelerator: unknown {name!r}; allowed: {', '.join(known)}")
    return known[name]


@dataclasses.dataclass
class _Class:
    """What the plan needs of one class of trials (one program up to K)."""

    config: ml_collections.ConfigDict
    conv: bool
    num_d_steps: int
    disc_iters: int
    train_flop: float  # one trial
    eval_flop: float  # one trial, every checkpoint
    real_flop: float  # the real side's features, once per study
    metric_flop: float  # the part of eval_flop the metric network computes (its precision's)
    checkpoints: int
    state_bytes: int
    tail: bool  # `loop_count` "fixed": a second program for the budget's last stretch
    memory: Any = None


@functools.cache
def inception_flops() -> float:
    """FLOPs of the FID Inception's pool3 features of one 299×299 image."""
    from gancmp.nets import inception

    x = jax.ShapeDtypeStruct((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3), np.float32)
    return 2.0 * forward_macs(inception.FIDInceptionV3(), inception.variable_shapes(), x)


@functools.cache
def metric_network_flops(name: str) -> float:
    """FLOPs of one image's features through metric network `name` ("inception", "dinov2",
    "clip") at its input size."""
    if name == "inception":
        return inception_flops()
    from gancmp.metrics import vit_features

    spec = vit_features.SPECS[name]
    x = jax.ShapeDtypeStruct((1, spec.input_size, spec.input_size, 3), np.float32)
    model = spec.model(spec.config, spec.dim, jax.lax.Precision.HIGHEST)
    return 2.0 * forward_macs(model, vit_features.variable_shapes(name), x)


def metric_networks(metrics: Any) -> tuple[str, ...]:
    """The feature networks the metrics of `config.eval.metrics` run on (`metrics.suite`: a
    comma-separated string or a list of names), in registry order; ("inception",) when none
    are given."""
    text = ",".join(metrics) if isinstance(metrics, list | tuple) else metrics
    needed = {m.network for m in suite.parse(text)}
    return tuple(n for n in networks.names() if n in needed)


def _class(trial: SweepTrial, probe: MemoryProbe | None) -> _Class:
    """The class of `trial`, its memory measured by `probe` (None: not measured)."""
    config, setup = trial.trial.config(), trial.trial.setup
    one = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype),
                       abstract_states(setup, trial.trial.hparams, 1))
    g, d = setup.networks()
    b = setup.batch_size
    z = jax.ShapeDtypeStruct((b, setup.z_dim), np.float32)
    x = jax.ShapeDtypeStruct((b, *setup.example_shape), np.float32)
    g_vars, d_vars = {"params": one.g_params, **one.g_state}, {"params": one.d_params,
                                                                **one.d_state}
    f_g, f_d = (forward_macs(g, g_vars, z, train=False), forward_macs(d, d_vars, x, train=False))
    if setup.method.trainer == "vae":
        train = config.num_d_steps * 2 * 3 * (f_g + f_d)
    else:
        per_iteration = train_step_flops(g, g_vars, d, d_vars, z, x, setup.disc_iters)
        if setup.method.penalty is not None:
            per_iteration += setup.disc_iters * 2 * 6 * f_d
        if (setup.method.loss_state_update == "fresh"
                and losses.spec(setup.method.loss).stateful):  # v1's k: G and 2 D forwards
            per_iteration += setup.disc_iters * 2 * (f_g + 2 * f_d)
        train = config.num_d_steps // setup.disc_iters * per_iteration
    steps = schedule.checkpoint_steps(config.num_d_steps, config.checkpoint_every,
                                      setup.disc_iters)
    ev = config.get("eval") or {}
    gen_one = 2.0 * f_g / b
    real, metric = 0.0, 0.0
    family = data_registry.get(setup.dataset).metrics.family  # the evaluator's
    if family == "mixture":
        per_eval = int(ev.get("num_samples") or 10_000) * gen_one
    elif family == "polygons":
        from gancmp.metrics.polygons import PolygonMetricsConfig

        fields = {f.name for f in dataclasses.fields(PolygonMetricsConfig)}
        cfg = PolygonMetricsConfig(**{k: ev[k] for k in fields if ev.get(k) is not None})
        per_eval = (cfg.num_samples + cfg.recall_size * cfg.restarts * cfg.steps * 3) * gen_one
    else:
        n = int(ev.get("num_samples") or 10_000)
        n_real = int((config.get("fid") or {}).get("num_real") or 10_000)
        nets = metric_networks(ev.get("metrics"))
        # KID Gram matrices and PR distances in each network's feature space (float32)
        kid_pr = sum(2 * 2.0 * (n * n + n * n_real) * networks.get(m).dim for m in nets)
        metric = n * sum(map(metric_network_flops, nets)) + kid_pr
        per_eval = n * gen_one + metric
        real = n_real * sum(map(metric_network_flops, nets))
    call = schedule.plan(config.num_d_steps, config.checkpoint_every, setup.disc_iters,
                         ACCEL_STEPS_PER_CALL, False, fixed=config.get("steps_per_call") or 0,
                         count_argument=config.get("loop_count", "argument") == "argument")
    state_bytes = sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize
                      for s in jax.tree.leaves(one))
    return _Class(config, setup.arch != "mlp", config.num_d_steps, setup.disc_iters, train,
                  per_eval * len(steps), real, metric * len(steps), len(steps), state_bytes,
                  call.tail != call.main,
                  probe.group(trial.trial) if probe is not None else None)


def _seeds_trials(sweep, study, phase, source: list[SweepTrial]) -> list[SweepTrial]:
    """The seeds phase's trials if each method's setting 0 wins its source phase."""
    size = len(source)
    records = [{"study": t.study, "phase": t.phase, "trial_id": t.trial_id, "method": t.method,
                "seed": t.seed, "phase_size": size, "setting": t.setting,
                "hparams": dict(t.hparams), "best": {"score": float(t.setting == 0)}}
               for t in source]
    return expand_phase(sweep, study, phase, records) or []


def _phases(sweep, study) -> list[tuple[Any, list[SweepTrial]]]:
    out: dict[str, list[SweepTrial]] = {}
    phases = []
    for phase in study.phases:
        if phase.mode == "seeds":
            trials = _seeds_trials(sweep, study, phase, out[phase.source])
        else:
            trials = expand_phase(sweep, study, phase, [])
        out[phase.name] = trials
        phases.append((phase, trials))
    return phases


def plan(sweep: ml_collections.ConfigDict, accelerator: str = "v4-8",
         measure_memory: bool = True, workers: int = 1) -> dict[str, Any]:
    """The cost of `sweep` (see the module docstring) with groups laid out for `accelerator`,
    and its hours on every accelerator of `costs.accelerators()`; with `workers` > 1, also
    `out["workers"]`: the hours on that many single-host workers of `accelerator`
    (`workers_hours`)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers: a number of single-host workers, at least 1; got "
                          f"{workers!r}")
    target = check_accelerator(accelerator)
    validate(sweep)
    accs = costs.accelerators()
    per_acc = {name: {"groups": 0, "programs": set(), "flop": 0.0, "checkpoint_bytes": 0,
                      "checkpoint_kept_bytes": 0,
                      "peak": 0, "sequence": []} for name in accs}
    out, classes = _count(sweep, accelerator, accs, per_acc, measure_memory)
    t = per_acc[accelerator]
    out.update(groups=t["groups"], programs=len(t["programs"]),
               checkpoint_bytes=t["checkpoint_bytes"],
               checkpoint_kept_bytes=t["checkpoint_kept_bytes"],
               peak_device_bytes=t["peak"] if measure_memory else None,
               peak_program=t.get("peak_program"),
               device_bytes=target.device_bytes)
    _add_hours(out, sweep, list(classes.values()), accs, per_acc)
    out["computed_train_flop"] = t["flop"]
    if workers > 1:
        args = (t["sequence"], out.pop("phase_sources"), accs[accelerator],
                (out["precision"][accelerator], out["metric_precision"][accelerator]),
                _compute_dtype(classes.values()))
        out["workers"] = {"count": workers, "hours": workers_hours(*args, workers),
                          "hours_one": workers_hours(*args, 1)}
    out.pop("phase_sources", None)
    out["utilisation"] = {"train": costs.TRAIN_UTILISATION, "eval": costs.EVAL_UTILISATION}
    return out


def _count(sweep: ml_collections.ConfigDict, accelerator: str,
           accs: Mapping[str, costs.Accelerator], per_acc: dict[str, dict], measure_memory: bool
           ) -> tuple[dict[str, Any], dict[str, _Class]]:
    """The plan's counts, phase by phase and group by group in the runner's order: trials, D
    updates and FLOPs, and each phase's groups on `accelerator`; every accelerator's layout
    added to its totals in `per_acc` (`_lay_out`). Returns the plan so far and the classes met,
    by `parallel.class_key`."""
    caps = dict(max_trials_per_device=int(sweep.get("max_trials_per_device",
                                                    parallel.DEFAULT_TRIALS_PER_DEVICE)),
                max_trials_per_group=int(sweep.get("max_trials_per_group", 16)),
                cpu_conv_trials_per_device=int(sweep.get("cpu_conv_trials_per_device", 1)))
    classes: dict[str, _Class] = {}
    probe = MemoryProbe() if measure_memory else None  # this plan's; once per kind of program
    out: dict[str, Any] = {"accelerator": accelerator, "studies": [], "trials": 0,
                           "d_updates": 0, "train_flop": 0.0, "eval_flop": 0.0,
                           "metric_flop": 0.0}
    phase_id, out["phase_sources"] = 0, {}
    for study in sweep.studies:
        ids: dict[str, int] = {}
        phases = _phases(sweep, study)
        sizes = parallel.study_class_sizes(phases)
        entry = {"name": study.name, "dataset": study.trial.dataset, "phases": []}
        real_done = False  # the real test set's features: once per study
        for phase, trials in phases:
            phase_id += 1
            ids[phase.name] = phase_id
            out["phase_sources"][phase_id] = ids.get(phase.get("source"))
            row = {"name": phase.name, "mode": phase.mode, "trials": len(trials), "groups": 0}
            for members in groups_of(trials, 1 << 30):
                key = parallel.class_key(members[0], phase.get("overrides"))
                if key not in classes:
                    classes[key] = _class(members[0], probe)
                c, n = classes[key], len(members)
                out["trials"] += n
                out["d_updates"] += n * c.num_d_steps
                out["train_flop"] += n * c.train_flop
                out["eval_flop"] += n * c.eval_flop + (0.0 if real_done else c.real_flop)
                out["metric_flop"] += n * c.metric_flop + (0.0 if real_done else c.real_flop)
                real_done = True
                for name, acc in accs.items():
                    _lay_out(per_acc[name], acc, c, key, sizes.get(key, n), n, caps,
                             is_target=name == accelerator, row=row, phase_id=phase_id,
                             keep=retention.policy(sweep))
            entry["phases"].append(row)
        out["studies"].append(entry)
    return out, classes


def _add_hours(out: dict[str, Any], sweep: ml_collections.ConfigDict, classes: list[_Class],
               accs: Mapping[str, costs.Accelerator], per_acc: Mapping[str, dict]) -> None:
    """Adds to `out` the hours on every accelerator, its training matmul precision (the classes'
    requested setting, resolved there; "auto" where it does not apply) and the metric network's
    (`fid.matmul_precision`, `precision.resolve_metric`: the FID Inception and the float32 KID
    and precision/recall products are priced at it, the rest of evaluation at the training
    precision), and the target's (`out["accelerator"]`) parts and whether the runner compiles
    ahead."""
    settings = {c.config.get("matmul_precision", "auto") for c in classes}
    metric_settings = {(c.config.get("fid") or {}).get("matmul_precision") or "float32"
                       for c in classes}
    metric_requested = sorted(metric_settings)[0] if metric_settings else "float32"
    requested, compute = sorted(settings)[0] if settings else "auto", _compute_dtype(classes)
    out["hours"], out["precision"], out["metric_precision"] = {}, {}, {}
    for name, acc in accs.items():
        try:
            mp = precision.resolve(requested, acc.backend)
        except ValueError:
            mp = precision.resolve("auto", acc.backend)
        metric_mp = precision.resolve_metric(metric_requested, acc.backend)
        out["precision"][name], out["metric_precision"][name] = mp, metric_mp
        ahead = compile_ahead(sweep, acc.backend)
        compile_s = _critical_compile_s(per_acc[name]["sequence"], acc, (mp, metric_mp),
                                        compute, ahead)
        parts = costs.hours_parts(acc, per_acc[name]["flop"], out["eval_flop"], compile_s, mp,
                                  compute, out["metric_flop"], metric_mp)
        out["hours"][name] = sum(parts.values())
        if name == out["accelerator"]:
            out["hours_parts"], out["compile_ahead"] = parts, ahead


def _compute_dtype(classes) -> str:
    dtypes = {c.config.get("compute_dtype", "float32") for c in classes}
    return sorted(dtypes)[0] if dtypes else "float32"


def workers_hours(sequence, sources: Mapping[int, int | None], acc: costs.Accelerator,
                  precisions: tuple[str, str], compute_dtype: str, workers: int) -> float:
    """Hours of the sweep on `workers` single-host workers of `acc` as the Ray engine runs it
    (`gancmp.sweep.ray_engine`): the groups of `sequence` (`_lay_out`) in order, each to the
    worker free first; a seeds phase's groups start once its source phase (`sources`: phase ->
    its source or None) has finished; each worker compiles every program it has not compiled
    yet (`COMPILE_S`, nothing overlapped: no compiling ahead, no shared cache). Actor start,
    scheduling and transfers are left out (measured: experiments/bench/RESULTS.md)."""
    matmul_precision, metric_precision = precisions
    free, seen, ends = [0.0] * workers, [set() for _ in range(workers)], {}
    for phase_id, _, train_flop, eval_flop, metric_flop, programs in sequence:
        ready = ends.get(sources.get(phase_id), 0.0)
        w = min(range(workers), key=lambda i: max(free[i], ready))
        busy = (len(programs - seen[w]) * costs.COMPILE_S[acc.backend]
                + costs.train_seconds(acc, train_flop, matmul_precision, compute_dtype)
                + costs.eval_seconds(acc, eval_flop - metric_flop, matmul_precision)
                + costs.eval_seconds(acc, metric_flop, metric_precision))
        seen[w] |= programs
        free[w] = max(free[w], ready) + busy
        ends[phase_id] = max(ends.get(phase_id, 0.0), free[w])
    return max(free) / 3600


def _lay_out(acc_totals: dict, acc: costs.Accelerator, c: _Class, key: str,
             class_size: int | tuple[int, ...], n: int, caps: Mapping[str, int],
             is_target: bool, row: dict, phase_id: int, keep: str = retention.DEFAULT) -> None:
    """Adds one class of `n` trials of a phase to an accelerator's totals, and its groups, in
    the order the runner trains them, to `sequence`: (phase, programs new at that group,
    computed training FLOPs, evaluation FLOPs, the metric network's part of them, its
    programs) each; the
    checkpoint bytes its groups write and keep at the end (`retention.plan_bytes`, under the
    sweep's `keep_checkpoints` policy `keep`)."""
    layout = parallel.choose_layout(acc.backend, acc.chips, class_size, conv=c.conv,
                                    memory=c.memory, device_bytes=acc.device_bytes, **caps)
    sizes = parallel.group_sizes(n, layout)
    computed = sum(sizes)
    acc_totals["groups"] += len(sizes)
    acc_totals["flop"] += computed * c.train_flop
    for size in sizes:
        written = retention.plan_bytes(size * c.state_bytes, c.checkpoints, size, keep,
                                       c.config.get("keep_checkpoints"))
        acc_totals["checkpoint_bytes"] += written["written"]
        acc_totals["checkpoint_kept_bytes"] += written["kept"]
    left = n
    for size in sizes:
        programs = {(key, size), *([(key, size, "tail")] if c.tail else [])}
        real = min(size, left)
        left -= real
        acc_totals["sequence"].append((phase_id, len(programs - acc_totals["programs"]),
                                       size * c.train_flop, real * c.eval_flop,
                                       real * c.metric_flop, frozenset(programs)))
        acc_totals["programs"] |= programs
    if c.memory is not None:
        per_device = layout.trials_per_device if layout.parallelism == "trials" else 1
        per_chip = c.memory.at(per_device)
        if per_chip > acc_totals["peak"]:
            acc_totals["peak"], acc_totals["peak_program"] = per_chip, c.memory.largest(per_device)
    if is_target:
        row["groups"] += len(sizes)


def _critical_compile_s(sequence, acc: costs.Accelerator, precisions: tuple[str, str],
                       compute_dtype: str, ahead: bool) -> float:
    """Seconds of compilation nothing overlaps: every group's new programs (`COMPILE_S` each)
    less, when the runner compiles ahead (`gancmp.sweep.ahead`), the time of the group before
    it in the same phase (training and evaluation), during which they compile. `precisions`:
    (training, metric network) matmul precision."""
    matmul_precision, metric_precision = precisions
    total, last_phase, before = 0.0, None, 0.0
    for phase_id, new, train_flop, eval_flop, metric_flop, _ in sequence:
        cost = new * costs.COMPILE_S[acc.backend]
        hidden = min(cost, before) if ahead and phase_id == last_phase else 0.0
        total += cost - hidden
        last_phase = phase_id
        before = (costs.train_seconds(acc, train_flop, matmul_precision, compute_dtype)
                  + costs.eval_seconds(acc, eval_flop - metric_flop, matmul_precision)
                  + costs.eval_seconds(acc, metric_flop, metric_precision))
    return total


def summary(p: Mapping[str, Any]) -> str:
    """The plan as a few lines of text (`gancmp plan` without --json)."""
    lines = [f"plan for {p['accelerator']}: {p['trials']:,} trials in {p['groups']:,} groups, "
             f"{p['programs']:,} train programs, {p['d_updates']:,} D updates"]
    for s in p["studies"]:
        parts = ", ".join(f"{r['name']} {r['trials']} trials/{r['groups']} groups"
                          for r in s["phases"])
        lines.append(f"  {s['name']} ({s['dataset']}): {parts}")
    ratio = p["eval_flop"] / p["train_flop"] if p["train_flop"] else 0.0
    lines.append(f"train {p['train_flop']:.3g} FLOP (computed with padding "
                 f"{p['computed_train_flop']:.3g}), eval {p['eval_flop']:.3g} FLOP "
                 f"({100 * ratio:.1f} % of training), checkpoints "
                 f"{p['checkpoint_bytes'] / 1e9:.1f} GB written, "
                 f"{p['checkpoint_kept_bytes'] / 1e9:.1f} GB kept at the end")
    if p["peak_device_bytes"] is not None:
        cap = f" of {p['device_bytes'] / 2**30:.0f} GiB" if p["device_bytes"] else ""
        lines.append(f"peak device memory per chip: {p['peak_device_bytes'] / 2**30:.2f} GiB{cap}"
                     f" (the largest of every group's programs, init, train, sampling and "
                     f"evaluation: {p.get('peak_program')})")
    lines.append("hours: " + ", ".join(
        f"{name} {h:.3g} ({p['precision'][name]}, metrics {p['metric_precision'][name]})"
        for name, h in p["hours"].items()))
    parts = p["hours_parts"]
    overlap = ("the rest compiled while earlier groups train" if p["compile_ahead"]
               else "one after another: compile_ahead is off")
    lines.append(f"on {p['accelerator']}: {parts['train']:.3g} h training, {parts['eval']:.3g} h "
                 f"evaluation, {parts['compile']:.3g} h compiling that nothing overlaps "
                 f"({p['programs']} programs; {overlap})")
    if "workers" in p:
        w = p["workers"]
        lines.append(f"on {w['count']} single-host {p['accelerator']} workers (--engine ray: "
                     f"a group at a time each, seeds after their source phase): "
                     f"{w['hours']:.3g} h wall ({w['hours_one']:.3g} h on one worker by the "
                     f"same count: {w['hours_one'] / w['hours']:.1f}x)")
    u = p["utilisation"]
    lines.append(f"assumed utilisation of peak: train {u['train']}, eval {u['eval']}")
    return "\n".join(lines)

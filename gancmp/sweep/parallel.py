"""Where a sweep's groups run: the layout policy (trial or data parallelism, trials per device,
the padded group size K).

On TPU/GPU a group spreads its trials over every chip of the job (trial parallelism: each chip
trains its share, vmapped, and no collective crosses chips). Trials per device =
min(`max_trials_per_device` (the sweep's cap, default 16), what fits in `MEMORY_FRACTION` of a
chip by the compiled program's memory (`gancmp.train.memory`), ceil(T / devices)), T the largest
count of the program's class in any phase (`class_sizes`), lowered when a smaller count pads less:
the groups of a class have one K = trials per device × devices, a phase's last chunk padded with
copies of a trial (computed, never recorded) to K, or, when it holds under K / 2 trials, only to
a multiple of the devices, with a program of its own (`group_sizes`). So a class compiles one
program of K (two where the budget has a short last stretch, `schedule`), and one more per short
chunk size, memoized across groups and phases, the same on resume; K is the one (at least half
the largest) that computes the fewest trials over the class's phases
(`balanced_trials_per_device`: 100 + 50 + 50 trials on 4 chips take K = 48, 204 computed, not the
cap's K = 64, 256). A model whose single trial does not fit one chip runs data-parallel (its batch
split over the chips), as before.

On CPU the measured policy stays (experiments/bench/RESULTS.md): with one device per core, conv
nets get `cpu_conv_trials_per_device` (default 1) trials per core and MLPs up to
`max_trials_per_group` per group; a group of at least one trial per device spreads over them,
a smaller one runs on one device, and nothing is padded.

Which policy runs is the sweep's `layout` (`layout_policy`): "auto" (the default: the
accelerator policy on TPU/GPU, the CPU policy on a CPU), "accelerator" or "cpu". "accelerator" on
simulated CPU devices (`--xla_force_host_platform_device_count`, one process or a
`jax.distributed` job of several) runs exactly the code a TPU slice runs — the memory probe, K per
chip from the compiled program's memory, padding, compile-ahead, per-process device ownership —
with `device_memory_gib` standing in for the chip's memory, which a CPU device does not report.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections

from gancmp.config import ConfigError
from gancmp.train.memory import GroupMemory, MemoryProbe, ProgramMemory
from gancmp.trial import Trial

MEMORY_FRACTION = 0.8  # of a chip's memory a train program may hold (the rest: evaluation, XLA)
DEFAULT_TRIALS_PER_DEVICE = 16
POLICIES = ("auto", "accelerator", "cpu")


def layout_policy(sweep: ml_collections.ConfigDict, backend: str | None = None) -> str:
    """"accelerator" or "cpu": the policy `sweep.layout` picks on `backend` (default: this
    process's): "auto" (the default) is the accelerator policy on TPU/GPU and the CPU policy on
    a CPU. ConfigError for another name."""
    mode = sweep.get("layout", "auto")
    if mode not in POLICIES:
        raise ConfigError(f"sweep layout: unknown {mode!r}; allowed: {', '.join(POLICIES)}")
    if mode != "auto":
        return mode
    return "cpu" if (backend or jax.default_backend()) == "cpu" else "accelerator"


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one group runs.

    Attributes:
      parallelism: "trials" (the group's trials spread over the devices) or "data" (each
        trial's batch split over them).
      num_devices: the devices the group runs on.
      group_size: trials per group, K: real trials are chunked by it and a group is padded up to
        it (`padded`).
      trials_per_device: K / num_devices under trial parallelism; 0 under data parallelism.
      padded: whether groups smaller than K are padded to K (accelerators) or run as they are
        (CPU).
    """

    parallelism: str
    num_devices: int
    group_size: int
    trials_per_device: int
    padded: bool


def choose_layout(backend: str, num_devices: int, trials: int | Sequence[int], *,
                  conv: bool = True, memory: ProgramMemory | GroupMemory | None = None,
                  device_bytes: int | None = None,
                  max_trials_per_device: int = DEFAULT_TRIALS_PER_DEVICE,
                  max_trials_per_group: int = 16, cpu_conv_trials_per_device: int = 1,
                  processes: int = 1) -> Layout:
    """The layout of a class of programs on `num_devices` devices of `backend` ("cpu": the CPU
    policy; anything else, "gpu", "tpu" or "accelerator": the accelerator policy): `trials` is
    the class's trial count in each phase it runs in (`class_sizes`; an int for one phase; CPU
    uses the first). `memory`: the per-device programs at one trial (`memory.group_memory`, or
    one `memory.ProgramMemory`); `device_bytes`: one device's memory (None: unknown, the cap
    alone decides). Pure: the same numbers give the same layout on any machine."""
    counts = (trials,) if isinstance(trials, int) else tuple(trials)
    if backend == "cpu":
        return _cpu_layout(num_devices, counts[0], conv, max_trials_per_group,
                           cpu_conv_trials_per_device, processes)
    fits = max_trials_per_device
    if memory is not None and device_bytes is not None:
        fits = memory.fits(int(MEMORY_FRACTION * device_bytes))
    if fits < 1:
        k = min(counts[0], max_trials_per_group)
        return Layout("data", num_devices, k, 0, padded=False)
    most = max(1, min(max_trials_per_device, fits, math.ceil(max(counts) / num_devices)))
    per_device = balanced_trials_per_device(counts, num_devices, most)
    return Layout("trials", num_devices, per_device * num_devices, per_device, padded=True)


def balanced_trials_per_device(counts: Sequence[int], num_devices: int, most: int) -> int:
    """Trials per device p in [ceil(most / 2), most] computing the fewest trials, real and
    padding, over phases of `counts` trials (`group_sizes` at K = p · `num_devices`), the
    largest p among equals. The lower bound keeps a chip's share of a call large (fewer, fuller
    calls) where padding would be equal or nearly."""
    def computed(p: int) -> int:
        layout = Layout("trials", num_devices, p * num_devices, p, padded=True)
        return sum(sum(group_sizes(n, layout)) for n in counts)
    return min(range(math.ceil(most / 2), most + 1), key=lambda p: (computed(p), -p))


def _cpu_layout(num_devices: int, trials: int, conv: bool, max_group: int,
                conv_per_device: int, processes: int) -> Layout:
    """Today's CPU policy (`choose_layout`)."""
    spread = processes == 1 and num_devices > 1
    k = conv_per_device * (num_devices if spread else 1) if conv else max_group
    k = min(k, trials) if conv else k
    if spread and min(k, trials) >= num_devices:
        return Layout("trials", num_devices, k, k // num_devices, padded=False)
    return Layout("data", num_devices if not spread else 1, k, 0, padded=False)


def device_bytes(sweep: ml_collections.ConfigDict | None = None) -> int | None:
    """Memory of one local device: the sweep's `device_memory_gib` where it is set (> 0: a
    simulated chip, or a smaller one than this), else the device's own
    (`memory_stats()["bytes_limit"]`), None where the backend does not say (CPU)."""
    gib = float((sweep or {}).get("device_memory_gib", 0) or 0)
    if gib < 0:
        raise ConfigError(f"sweep device_memory_gib: {gib} is negative; allowed: > 0, or 0 for "
                          "the device's own memory")
    if gib > 0:
        return int(gib * 2**30)
    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get("bytes_limit")


def class_key(trial: Any, overrides: Mapping[str, Any] | None = None) -> str:
    """Trials with equal keys run the same program in any phase: the study, the method, the
    static hyperparameters and the phase's config overrides."""
    hp = trial.hparams
    extra = json.dumps(dict(overrides or {}), sort_keys=True, default=str)
    return (f"{trial.study}/{trial.method}/d{hp['disc_iters']}/bn{int(bool(hp['d_batch_norm']))}"
            f"/{extra}")


def class_sizes(phases: Sequence[tuple[Sequence[Any], Mapping[str, Any] | None]],
                reruns: Sequence[tuple[int, int]] = ()) -> dict[str, tuple[int, ...]]:
    """{class key: its trial count in each of `phases` that has it, given in order as (trials,
    overrides), then `n` for each (source, n) of `reruns` whose source phase (an index into
    `phases`) has it}: a seeds phase re-runs `n` trials of one class of its source phase, which
    class is not known before that phase has run, so each of them is laid out to fit it too."""
    sizes: dict[str, list[int]] = {}
    present: list[set[str]] = []
    for trials, overrides in phases:
        counts: dict[str, int] = {}
        for t in trials:
            key = class_key(t, overrides)
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            sizes.setdefault(key, []).append(n)
        present.append(set(counts))
    for source, n in reruns:
        for key in present[source]:
            sizes[key].append(n)
    return {key: tuple(v) for key, v in sizes.items()}


def study_class_sizes(phases: Sequence[tuple[Any, Sequence[Any]]]) -> dict[str, tuple[int, ...]]:
    """`class_sizes` of a study from its phases in order as (phase config, trials): the tuned
    and shared phases' trials, and each seeds phase's `num_seeds` re-runs of its source's
    classes (its own trials, known only once the source has run, are not used)."""
    counted = [(phase, trials) for phase, trials in phases if phase.mode != "seeds"]
    index = {phase.name: i for i, (phase, _) in enumerate(counted)}
    reruns = [(index[phase.source], int(phase.num_seeds)) for phase, _ in phases
              if phase.mode == "seeds" and phase.get("source") in index]
    return class_sizes([(trials, phase.get("overrides")) for phase, trials in counted], reruns)


def group_sizes(n: int, layout: Layout) -> list[int]:
    """The computed size of each group of a class's `n` trials in one phase under `layout`: K
    (`layout.group_size`) for every full chunk and for a last chunk of at least K / 2 trials
    (padded); a smaller last chunk is padded only to a multiple of the devices and runs a program
    of its own (compiled once per class and size, memoized: `train_functions`), since padding it
    to K would compute more copies than trials. Unpadded layouts: the chunks' own sizes."""
    k = layout.group_size
    sizes, rest = [k] * (n // k), n % k
    if rest:
        devices = layout.num_devices
        sizes.append(rest if not layout.padded else k if 2 * rest >= k
                     else math.ceil(rest / devices) * devices)
    return sizes


def chunks(members: Sequence[Any], layout: Layout) -> list[tuple[list[Any], Layout]]:
    """A class's trials of one phase in groups of at most K, each with the layout it runs under
    (`group_sizes`: a small last chunk gets a smaller K)."""
    out, start = [], 0
    for size in group_sizes(len(members), layout):
        chunk = list(members[start:start + size])  # the last one: whatever is left
        start += len(chunk)
        own = layout if size == layout.group_size or not layout.padded else dataclasses.replace(
            layout, group_size=size, trials_per_device=size // layout.num_devices)
        out.append((chunk, own))
    return out


def laid_out(trial: Trial, layout: Layout, group_size: int) -> Trial:
    """The trial as a group of `group_size` trials runs it under `layout`: the trial's own
    layout, except that a trial-parallel layout spreads the group over its devices (on CPU only
    a group of at least one trial per device: a smaller one runs on one device, where padding it
    with copies would only waste the other cores). How trials are laid out is not part of a
    trial's identity: a trial computes the same arithmetic either way, equal to float rounding."""
    if trial.setup.parallelism == "trials" or (
            layout.parallelism == "data" and layout.num_devices != 1):
        return trial
    if layout.parallelism == "trials" and (layout.padded or group_size >= layout.num_devices):
        return trial.on_devices(layout.num_devices, "trials")
    return trial.on_devices(1, trial.setup.parallelism)


def layout_for(sweep: ml_collections.ConfigDict, trial: Trial,
               trials: int | Sequence[int], measure: bool = True,
               probe: MemoryProbe | None = None) -> Layout:
    """`choose_layout` on this job's devices for a class of `trials` trials like `trial`
    (its count in each phase: `class_sizes`), under the sweep's policy (`layout_policy`) and
    caps (`max_trials_per_device`, `max_trials_per_group`, `cpu_conv_trials_per_device`); under
    the accelerator policy (with `measure`) from the compiled programs' memory at one trial
    (`memory.MemoryProbe.group`: `probe`'s, kept for the sweep; None: measured for this call)
    and the chip's (`device_bytes`)."""
    policy = layout_policy(sweep)
    memory = limit = None
    if policy == "accelerator" and measure:
        memory, limit = (probe or MemoryProbe()).group(trial), device_bytes(sweep)
    return choose_layout(
        "cpu" if policy == "cpu" else "accelerator", jax.device_count(), trials,
        conv=trial.setup.arch != "mlp",
        memory=memory, device_bytes=limit,
        max_trials_per_device=int(sweep.get("max_trials_per_device",
                                            DEFAULT_TRIALS_PER_DEVICE)),
        max_trials_per_group=int(sweep.get("max_trials_per_group", 16)),
        cpu_conv_trials_per_device=int(sweep.get("cpu_conv_trials_per_device", 1)),
        processes=jax.process_count())

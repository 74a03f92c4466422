"""Device memory of a group's programs, read from the compiled programs (no training, no data).

`program_memory` lowers and compiles the per-device program of a group that holds `trials`
trials on one device (what each chip runs under trial parallelism: no collective crosses chips)
with abstract inputs (`jax.ShapeDtypeStruct`), and reads XLA's `memory_analysis()`. On the
backend that will run it (the sweep runner, on a TPU or GPU) the numbers are that chip's; compiled
on a CPU for a plan they are XLA:CPU's buffer assignment for the same program, an estimate of an
accelerator's (its fusions differ; the on-device dataset is laid out without tile padding,
`gancmp.data.layout`). `init_memory` does the same for the initialisation of the group's
states (created sharded over the trial axis, so a chip holds its own trials only), and
`eval_memory` for the evaluation's features pass (image datasets), `sample_memory` for drawing
samples; `group_memory` holds them all: a chip must fit the largest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from gancmp.data import layout
from gancmp.data import registry as data_registry
from gancmp.data import source as data_source
from gancmp.metrics import device_eval, evaluators
from gancmp.train import samples
from gancmp.train import step as step_lib
from gancmp.train.state import abstract_states, init_inputs, init_program
from gancmp.trial import Trial


@dataclasses.dataclass(frozen=True)
class ProgramMemory:
    """Bytes of one compiled program on one device (XLA's `CompiledMemoryStats`).

    Attributes:
      trials: the trials the program holds on the device.
      argument, output, alias, temp, code: XLA's argument, output, aliased (donated: counted
        once), temporary and generated-code sizes.
      data: the bytes of the on-device dataset among the arguments (shared by every trial).
    """

    trials: int
    argument: int
    output: int
    alias: int
    temp: int
    code: int
    data: int

    @property
    def peak(self) -> int:
        """Live bytes at the program's peak: arguments, outputs not aliased to them, temporaries
        and code."""
        return self.argument + self.output - self.alias + self.temp + self.code

    @property
    def per_trial(self) -> int:
        """Bytes that grow with the trial count: the peak less the dataset and the code, per
        trial (a linear model of `peak` in the trials; vmapped temporaries scale with them)."""
        return -(-(self.peak - self.data - self.code) // self.trials)

    @property
    def fixed(self) -> int:
        """Bytes that do not grow with the trial count: the dataset and the code."""
        return self.data + self.code

    def at(self, trials: int) -> int:
        """Peak bytes of the same program holding `trials` trials (the linear model)."""
        return self.fixed + trials * self.per_trial

    def fits(self, budget: int) -> int:
        """Trials the program can hold within `budget` bytes (0: not one)."""
        room = budget - self.fixed
        return room // self.per_trial if room > 0 else 0


@dataclasses.dataclass(frozen=True)
class GroupMemory:
    """The memory of every program a group runs on one device, by name ("init": its states'
    initialisation, "train": its train call), each a `ProgramMemory`: a chip must hold the
    largest of them (they run one at a time)."""

    programs: tuple[tuple[str, ProgramMemory], ...]

    @property
    def peak(self) -> int:
        """The largest program's peak, at the trials measured."""
        return max(m.peak for _, m in self.programs)

    def at(self, trials: int) -> int:
        """The largest program's peak bytes at `trials` trials per device."""
        return max(m.at(trials) for _, m in self.programs)

    def fits(self, budget: int) -> int:
        """Trials per device that every program can hold within `budget` bytes."""
        return min(m.fits(budget) for _, m in self.programs)

    def largest(self, trials: int) -> str:
        """The name of the program with the largest peak at `trials` trials per device."""
        return max(self.programs, key=lambda item: item[1].at(trials))[0]


def abstract_arrays(dataset: str) -> dict[str, jax.ShapeDtypeStruct]:
    """The on-device dataset's arrays as shapes (`layout.device_layout`): uint8 [N, H·W·C] for
    an image set (every one is stored as uint8), {} for the 2-D mixtures (sampled, not stored)."""
    n = data_source.train_size(dataset)
    if n is None:
        return {}
    row = layout.device_layout({"train": np.empty((1, *data_source.example_shape(dataset)),
                                                  np.uint8)})["train"].shape[1:]
    return {"train": jax.ShapeDtypeStruct((n, *row), np.uint8)}


def group_memory(trial: Trial, trials: int = 1, probe: MemoryProbe | None = None
                 ) -> GroupMemory:
    """Memory of every program of a group of `trial`'s setup holding `trials` trials on one
    device: its initialisation, its train call (`program_memory`) and, for image datasets, its
    evaluation's features pass (`eval_memory`, kept by `probe` when given)."""
    programs = [("init", init_memory(trial, trials)), ("train", program_memory(trial, trials)),
                ("sample", sample_memory(trial, trials))]
    evaluation = eval_memory(trial, trials, probe)
    return GroupMemory(tuple(programs + ([("eval", evaluation)] if evaluation else [])))


def memory_class(trial: Trial) -> tuple:
    """What a program's buffers depend on: programs that differ only in the loss, the numbers
    or the D steps per G step hold the same buffers; a penalty, another trainer or another
    network does not."""
    setup, m = trial.setup, trial.setup.method
    return (dataclasses.replace(setup, method=None, disc_iters=1, bn_momentum=0.0), m.penalty,
            m.discriminator, m.trainer, trial.calls)


class MemoryProbe:
    """The compiled memory of a sweep's programs, each kind measured once while the probe
    lives: owned by what lays out a sweep's groups (the runner's shard, a Ray worker, a plan),
    so a later sweep in the same process (or a test) measures afresh. Keyed by hashable values:
    `memory_class`, the generator's setup and the evaluation's settings."""

    def __init__(self):
        self._groups: dict[tuple, GroupMemory] = {}
        self._evals: dict[tuple, ProgramMemory | None] = {}
        self._extractors: dict[tuple[int, str], Any] = {}

    def group(self, trial: Trial) -> GroupMemory:
        """`group_memory` at one trial, once per `memory_class`."""
        key = memory_class(trial)
        if key not in self._groups:
            self._groups[key] = group_memory(trial, 1, self)
        return self._groups[key]

    def evaluation(self, trial: Trial, trials: int) -> ProgramMemory | None:
        """`eval_memory` of `trials` trials, once per generator setup, FID batch size, metric
        precision, N and K (the program depends on the generator, not on the loss, D or the
        numbers)."""
        if data_registry.get(trial.setup.dataset).metrics.family != "fid":
            return None
        one = trial.on_devices(1, "trials")
        batch = int(trial.fid.get("batch_size") or 50)
        precision = evaluators.metric_precision(trial.fid)
        n = int(trial.eval.get("num_samples") or 10_000)
        key = (dataclasses.replace(one.setup, method=None, disc_iters=1, bn_momentum=0.0),
               one.setup.method.trainer, batch, precision, n, trials)
        if key not in self._evals:
            self._evals[key] = _eval_memory(one, self.zero_extractor(batch, precision), n,
                                            trials)
        return self._evals[key]

    def zero_extractor(self, batch_size: int, precision: str) -> Any:
        """`zero_extractor(batch_size, precision)`, built once for these settings."""
        if (batch_size, precision) not in self._extractors:
            self._extractors[batch_size, precision] = zero_extractor(batch_size, precision)
        return self._extractors[batch_size, precision]


def sample_memory(trial: Trial, trials: int) -> ProgramMemory:
    """Memory of the sampling program of `trials` trials on one device: every generator on
    `evaluators.GENERATE_CHUNK` latents at a time (`evaluators.generate_group`: the final
    sample grids, and the samples the 2-D mixture and polygon metrics score), G's variables
    alone as arguments (`evaluators.GeneratorState`)."""
    one = trial.on_devices(1, "trials")
    states = abstract_states(one.setup, one.hparams, trials)
    generators = evaluators.GeneratorState(states.g_params, states.g_state)
    z = jax.ShapeDtypeStruct((evaluators.GENERATE_CHUNK, one.setup.z_dim), np.float32)
    program = evaluators.sample_group.lower(samples.generator_of(one.setup), generators, z)
    return _memory(program.compile().memory_analysis(), trials, data=0)


def eval_memory(trial: Trial, trials: int, probe: MemoryProbe | None = None
                ) -> ProgramMemory | None:
    """Memory of the FID evaluation's features pass of `trials` trials (the generators and
    the FID Inception in one chunked program, the chunk loop on the device, the whole
    per-device batch per network pass, as accelerators run it: `device_eval.GroupFeatures`)
    on one device, with the Inception's variables as zeros of their shapes; None for datasets
    scored otherwise (2-D mixtures, polygons: small programs). A group evaluates ceil(K /
    devices) trials per pass (`evaluators.trial_passes`), so `trials` per device is what a
    chip holds; its samples' features are split over the devices, counted here whole (an
    upper bound). The kept features [K, N, d] are not in this program (each segment's go to the
    host, `device_eval`); the metrics program that reads them after it is not measured here.
    `probe`: the `MemoryProbe` that keeps it (None: measured for this call alone)."""
    return (probe or MemoryProbe()).evaluation(trial, trials)


def _eval_memory(one: Trial, extractor: Any, n: int, trials: int) -> ProgramMemory:
    program = device_eval.GroupFeatures(
        samples.generator_of(one.setup), extractor, n, np.zeros((n, one.setup.z_dim), np.float32),
        chunk=max(1, extractor.batch_size // trials), logits=extractor.has_logits,
        num_splits=evaluators.IS_SPLITS, loop="device", devices=jax.local_devices()[:1])
    states = abstract_states(one.setup, one.hparams, trials)
    return _memory(program.lower(trials, states).compile().memory_analysis(), trials,
                   data=extractor_bytes(extractor))


def zero_extractor(batch_size: int, precision: str) -> Any:
    """The FID Inception (with its classifier) on this process's first device, its variables
    zeros of their shapes: for compiling, never for numbers."""
    from gancmp.metrics.features import FeatureExtractor
    from gancmp.nets import inception as net

    variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), net.variable_shapes(True))
    return FeatureExtractor(variables, batch_size=batch_size, micro_batch=0,
                            devices=jax.local_devices()[:1], precision=precision,
                            cpu_ops=False)  # the accelerator's program, on any backend


def extractor_bytes(extractor: Any) -> int:
    """Bytes of a feature network's variables (held once per device, whatever the trials)."""
    return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize
               for a in jax.tree.leaves(extractor.variables))


def init_memory(trial: Trial, trials: int) -> ProgramMemory:
    """Memory of the per-device initialisation program of `trials` trials (`init_states`
    sharded over the trial axis: each device initialises its own trials)."""
    one = trial.on_devices(1, "trials")
    mesh = step_lib.make_mesh(one.setup)
    program = init_program(one.setup, NamedSharding(mesh, step_lib.trial_spec(mesh)))
    keys, hp = init_inputs(one.setup, list(range(trials)), [trial.hparams] * trials)
    return _memory(program.lower(keys, hp).compile().memory_analysis(), trials, data=0)


def _memory(stats: Any, trials: int, data: int) -> ProgramMemory:
    return ProgramMemory(
        trials=trials, argument=int(stats.argument_size_in_bytes),
        output=int(stats.output_size_in_bytes), alias=int(stats.alias_size_in_bytes),
        temp=int(stats.temp_size_in_bytes), code=int(stats.generated_code_size_in_bytes),
        data=data)


def program_memory(trial: Trial, trials: int, steps_per_call: int | None = None
                   ) -> ProgramMemory:
    """Memory of the per-device train program of `trial`'s setup holding `trials` trials on one
    device (`steps_per_call` iterations per call; default: the backend's `step.plan_calls`)."""
    setup = trial.setup
    one = trial.on_devices(1, "trials")
    mesh = step_lib.make_mesh(one.setup)
    count = trial.calls.loop_count == "argument"
    if steps_per_call is None:
        plan = step_lib.plan_calls(one)
        steps_per_call, unroll, count = plan.main, plan.unroll, plan.count_argument
    else:
        unroll = False
    fn = step_lib.make_train_fn(one.setup, mesh, steps_per_call, unroll, count)
    arrays = abstract_arrays(setup.dataset)
    states = abstract_states(one.setup, trial.hparams, trials)
    stats = fn.lower(states, arrays, np.int32(steps_per_call)).compile().memory_analysis()
    data = sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in arrays.values())
    return _memory(stats, trials, data)

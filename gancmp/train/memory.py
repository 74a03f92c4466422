"""Device memory of a train program, read from the compiled program (no training, no data).

`program_memory` lowers and compiles the per-device program of a group that holds `trials`
trials on one device (what each chip runs under trial parallelism: no collective crosses chips)
with abstract inputs (`jax.ShapeDtypeStruct`), and reads XLA's `memory_analysis()`. On the
backend that will run it (the sweep runner, on a TPU or GPU) the numbers are that chip's; compiled
on a CPU for a plan they are XLA:CPU's buffer assignment for the same program, an estimate of an
accelerator's (its fusions differ; the on-device dataset is laid out without tile padding,
`gancmp.data.layout`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from gancmp.data import layout
from gancmp.data import source as data_source
from gancmp.train import step as step_lib
from gancmp.train.state import init_states
from gancmp.trial import Trial, TrialSetup


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


def abstract_arrays(dataset: str) -> dict[str, jax.ShapeDtypeStruct]:
    """The on-device dataset's arrays as shapes (`layout.device_layout`): uint8 [N, H·W·C] for
    an image set (every one is stored as uint8), {} for the 2-D mixtures (sampled, not stored)."""
    n = data_source.train_size(dataset)
    if n is None:
        return {}
    row = layout.device_layout({"train": np.empty((1, *data_source.example_shape(dataset)),
                                                  np.uint8)})["train"].shape[1:]
    return {"train": jax.ShapeDtypeStruct((n, *row), np.uint8)}


def abstract_states(setup: TrialSetup, hparams: dict[str, Any], trials: int) -> Any:
    """The stacked train state of `trials` trials as shapes (nothing is initialised)."""
    return jax.eval_shape(lambda: init_states(setup, list(range(trials)), [hparams] * trials))


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
    return ProgramMemory(
        trials=trials, argument=int(stats.argument_size_in_bytes),
        output=int(stats.output_size_in_bytes), alias=int(stats.alias_size_in_bytes),
        temp=int(stats.temp_size_in_bytes), code=int(stats.generated_code_size_in_bytes),
        data=data)

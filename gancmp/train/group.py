"""A group of trials ready to train: everything its first call needs (`create_group`, as flax's
`create_train_state`), and its programs compiled ahead of time from shapes alone
(`precompile`), so that a sweep compiles the next group's programs while this one trains.

A group's trials share one static setup and differ in numbers (seeds, hyperparameters); its
stacked states are sharded over the mesh's `TRIALS` axis (`step.make_mesh`), its dataset arrays
replicated on every device. The programs come from the run's `step.Programs`: every group of one
class (same setup and padded K) reuses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gancmp import runtime
from gancmp.data import layout
from gancmp.train import schedule
from gancmp.train import step as step_lib
from gancmp.train.checkpoint import Checkpoints
from gancmp.train.state import TrainState, abstract_states, init_states
from gancmp.trial import Trial, TrialSetup, as_group

Array = jax.Array
TrainCall = Callable[[TrainState, Mapping[str, Array]], tuple[TrainState, dict[str, Array]]]


@dataclasses.dataclass
class Group:
    """A group of K trials ready to train (`create_group`).

    Attributes:
      trials: the K trials (`Trial`s of one setup).
      setup: the trials' shared static setup.
      mesh: the (`TRIALS`, `AXIS`) mesh the group runs on.
      size: K, the trials asked for. The group is padded to a multiple of the trial-axis size
        with copies of its last trial (trained and checkpointed, never reported).
      seeds, hparams: the padded group's seeds and hyperparameters, [K + padding] each.
      arrays: the dataset's arrays on the devices, replicated (shared by every trial).
      states: the stacked states [K + padding], sharded over `TRIALS`: fresh, or restored from
        the latest readable checkpoint. Donated by the first call of `train_fn`.
      step: D updates those states have done (the restored checkpoint's step, or 0).
      train_fn: `(states, arrays) -> (states, metrics [K + padding, steps_per_call])`: a call
        of `steps_per_call` iterations (`step.calls` of the group's program).
      steps_per_call: its iterations (of `disc_iters` D updates and one G update) per call.
      plan: the call plan (`step.plan_calls`); `call_at(step)` gives the call to make next.
      programs: the run's programs (`step.Programs`), where `call_at` finds the last stretch's.
    """

    trials: tuple[Trial, ...]
    setup: TrialSetup
    mesh: Mesh
    size: int
    seeds: list[int]
    hparams: list[Mapping[str, Any]]
    arrays: Mapping[str, Array]
    states: TrainState
    step: int
    train_fn: TrainCall
    steps_per_call: int
    plan: schedule.CallPlan
    programs: step_lib.Programs

    def call_at(self, step: int) -> tuple[TrainCall, int]:
        """(train call, iterations) of the call that starts after `step` D updates. A plan whose
        count is an argument runs every call, the last stretch's too, on the group's one
        program; else there is a program per count (from the run's `programs`)."""
        iterations = self.plan.iterations_at(step)
        if iterations == self.steps_per_call:
            return self.train_fn, iterations
        length = self.steps_per_call if self.plan.count_argument else iterations
        program = self.programs.get(self.setup, self.mesh, length, self.plan.unroll,
                                    self.plan.count_argument)
        return step_lib.calls(program, iterations), iterations

    def unpadded(self, states: TrainState) -> TrainState:
        """The first `size` trials of a padded stacked state; in a multi-process job the state
        itself (an eager slice is a program across processes): hooks use `map_trials`."""
        if jax.tree.leaves(states)[0].shape[0] == self.size or runtime.multiprocess():
            return states
        return jax.tree.map(lambda x: x[:self.size], states)


def padded_size(trials: int, setup: TrialSetup, pad_to: int = 0) -> int:
    """Trials a group of `trials` computes: at least `pad_to` (a sweep's fixed K, a multiple of
    the trial devices), and a multiple of the trial devices."""
    return trials + max(-trials % setup.trial_devices, pad_to - trials)


def create_group(
    trials: Sequence[Trial], arrays: Mapping[str, np.ndarray], *,
    checkpoints: Checkpoints | None = None, pad_to: int = 0,
    programs: step_lib.Programs | None = None,
) -> Group:
    """Everything a group of trials (one setup; their own seeds and numeric hyperparameters)
    needs before its first step: the mesh, the dataset `arrays` (host arrays, e.g. {"train":
    uint8 [N, H, W, C]}) on the devices (as [N, H·W·C]: `layout`), the stacked states (from the
    latest readable checkpoint of `checkpoints` when it has one: `restore_latest` sets damaged
    ones aside), and the train call with its iterations (`step.plan_calls`). The group is padded
    with copies of its last trial to `padded_size`. `programs`: the run's (`step.Programs`; None:
    the group's own). Works in a multi-process job: each process fills only its own devices."""
    trials = as_group(trials)
    setup, k = trials[0].setup, len(trials)
    pad = padded_size(k, setup, pad_to) - k
    seeds = [t.seed for t in trials] + [trials[-1].seed] * pad
    hparams = [t.hparams for t in trials] + [trials[-1].hparams] * pad
    mesh = step_lib.make_mesh(setup)
    plan = step_lib.plan_calls(trials[0])
    programs = programs if programs is not None else step_lib.Programs()
    program = programs.get(setup, mesh, plan.main, plan.unroll, plan.count_argument)
    by_trial = NamedSharding(mesh, step_lib.trial_spec(mesh))
    like = abstract_states(setup, trials[0].hparams, k + pad)
    step, restored = checkpoints.restore_latest(like) if checkpoints is not None else (0, None)
    states = (init_states(setup, seeds, hparams, by_trial) if restored is None
              else runtime.put_replicated(restored, by_trial))
    return Group(
        trials=trials, setup=setup, mesh=mesh, size=k, seeds=seeds, hparams=hparams,
        arrays=runtime.put_replicated(layout.device_layout(arrays), NamedSharding(mesh, P())),
        states=states, step=step, train_fn=step_lib.calls(program, plan.main),
        steps_per_call=plan.main, plan=plan, programs=programs)


def precompile(trial: Trial, trials: int, arrays: Mapping[str, jax.ShapeDtypeStruct],
               programs: step_lib.Programs, pad_to: int = 0) -> None:
    """Compiles the programs `create_group` would give a group of `trials` trials like `trial`,
    from shapes alone (`arrays`: the dataset's on-device arrays as shapes,
    `memory.abstract_arrays`): no device runs anything and nothing is allocated, so it can run
    in a thread while another group trains. The group's calls, made with the same `programs`,
    then find them in `jax.jit`'s cache (the same program, argument shapes and shardings: no
    second compilation)."""
    setup = trial.setup
    k = padded_size(trials, setup, pad_to)
    mesh = step_lib.make_mesh(setup)
    plan = step_lib.plan_calls(trial)
    by_trial = NamedSharding(mesh, step_lib.trial_spec(mesh))
    states = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=by_trial),
                          abstract_states(setup, trial.hparams, k))
    shared = NamedSharding(mesh, P())
    data = {name: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=shared)
            for name, a in arrays.items()}
    lengths = {plan.main} if plan.count_argument else {plan.main, plan.tail}
    for length in sorted(lengths):
        program = programs.get(setup, mesh, length, plan.unroll, plan.count_argument)
        program.lower(states, data, np.int32(length)).compile()

"""The Ray engine's worker side (`gancmp.sweep.ray_engine`): what the driver hands an actor
(`PhaseItem`, `GroupTask`), the actor of one host (`GroupWorker`) and the records of a group
given up (`failed_records`). Imports no Ray: an actor class is made with `ray.remote` by the
driver."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import traceback
from typing import Any

from gancmp import storage
from gancmp.metrics.resources import EvalResources
from gancmp.records import Record
from gancmp.sweep import runner
from gancmp.sweep.study import SweepTrial, expand_phase
from gancmp.train.memory import MemoryProbe
from gancmp.train.step import Programs

GROUP_LOCK = "group.lock"
# the environment an actor takes from the driver: gancmp's own settings, and the GCS emulator's
FORWARDED_ENV = ("GANCMP_", "STORAGE_EMULATOR_HOST", "GCE_METADATA_")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the engine runs: each actor's `cpu_devices` and `compilation_cache` (as `gancmp
    sweep`'s flags; None: the host's default cache), `max_failures` (a group failing the same
    way this many times is recorded as failed), `poll_s` (the driver's longest wait between looks
    at its actors and the cluster's nodes)."""

    cpu_devices: int = 0
    compilation_cache: str | None = None
    max_failures: int = 3
    poll_s: float = 2.0


@dataclasses.dataclass(frozen=True)
class PhaseItem:
    """A phase to plan: its study's and its index in the sweep, the records so far (JSON
    objects: a seeds phase's choice reads them) and the trial ids already finished. The actor
    expands the phase itself (`expand_phase`): a trial's devices are the host's."""

    study: int
    phase: int
    name: str
    rows: tuple[dict[str, Any], ...]
    done: frozenset[str]

    @property
    def key(self) -> str:
        return f"plan {self.name}"


@dataclasses.dataclass(frozen=True)
class GroupTask:
    """A group to train: `index` of the phase's `of` groups, its trials and layout."""

    name: str
    index: int
    of: int
    trials: tuple[SweepTrial, ...]
    layout: Any
    phase_size: int
    phase_mode: str

    @property
    def key(self) -> str:
        return f"{self.name} group {self.index + 1}/{self.of}"


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's variables an actor takes (`FORWARDED_ENV` prefixes)."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in environ.items() if k.startswith(FORWARDED_ENV)}


class GroupWorker:
    """The actor of one host (`ray.remote(GroupWorker)`): the JAX runtime of the host's devices
    (`Settings.cpu_devices`, the compilation cache), the sweep (validated here: its `imports`
    are imported on the host), and its groups' compiled programs and data, kept between
    groups: the train programs (`step.Programs`), the evaluation's (`resources.EvalResources`)
    and the programs' measured memory (`memory.MemoryProbe`) are the actor's own, shared by
    every group it plans and trains."""

    def __init__(self, sweep: Any, workdir: str, settings: Settings, env: dict[str, str]):
        os.environ.update(env)
        from absl import logging

        from gancmp import runtime

        logging.set_verbosity(logging.WARNING)
        storage.configure_emulator()
        runtime.use_cpu_cores_as_devices(settings.cpu_devices)
        runtime.enable_compilation_cache(settings.compilation_cache
                                         or runtime.default_cache_dir())
        runner.check_sweep(sweep)
        self.sweep, self.workdir = sweep, workdir
        self.resources, self.probe, self.programs = EvalResources(), MemoryProbe(), Programs()

    def where(self) -> dict[str, Any]:
        """Its host, pid, devices."""
        import jax

        return {"host": socket.gethostname(), "pid": os.getpid(),
                "devices": jax.device_count(), "kind": jax.devices()[0].device_kind}

    def plan(self, item: PhaseItem) -> dict[str, Any]:
        """The phase's groups still to train ({"tasks", "skipped"}), laid out for this host."""
        study = self.sweep.studies[item.study]
        phase = study.phases[item.phase]
        try:
            trials = expand_phase(self.sweep, study, phase, item.rows)
            todo, skipped, count = runner.todo_groups(
                self.sweep, study, phase, trials, runner.class_sizes(self.sweep, study),
                item.done, probe=self.probe)
        except Exception as e:  # noqa: BLE001  (the driver records it, the actor lives on)
            return {"error": _error_line(e)}
        tasks = [GroupTask(item.name, j, count, tuple(group), layout, len(trials),
                           phase.mode) for j, group, layout in todo]
        return {"tasks": tasks, "skipped": skipped}

    def run(self, task: GroupTask, done: frozenset[str], keep: str) -> dict[str, Any]:
        """Trains the group (resuming its checkpoints) under its lock; {"records": the new
        records' JSON, "interrupted", "start", "end"}, or {"locked": why} while another process
        holds the group, or {"error": one line}."""
        start = time.time()
        group_dir = runner.group_dir_of(self.workdir, task.trials, task.layout)
        try:
            with storage.lock(os.path.join(group_dir, GROUP_LOCK)):
                out, new = runner.group_records(
                    task.trials, self.workdir, task.phase_size, task.phase_mode, False,
                    sweep_name=self.sweep.name, recorded=done, layout=task.layout, keep=keep,
                    resources=self.resources, programs=self.programs)
        except storage.LockedError as e:
            return {"locked": str(e)}
        except Exception as e:  # noqa: BLE001  (recorded by the driver, the actor lives on)
            traceback.print_exc()
            return {"error": _error_line(e)}
        return {"records": [r.to_json() for r in new], "start": start, "end": time.time(),
                "interrupted": any(r.status == "interrupted" for r in out)}


def _error_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def failed_records(task: GroupTask, sweep_name: str, error: str, done: frozenset[str]
                   ) -> list[Record]:
    """The records of a group given up (`status` "failed", the error in `error`), for its
    trials not already finished."""
    prov = runner.provenance()
    out = []
    for t in task.trials:
        if t.trial_id in done:
            continue
        setup = t.trial.setup
        out.append(Record(
            method=t.method, dataset=setup.dataset, arch=setup.arch, seed=t.seed,
            hparams=dict(t.hparams), config=json.loads(t.trial.config_json),
            num_d_steps=t.trial.budget.num_d_steps, status="failed", sweep=sweep_name,
            trial_id=t.trial_id, study=t.study, phase=t.phase, setting=t.setting,
            phase_size=task.phase_size, phase_mode=task.phase_mode, provenance=prov,
            extra={"error": error}))
    return out

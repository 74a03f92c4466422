"""`gancmp sweep --engine ray`: the sweep on a Ray cluster, a driver and one actor per host.

The driver (this process: `run_sweep`) holds the sweep's lock (`records.lock_path` of shard 0,
the in-process engine's: the two engines exclude each other on a workdir), reads what is recorded,
and keeps a **queue** (`GroupQueue`). One long-lived actor (`GroupWorker`) runs on every node
that offers the resource `gancmp_host` (a host: a TPU VM of a single-host slice, a GPU host with
all its GPUs; the head, a small CPU VM, offers none and runs no actor); the actor holds the host's
JAX runtime, its compilation cache, and the programs and data its groups put on the devices.

What the queue holds: a phase to plan (released by the driver as soon as its source phase is
recorded: a seeds phase starts when its tuned phase's last record is written, no barrier by hand)
and groups to train. An actor plans a phase (`runner.todo_groups`: the phase's groups and their
layouts are chosen on the host that runs them, with its devices and their memory; every host is
assumed to be of one kind) and trains a group (`runner.group_records`, under the group's lock
`groups/<id>/group.lock`), each whenever it is free. The driver alone appends the records (to
`results-0.jsonl`, as the in-process engine) and prints progress: groups done/total, an ETA and
each actor's state.

Faults: an actor that dies (its node preempted, its process killed) loses its group, which goes
back on the queue and resumes on another actor from its last checkpoint in the workdir (local to
the tests; a bucket, `gs://`, on a cluster: nothing lives only on a VM's disk); a node that comes
back (a Spot VM re-created) gets a new actor. A group that fails the same way (the same error, or
its actor's death) `max_failures` times is recorded as `failed` with the error, in
`failed-0.jsonl` beside the results (the report reads only measured trials; a later `gancmp
sweep` trains them again), and the sweep goes on: a seeds phase whose source has failed trials is
released with the trials that were measured. A driver killed
and started again reads the records and resumes: recorded trials are never trained again, and a
group checkpointed by the dead driver's actor resumes from its checkpoint (its group lock,
taken over once the dead actor's process is gone or its lease has run out).

Ray is an optional dependency (`pip install 'gancmp[cluster]'`); `import_ray` says so in one
line when it is missing.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from gancmp import records, storage
from gancmp.config import ConfigError
from gancmp.records import Record
from gancmp.sweep import runner
from gancmp.sweep.ray_worker import (
    GroupTask,
    GroupWorker,
    PhaseItem,
    Settings,
    failed_records,
    forwarded_env,
)
from gancmp.sweep.study import expand_phase
from gancmp.train import retention

HOST_RESOURCE = "gancmp_host"  # a node that runs an actor offers 1 of it (`ray start --resources`)
INSTALL = "pip install 'gancmp[cluster]'"
PROJECT = "gancmp"  # what every host node must be able to import (`check_node`)
CREATION_FAILED = "creation task"  # Ray's words for an actor whose __init__ raised
ACTOR_DIED = "its actor died (the node was lost or preempted, or the process crashed)"


class GroupQueue:
    """The driver's queue: first in, first out, an item put back after a delay waits until then.
    Failures are counted per item and error text (`failed`)."""

    def __init__(self, max_failures: int):
        self.max_failures = max(1, int(max_failures))
        self._items: deque[tuple[float, Any]] = deque()
        self._failures: dict[str, Counter] = {}

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: Any, delay_s: float = 0.0) -> None:
        self._items.append((time.monotonic() + delay_s, item))

    def pop(self) -> Any | None:
        """The first item whose delay is over, else None."""
        now = time.monotonic()
        for i, (ready, item) in enumerate(self._items):
            if ready <= now:
                del self._items[i]
                return item
        return None

    def failed(self, item: Any, error: str) -> bool:
        """Counts a failure of `item`; True when it has failed this way `max_failures` times
        (give it up), else False (it goes back on the queue)."""
        counts = self._failures.setdefault(item.key, Counter())
        counts[error] += 1
        return counts[error] >= self.max_failures


# --- connecting --------------------------------------------------------------------------------


def import_ray() -> Any:
    """The `ray` module; ConfigError in one line when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--engine ray: Ray is not installed; install it with `{INSTALL}` "
                          "(the version requirements.lock pins), or run without --engine "
                          "(the in-process engine)") from None
    return ray


def resolve_address(flag: str | None) -> str | None:
    """The cluster to join: `--ray_address`, else $RAY_ADDRESS, else None (a new local
    cluster)."""
    return flag or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """Joins the Ray cluster at `address` (host:port of its head's GCS, `ray://host:port`, or
    "auto"), or starts a local one of this machine (one node offering `HOST_RESOURCE`, no
    dashboard). ConfigError in one line when nothing answers at the address."""
    ray = import_ray()
    if address and address != "auto":
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), resources={HOST_RESOURCE: 1},
                     include_dashboard=False, object_store_memory=256 << 20,
                     logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"--ray_address {address}: cannot join a Ray cluster there "
                          f"({reason})") from None
    return ray


def _check_reachable(address: str) -> None:
    """ConfigError unless something listens at the address's host:port (within 5 s)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--ray_address: expected HOST:PORT (the head's GCS, port 6379 by "
                          f"default), ray://HOST:PORT or auto; got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(f"--ray_address {address}: nothing answers there ({e.strerror or e}); "
                          "start the cluster (`ray start --head`) or name its head's "
                          "address") from None


def host_nodes(ray: Any) -> list[dict[str, Any]]:
    """The live nodes that offer `HOST_RESOURCE` (`ray.nodes()` entries)."""
    return [n for n in ray.nodes()
            if n.get("Alive") and n.get("Resources", {}).get(HOST_RESOURCE, 0) >= 1]


def check_nodes(ray: Any, node_ids: Sequence[str], module: str | None = None
                ) -> dict[str, str | None]:
    """{node id: None when `module` (default `PROJECT`) can be imported there, else the reason,
    one line}: one probe task per node, all at once."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    module = module or PROJECT
    # a lambda travels by value: it runs on a node that cannot import gancmp
    probe = ray.remote(num_cpus=0)(
        lambda name: __import__("importlib.util").util.find_spec(name) is not None)
    refs = {nid: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        nid, soft=False)).remote(module) for nid in node_ids}
    out: dict[str, str | None] = {}
    for nid, ref in refs.items():
        try:
            found = ray.get(ref, timeout=120)
        except Exception as e:  # noqa: BLE001  (whatever stopped the probe is the answer)
            out[nid] = f"the probe failed: {(str(e).strip().splitlines() or [''])[0][:200]}"
            continue
        out[nid] = None if found else f"`{module}` is not installed there"
    return out


def check_node(ray: Any, node_id: str, module: str | None = None) -> str | None:
    """`check_nodes` of one node."""
    return check_nodes(ray, [node_id], module)[node_id]


def failed_path(workdir: str) -> str:
    """Where a given-up group's records go: `failed-0.jsonl`, beside the results and not among
    them (the report reads only what was measured; `gancmp sweep` trains those trials again)."""
    return os.path.join(str(workdir), "failed-0.jsonl")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _death_reason(e: BaseException) -> str:
    """The line of an actor's death that says why: the last line naming an error (an exception
    its `__init__` raised), else the first."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    errors = [x for x in lines if "Error" in x.split(":", 1)[0]]
    return (errors or lines or [type(e).__name__])[-1 if errors else 0][:300]


# --- the driver --------------------------------------------------------------------------------


@dataclasses.dataclass
class Slot:
    """The driver's view of one actor: its node, what it runs (an item, since when)."""

    node: str
    actor: Any
    item: Any = None
    since: float = 0.0
    ref: Any = None

    def state(self, now: float) -> str:
        if self.item is None:
            return f"{self.node[:8]} idle"
        return f"{self.node[:8]} {self.item.key} ({now - self.since:.0f} s)"


class Driver:
    """The queue, the actors and the records of one sweep (`run_sweep`). `tick(driver)`, when
    given, runs after every look at the actors (tests use it to kill a node mid-group)."""

    def __init__(self, ray: Any, sweep: Any, workdir: str, settings: Settings, log: Callable,
                 tick: Callable[[Driver], None] | None = None):
        self.ray, self.sweep, self.workdir, self.settings = ray, sweep, workdir, settings
        self.checked: dict[str, str | None] = {}  # node id -> `check_nodes`' answer
        self.last_death, self.given_up_phases = "", 0
        self.log, self.tick = log, tick
        self.name = sweep.name
        self.recorded = {r.trial_id: r for r in runner.read_recorded(workdir)}
        self.waiting = [(i, j) for i, s in enumerate(sweep.studies) for j in range(len(s.phases))]
        self.queue = GroupQueue(settings.max_failures)
        self.slots: dict[str, Slot] = {}
        self.starts: Counter = Counter()
        self.counts = {"run": 0, "skipped": 0, "waiting": 0, "diverged": 0, "interrupted": 0,
                       "failed": 0, "groups": 0, "groups_done": 0}
        self.timeline: list[tuple[str, float, float]] = []  # (node, start, end) of each group
        self.started = time.time()
        self.keep = retention.policy(sweep)

    def done(self) -> frozenset[str]:
        return frozenset(runner.finished_ids(list(self.recorded.values())))

    def run(self) -> dict[str, int]:
        """Until the queue is empty and no actor works: release phases, start actors, hand out
        items, collect results."""
        self._release()
        said_no_host = False
        while len(self.queue) or self._busy():
            self._ensure_actors()
            self._dispatch()
            if not self._busy():
                if not self.slots:
                    self._no_actor(said_no_host)
                    said_no_host = True
                time.sleep(min(self.settings.poll_s, 0.5))
                continue
            refs = [s.ref for s in self.slots.values() if s.ref is not None]
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=self.settings.poll_s)
            for ref in ready:
                self._collect(next(s for s in self.slots.values() if s.ref == ref))
            if self.tick is not None:
                self.tick(self)
        self.counts["waiting"] = len(self.waiting) + self.given_up_phases
        return self.counts

    def close(self) -> None:
        """Stops this driver's actors: their hosts are free for the next sweep at once (a
        connection left open, as the tests' and a notebook's, would keep them)."""
        for slot in self.slots.values():
            self.ray.kill(slot.actor)
        self.slots.clear()

    def _no_actor(self, said: bool) -> None:
        """No actor: ConfigError when every host node's actors died `max_failures` times (they
        cannot start: the last death's reason), else waits for a node, said once."""
        nodes = host_nodes(self.ray)
        if nodes and all(self.starts[n["NodeID"]] >= self.settings.max_failures for n in nodes):
            raise ConfigError(f"no actor could start on any of the {len(nodes)} host nodes "
                              f"({self.last_death or 'no reason given'})")
        if not said:
            self.log(f"waiting for a node offering the resource {HOST_RESOURCE} "
                     "(`ray start --address HEAD --resources '{\"gancmp_host\": 1}'`)")

    def _busy(self) -> bool:
        return any(s.ref is not None for s in self.slots.values())

    def _release(self) -> None:
        """Puts every phase whose trials are known (a seeds phase: once its source phase is
        recorded) on the queue, to be planned (by an actor: the trials' devices are its
        host's)."""
        rows = [r.to_json() for r in self.recorded.values()]
        for i, j in list(self.waiting):
            study = self.sweep.studies[i]
            trials = expand_phase(self.sweep, study, study.phases[j], rows)
            if trials is None:
                continue
            self.waiting.remove((i, j))
            self.queue.push(PhaseItem(i, j, f"{study.name}/{study.phases[j].name}",
                                      tuple(rows), self.done()))

    def check_and_start(self, nodes: Sequence[dict[str, Any]]) -> None:
        """Starts an actor on each of `nodes` while `check_nodes` probes them (an actor's start
        is most of the time before the first group); ConfigError in one line, the actors
        stopped, when a node cannot import the project."""
        for node in nodes:
            self.starts[node["NodeID"]] += 1
            self.slots[node["NodeID"]] = Slot(node["NodeID"], self._start_actor(node["NodeID"]))
        self.checked = check_nodes(self.ray, [n["NodeID"] for n in nodes])
        for node in nodes:
            problem = self.checked[node["NodeID"]]
            if problem is not None:
                raise ConfigError(f"node {node['NodeID'][:8]} "
                                  f"({node.get('NodeManagerAddress')}): {problem}; install "
                                  f"the project on every node ({INSTALL})")

    def _ensure_actors(self) -> None:
        """An actor on every live host node without one (a node whose project cannot be
        imported, or whose actors died `max_failures` times, is left alone, said once)."""
        for node in host_nodes(self.ray):
            nid = node["NodeID"]
            if nid in self.slots or self.starts[nid] >= self.settings.max_failures:
                continue
            self.starts[nid] += 1
            if nid not in self.checked:  # a node that joined during the sweep
                self.checked[nid] = check_node(self.ray, nid)
            problem = self.checked[nid]
            if problem is not None:
                self.starts[nid] = self.settings.max_failures
                self.log(f"node {nid[:8]} ({node.get('NodeManagerAddress')}): {problem}; "
                         "no actor there (install the project on every node)")
                continue
            self.slots[nid] = Slot(nid, self._start_actor(nid))

    def _start_actor(self, node_id: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        worker = self.ray.remote(GroupWorker)
        return worker.options(
            num_cpus=0, resources={HOST_RESOURCE: 1}, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(self.sweep, self.workdir, self.settings, forwarded_env())

    def _dispatch(self) -> None:
        """Hands the next ready item to every idle actor."""
        for slot in self.slots.values():
            if slot.ref is not None:
                continue
            item = self.queue.pop()
            if item is None:
                return
            slot.item, slot.since = item, time.time()
            slot.ref = (slot.actor.plan.remote(item) if isinstance(item, PhaseItem)
                        else slot.actor.run.remote(item, self.done(), self.keep))

    def _collect(self, slot: Slot) -> None:
        """The result of `slot`'s item: records appended, groups queued, or the item back on
        the queue (its actor died, the group was locked or interrupted) or given up."""
        item, ref = slot.item, slot.ref
        slot.item = slot.ref = None
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            del self.slots[slot.node]
            self.last_death = _death_reason(e)
            self.log(f"actor on node {slot.node[:8]} lost while on {item.key}; back on the "
                     "queue")
            # an actor that never started (its node counts it: `_no_actor`) is not the item's
            result = {"retry": True} if CREATION_FAILED in str(e) else {"error": ACTOR_DIED}
        except self.ray.exceptions.RayError as e:  # the call itself failed (not the group)
            result = {"error": _first_line(e)}
        if "locked" in result or result.get("interrupted") or result.get("retry"):
            self.queue.push(item, delay_s=0.0 if result.get("retry") else 5.0)
        elif "error" in result:
            self._failed(item, result["error"])
        elif isinstance(item, PhaseItem):
            self._planned(item, result)
        else:
            self._recorded(item, result, slot.node)
        self._progress()

    def _failed(self, item: Any, error: str) -> None:
        if not self.queue.failed(item, error):
            self.queue.push(item)
            return
        self.log(f"{item.key}: failed {self.queue.max_failures} times ({error}); given up")
        if isinstance(item, PhaseItem):
            self.given_up_phases += 1
        else:
            recs = failed_records(item, self.name, error, self.done())
            self._append(recs, failed_path(self.workdir))
            self.counts["failed"] += len(recs)
            self.counts["groups_done"] += 1

    def _planned(self, item: PhaseItem, result: dict[str, Any]) -> None:
        self.counts["skipped"] += result["skipped"]
        self.counts["groups"] += len(result["tasks"])
        for task in result["tasks"]:
            self.queue.push(task)

    def _recorded(self, task: GroupTask, result: dict[str, Any], node: str) -> None:
        recs = [Record.from_json(r) for r in result["records"]]
        self._append(recs)
        self.timeline.append((node, result["start"], result["end"]))
        self.counts["run"] += len(recs)
        self.counts["diverged"] += sum(r.status == "diverged" for r in recs)
        self.counts["groups_done"] += 1

    def _append(self, recs: Sequence[Record], path: str | None = None) -> None:
        """Appends `recs` to the results (or to `path`), and releases the phases they
        complete."""
        if recs:
            records.append(path or records.results_path(self.workdir, 0), *recs)
            self.recorded.update((r.trial_id, r) for r in recs)
            self._release()

    def _progress(self) -> None:
        c, now = self.counts, time.time()
        left = c["groups"] - c["groups_done"]
        spans = [end - start for _, start, end in self.timeline]
        eta = ""
        if spans and self.slots:
            eta = f", ETA {sum(spans) / len(spans) * left / len(self.slots) / 60:.1f} min"
        more = f" (+{len(self.waiting)} phases to release)" if self.waiting else ""
        states = "; ".join(s.state(now) for s in self.slots.values()) or "none"
        self.log(f"groups {c['groups_done']}/{c['groups']} done{more}{eta}; actors: {states}")


def run_sweep(sweep: Any, workdir: str, address: str | None = None,
              settings: Settings | None = None, log: Callable = print,
              tick: Callable[[Driver], None] | None = None) -> dict[str, Any]:
    """Runs the sweep on the Ray cluster at `address` (`resolve_address`; None: a new local
    cluster), holding the sweep's lock; returns the in-process engine's counts (`run`,
    `skipped`, `diverged`, `waiting`, `interrupted`), plus `failed` (trials recorded as failed),
    `groups` and `groups_done`, `wall_s` and `timeline` ((node, start, end) of each group
    trained). Every host node must have the project installed (`check_node`: ConfigError in one
    line for a node at the start that has not)."""
    runner.check_sweep(sweep)
    ray = import_ray()
    storage.makedirs(workdir)
    with storage.lock(records.lock_path(workdir, 0)):
        started, own = time.time(), not ray.is_initialized()
        if own:  # else: the caller's connection (tests, notebooks), left open
            connect(address)
        try:
            driver = Driver(ray, sweep, workdir, settings or Settings(), log, tick)
            try:
                driver.check_and_start(host_nodes(ray))
                counts = driver.run()
            finally:
                driver.close()
        finally:
            if own:
                ray.shutdown()
    return {**counts, "wall_s": time.time() - started, "timeline": driver.timeline}

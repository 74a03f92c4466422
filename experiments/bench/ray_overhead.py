"""The Ray engine's overhead (issue 23's goal): the share of a sweep's wall time spent outside
training and evaluation (connecting, probing the nodes, starting the actors, scheduling, moving
groups and records) on a local 2-node Ray cluster of this machine.

    PYTHONPATH=$PWD python experiments/bench/ray_overhead.py [--steps 1000] [--json]

Starts a head (no actor) and two worker nodes offering `gancmp_host` (CPU actors, one JAX device
each: one core per node), runs a two-phase sweep of ring8 MLPs (NS_GAN and WGAN, 2 settings, then
2 seeds of each method's best: 4 groups of 2 trials) through `ray_engine.run_sweep`, and reports:
`wall_s` (`ray_engine.run_sweep`'s whole call on the connected cluster: the lock, the node
probes, the actors' start, the queue, to the last record), `busy_s` (the
time at least one actor was inside a group: `runner.group_records`, which is training,
evaluation, compiling, checkpoints and records), `overhead` = 1 - busy/wall, and `utilisation`
(the actors' summed group time over 2 × wall: what the phase barrier and the unequal groups
leave idle). The in-process engine runs the same sweep on the same devices afterwards
(`inprocess_s`). The cluster is this script's own (a temp dir, stopped by pid at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sweep_config(steps: int):
    """The benchmark's sweep: two phases, four groups."""
    import ml_collections

    from gancmp.config import load_config_file

    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = "ray-overhead", 0, 2, ""
    s = ml_collections.ConfigDict()
    s.name, s.methods = "ring8", "NS_GAN,WGAN"
    s.trial = load_config_file(os.path.join(ROOT, "configs", "ring8_mlp.py"),
                               num_d_steps=steps, checkpoint_every=steps // 4, batch_size=64,
                               steps_per_call=25)
    s.trial.eval = ml_collections.ConfigDict({"num_samples": 1000})
    s.phases = [ml_collections.ConfigDict(dict(
        name="tuned", mode="tuned", range="narrow", num_settings=2, seeds=[0],
        fixed=dict(disc_iters=1, d_batch_norm=False))),
        ml_collections.ConfigDict(dict(name="seeds", mode="seeds", source="tuned",
                                       num_seeds=2))]
    c.studies = [s]
    return c


def busy_union(timeline) -> float:
    """Seconds covered by at least one (start, end) interval of `timeline` ((node, start, end))."""
    total, end_so_far = 0.0, None
    for _, start, end in sorted(timeline, key=lambda t: t[1]):
        if end_so_far is None or start > end_so_far:
            total += end - start
            end_so_far = end
        elif end > end_so_far:
            total += end - end_so_far
            end_so_far = end
    return total


def measure(steps: int, log, cache: str | None = None) -> dict:
    """The benchmark (module docstring); `cache`: the compilation cache of both engines (None:
    a fresh one each, so that both compile everything)."""
    tmp = tempfile.mkdtemp(prefix="gray", dir="/tmp")
    os.makedirs(os.path.join(tmp, "ray"))
    os.environ["RAY_TMPDIR"] = tmp
    import ray
    from ray.cluster_utils import Cluster

    from gancmp import runtime
    from gancmp.sweep import ray_engine, runner

    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0,
                                                                include_dashboard=False))
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources={ray_engine.HOST_RESOURCE: 1})
        ray.init(address=cluster.address, logging_level="WARNING")
        begun = time.time()
        counts = ray_engine.run_sweep(sweep_config(steps), os.path.join(tmp, "ray-w"),
                                      settings=ray_engine.Settings(
                                          cpu_devices=1, compilation_cache=cache
                                          or os.path.join(tmp, "xla-ray")), log=log)
        ended = time.time()
        ray.shutdown()
    finally:
        cluster.shutdown()
    runtime.enable_compilation_cache(cache or os.path.join(tmp, "xla-inprocess"))
    started = time.time()
    runner.run_sweep(sweep_config(steps), os.path.join(tmp, "inprocess-w"), progress=False,
                     log=lambda m: None)
    inprocess = time.time() - started
    shutil.rmtree(tmp, ignore_errors=True)
    timeline = counts["timeline"]
    busy, wall = busy_union(timeline), ended - begun
    summed = sum(end - start for _, start, end in timeline)
    first, last = min(t[1] for t in timeline), max(t[2] for t in timeline)
    return {"steps": steps, "groups": counts["groups_done"], "wall_s": wall, "busy_s": busy,
            "overhead": 1 - busy / wall, "before_first_group_s": first - begun,
            "after_last_group_s": ended - last, "between_groups_s": (last - first) - busy,
            "utilisation": summed / (2 * wall), "inprocess_s": inprocess}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="D steps per trial")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cache", default=None, help="compilation cache of both engines "
                        "(default: a fresh one each: everything compiled)")
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, ROOT)
    result = measure(args.steps, log=lambda m: print(m, file=sys.stderr, flush=True),
                     cache=args.cache)
    if args.json:
        print(json.dumps(result))
        return
    r = result
    print(f"{r['groups']} groups, {args.steps} D steps per trial: wall {r['wall_s']:.1f} s, at "
          f"least one actor in a group {r['busy_s']:.1f} s: overhead {100 * r['overhead']:.1f} % "
          f"of the wall time ({r['before_first_group_s']:.1f} s before the first group, "
          f"{r['between_groups_s']:.1f} s between groups, {r['after_last_group_s']:.1f} s after "
          f"the last); actors busy {100 * r['utilisation']:.0f} %; in-process engine "
          f"{r['inprocess_s']:.1f} s")


if __name__ == "__main__":
    main()

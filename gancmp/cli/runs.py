"""The commands that train and read runs: sweep | report | train | eval | sample.

Flag definitions and runners only; `gancmp.cli.main` dispatches to them and reports their errors
in one line. The trainer, the sweep runner and the report are imported only once a command runs.
"""

from __future__ import annotations

import sys

import ml_collections
from absl import flags
from ml_collections import config_flags

from gancmp.cli.common import (
    FLAGS,
    WAITING,
    CtrlC,
    UsageError,
    check_workdir_config,
    define_distributed,
    define_runtime,
    initialize_distributed,
    start_runtime,
    trial_config,
)

PROGRESS_HELP = ("Show progress: a bar on a terminal, else one line every $GANCMP_PROGRESS_EVERY "
                 "seconds (default 30).")


def define_train() -> None:
    """Flags of `gancmp train`."""
    config_flags.DEFINE_config_file("config", None, "Trial config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, samples and result.")
    flags.DEFINE_bool("progress", True, PROGRESS_HELP)
    define_distributed()
    define_runtime()


def run_train() -> int:
    """Trains one trial (--config) in --workdir, or resumes it."""
    from gancmp.train import loop, workdir
    from gancmp.trial import make_trial

    start_runtime()
    initialize_distributed()
    if not FLAGS.workdir:
        raise UsageError("--workdir: required (a directory for checkpoints, logs and results)")
    trial = make_trial(trial_config())
    check_workdir_config(FLAGS.workdir)
    with CtrlC() as ctrl_c:
        record, done = loop.train_trial(trial, FLAGS.workdir, progress=FLAGS.progress)
    if record.status == "interrupted":
        code, by = ctrl_c.status()
        print(f"interrupted ({by}) at {record.steps}/{record.num_d_steps} D steps: "
              "checkpoint saved; run the same command to resume", file=sys.stderr)
        return code
    losses = ", ".join(f"{k} {v:.4g}" for k, v in (record.final_losses or {}).items())
    print(f"{'already ' * done}{record.status}: {record.steps}/{record.num_d_steps} D "
          f"steps of {record.method} on {record.dataset} in {record.wall_time_s:.1f} s "
          f"({losses}){f'; left as recorded in {workdir.result_path(FLAGS.workdir)}' * done}")
    if done:
        return 0
    if record.samples:
        print(f"samples: {record.samples}")
    print(f"result: {workdir.result_path(FLAGS.workdir)}")
    return 0


def define_eval() -> None:
    """Flags of `gancmp eval`."""
    flags.DEFINE_string("workdir", None, "The workdir of a `gancmp train` run.")
    flags.DEFINE_list("steps", None, "Checkpoint steps to evaluate (default: all).")
    flags.DEFINE_string("inception_weights", None,
                        "FID weights: a converted .npz or pytorch-fid's .pth (default: the "
                        "trial's config.fid.inception_weights, else the cached download).")
    flags.DEFINE_integer("num_samples", None, "Generated samples per evaluation.")


def run_eval() -> int:
    """Scores the checkpoints of a `gancmp train` workdir."""
    from gancmp.train import evaluation, workdir

    if not FLAGS.workdir:
        raise UsageError("--workdir: required (the workdir of a `gancmp train` run)")
    check_workdir_config(FLAGS.workdir)
    try:
        steps = [int(s) for s in FLAGS.steps or ()]
    except ValueError:
        raise UsageError(f"--steps: integers expected, got {FLAGS.steps}") from None
    overrides = {}
    if FLAGS.inception_weights:
        overrides["fid.inception_weights"] = FLAGS.inception_weights
    if FLAGS.num_samples:
        overrides["eval.num_samples"] = FLAGS.num_samples
    summary = evaluation.evaluate_trial(FLAGS.workdir, overrides, steps or None)
    best = summary["best"]
    if best:
        print(f"best {best['metric']}: {best['value']:.4g} at step {best['step']}")
    print(f"result: {workdir.result_path(FLAGS.workdir)}")
    return 0


def define_sweep() -> None:
    """Flags of `gancmp sweep`."""
    config_flags.DEFINE_config_file("config", None, "Sweep config file (configs/sweeps/*.py); "
                                    "--config.FIELD=VALUE sets a sweep field.", lock_config=True)
    flags.DEFINE_multi_string("trial", [], "FIELD=VALUE: sets a field of every study's trial "
                              "config (repeatable), e.g. --trial data_dir=gs://B/tfds --trial "
                              "fid.inception_weights=gs://B/inception.npz.")
    flags.DEFINE_string("workdir", None, "Sweep directory (local or gs://): results, groups.")
    flags.DEFINE_string("shard", "0/1", "This process's share of the trials: i/N.")
    flags.DEFINE_bool("progress", True, PROGRESS_HELP)
    flags.DEFINE_bool("report", True, "Write the report when the sweep is complete.")
    flags.DEFINE_enum("engine", "inprocess", ["inprocess", "ray"], "inprocess: this process "
                      "runs the groups (with --shard i/N, this shard's); ray: a Ray cluster runs "
                      "them, one actor per host (needs gancmp[cluster]; README, \"Beyond one "
                      "machine\").")
    flags.DEFINE_string("ray_address", None, "--engine ray: the cluster's head (HOST:PORT, "
                        "ray://HOST:PORT or auto); default $RAY_ADDRESS, else a new local "
                        "cluster of this machine.")
    flags.DEFINE_integer("ray_max_failures", 3, "--engine ray: a group that fails the same way "
                         "this many times is recorded as failed and the sweep goes on.")
    flags.DEFINE_bool("wait_for_shards", True, "With --shard i/N: wait at a seeds phase until "
                      "the other shards have recorded its source phase (looking every "
                      "$GANCMP_PHASE_POLL_S seconds, default 60); --nowait_for_shards skips "
                      "it and exits with 75 (not finished).")
    define_distributed()
    define_runtime(cpu_devices=0)


def run_sweep() -> int:
    """Runs this shard's trials of a study, then its report when the sweep is complete."""
    from gancmp.report import build
    from gancmp.sweep import runner

    if FLAGS["config"].value is None or not FLAGS.workdir:
        raise UsageError("--config and --workdir: required")
    shard = runner.parse_shard(FLAGS.shard)
    if FLAGS.engine == "ray":
        return _run_ray_sweep(shard)
    if shard[1] > 1 and FLAGS.coordinator_address:
        raise UsageError("--shard i/N (independent jobs, one per host) and --coordinator_address "
                         "(one job over all hosts) exclude each other; choose one")
    start_runtime()
    # With --shard i/N every host is its own job: never join them by auto-detection.
    initialize_distributed(auto=shard[1] == 1)
    sweep, margins = _sweep_config()
    with CtrlC() as ctrl_c:
        counts = runner.run_sweep(sweep, FLAGS.workdir, shard, progress=FLAGS.progress,
                                  wait=FLAGS.wait_for_shards)
    if counts["interrupted"]:
        code, by = ctrl_c.status()
        print(f"interrupted ({by}) after {counts['run']} trials: checkpoints saved, no "
              "report; run the same command to resume", file=sys.stderr)
        return code
    print(f"trials run: {counts['run']} ({counts['diverged']} diverged), already finished: "
          f"{counts['skipped']}, phases waiting for other shards: {counts['waiting']}")
    from gancmp.runtime import is_main_process

    if counts["waiting"]:  # not finished: a launcher's watch must not take it for done
        return WAITING
    if FLAGS.report and shard[1] == 1 and is_main_process():
        print(f"report: {build.build([FLAGS.workdir], FLAGS.workdir + '/report', margins)}")
    return 0


def _sweep_config() -> tuple[ml_collections.ConfigDict, dict]:
    """The sweep of --config with the --trial overrides, and its studies' equivalence margins
    (a bad margin is one usage line)."""
    from gancmp.report import build
    from gancmp.sweep import runner

    sweep = trial_config("configs/sweeps/quick.py")
    runner.override_trials(sweep, FLAGS.trial)
    try:
        return sweep, build.study_margins(sweep)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _run_ray_sweep(shard: tuple[int, int]) -> int:
    """`gancmp sweep --engine ray`: the sweep on a Ray cluster (`gancmp.sweep.ray_engine`),
    then its report."""
    from gancmp.report import build
    from gancmp.sweep import ray_engine

    if shard[1] > 1 or FLAGS.coordinator_address:
        raise UsageError("--engine ray runs the whole sweep over the cluster's hosts: leave out "
                         "--shard and --coordinator_address")
    if FLAGS.ray_max_failures < 1:
        raise UsageError(f"--ray_max_failures: at least 1, got {FLAGS.ray_max_failures}")
    ray_engine.import_ray()  # one line, before anything else, when Ray is missing
    sweep, margins = _sweep_config()
    settings = ray_engine.Settings(cpu_devices=FLAGS.cpu_devices,
                                   compilation_cache=FLAGS.compilation_cache,
                                   max_failures=FLAGS.ray_max_failures)
    counts = ray_engine.run_sweep(sweep, FLAGS.workdir,
                                  ray_engine.resolve_address(FLAGS.ray_address), settings)
    print(f"trials run: {counts['run']} ({counts['diverged']} diverged), already finished: "
          f"{counts['skipped']}, failed: {counts['failed']}, phases not released: "
          f"{counts['waiting']}; {counts['wall_s']:.0f} s")
    if counts["waiting"]:
        return WAITING
    if FLAGS.report:
        print(f"report: {build.build([FLAGS.workdir], FLAGS.workdir + '/report', margins)}")
    return 0


def define_report() -> None:
    """Flags of `gancmp report DIR...`."""
    flags.DEFINE_string("out", None, "Output directory (default: FIRST_DIR/report).")
    flags.DEFINE_multi_string("margin", [], "METRIC=M (repeatable): test equivalence within ±M "
                              "of METRIC in every study that has it, e.g. --margin fid=5 (a "
                              "sweep's own report takes its studies' equivalence_margins).")


def run_report(dirs: list[str]) -> int:
    """Writes the report comparing the losses of the sweep directories `dirs`."""
    from gancmp import storage
    from gancmp.report import build

    if not dirs:
        raise UsageError("give one or more sweep directories: gancmp report DIR [DIR ...]")
    out = FLAGS.out or dirs[0].rstrip("/") + "/report"
    if storage.isfile(out):
        raise UsageError(f"--out: {out} is a file; the report is a folder (report.md and its "
                         "plots): name a folder, new or existing")
    try:
        margin = build.parse_margins(FLAGS.margin)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(build.build(dirs, out, {"*": margin}))
    return 0


def define_sample() -> None:
    """Flags of `gancmp sample`."""
    flags.DEFINE_string("workdir", None, "A trial workdir (gancmp train) or a sweep workdir.")
    flags.DEFINE_string("trial", None, "Trial id, for a sweep workdir.")
    flags.DEFINE_integer("num", 64, "Number of samples.")
    flags.DEFINE_integer("seed", 0, "Seed of the latent noise.")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
    flags.DEFINE_string("out", "samples.png", "PNG to write.")


def run_sample() -> int:
    """Writes a grid of samples of a trained generator to a PNG."""
    from gancmp import storage
    from gancmp.generator import load_generator
    from gancmp.train.samples import save_samples

    if not FLAGS.workdir:
        raise UsageError("--workdir: required")
    if storage.isdir(FLAGS.out):
        raise UsageError(f"--out: {FLAGS.out} is a folder; name the PNG file to write, e.g. "
                         f"{FLAGS.out.rstrip('/')}/samples.png")
    _check_num(FLAGS.num)
    check_workdir_config(FLAGS.workdir)
    g = load_generator(FLAGS.workdir, FLAGS.trial, FLAGS.step)
    _check_num(FLAGS.num, g.setup.example_shape)
    path = save_samples(g.sample(FLAGS.num, FLAGS.seed), FLAGS.out,
                        title=f"{g.setup.method.name} on {g.setup.dataset}, step {g.step}")
    print(f"{FLAGS.num} samples of step {g.step}: {path}")
    return 0


MAX_IMAGES = 10_000  # a 100 × 100 grid: `gancmp sample --num` for image data
MAX_POINTS = 1_000_000  # points of a 2-D scatter


def _check_num(num: int, shape: tuple[int, ...] | None = None) -> None:
    """UsageError unless `gancmp sample --num` is a count one picture can show: 1 to
    `MAX_IMAGES` images, or `MAX_POINTS` points for 2-D examples (`shape` None: not known
    yet, the larger bound)."""
    images = f"to {MAX_IMAGES} for images (a grid)"
    points = f"to {MAX_POINTS} for 2-D points (a scatter)"
    limit, allowed = MAX_POINTS, f"1 {images} or {points}"
    if shape is not None:
        limit, allowed = (MAX_IMAGES, f"1 {images}") if len(shape) > 1 else (
            MAX_POINTS, f"1 {points}")
    if not 1 <= num <= limit:
        raise UsageError(f"--num: must be {allowed}, got {num}")

"""`gancmp plan`: counts of a tiny sweep computed by hand, the --json object, bad input."""

import json
import os
import subprocess
import sys

import pytest

from gancmp.config import ConfigError, load_config_file
from gancmp.sweep import costs, plan
from tests.helpers import CPU_COMPILE_FLAGS, ROOT

TINY = '''
import ml_collections
from gancmp.config import load_config_file


def get_config():
    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = "tiny", 0, 16, ""
    s = ml_collections.ConfigDict()
    s.name = "ring8"
    s.trial = load_config_file("{root}/configs/ring8_mlp.py", num_d_steps=40,
                                checkpoint_every=20, batch_size=32, steps_per_call=5)
    s.trial.eval = ml_collections.ConfigDict({{"num_samples": 500}})
    s.methods = "NS_GAN,WGAN"
    s.phases = [
        ml_collections.ConfigDict(dict(name="tuned", mode="tuned", range="narrow",
                                       num_settings=2, seeds=[0],
                                       fixed=dict(disc_iters=1, d_batch_norm=False))),
        ml_collections.ConfigDict(dict(name="seeds", mode="seeds", source="tuned",
                                       num_seeds=2)),
    ]
    c.studies = [s]
    return c
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "tiny.py"
    path.write_text(TINY.format(root=ROOT))
    return str(path)


def test_counts_by_hand(tiny):

    p = plan.plan(load_config_file(tiny), "v4-8", measure_memory=False)
    # 2 methods × 2 settings × 1 seed, then 2 methods × 2 seeds
    assert p["trials"] == 8 and p["d_updates"] == 8 * 40
    # v4-8 = 4 chips; each method's class has 2 trials: ceil(2/4) = 1 per chip, K = 4, one group
    # per method and phase, one program per method (the seeds reuse it; 40 = 8 calls of 5)
    assert p["groups"] == 4 and p["programs"] == 2
    assert [r["groups"] for r in p["studies"][0]["phases"]] == [2, 2]
    # MLP G 16→128→128→2, D 2→128→128→1 at batch 32: f_g = 32·18,688, f_d = 32·16,768 MACs;
    # an iteration is 2·((f_g + 6 f_d) + (3 f_g + 2 f_d)) FLOPs = 13,369,344
    assert p["train_flop"] == 8 * 40 * 13_369_344
    assert p["computed_train_flop"] == 16 * 40 * 13_369_344  # 4 groups padded to K = 4
    # 2 checkpoints × 500 samples × 2·18,688 FLOPs each, per trial
    assert p["eval_flop"] == 8 * 2 * 500 * 2 * 18_688
    assert set(p["hours"]) == {*costs.ACCELERATORS, "cpu"}
    assert p["precision"]["v4-8"] == "bfloat16" and p["precision"]["1xH100"] == "tensorfloat32"
    # v4-8 hours by part: computed training at 30 % of 4 × 275 TFLOP/s (one bf16 pass), eval at
    # 50 %, 40 s per program; WGAN's program compiles while NS_GAN's first group (4 computed
    # trials, 2 evaluated) trains, so that group's time is off the critical path
    parts = p["hours_parts"]
    assert parts["train"] == pytest.approx(16 * 40 * 13_369_344 / (4 * 275e12 * 0.3) / 3600)
    assert parts["eval"] == pytest.approx(p["eval_flop"] / (4 * 275e12 * 0.5) / 3600)
    first_group_s = (4 * 40 * 13_369_344 / (4 * 275e12 * 0.3)
                     + 2 * 2 * 500 * 2 * 18_688 / (4 * 275e12 * 0.5))
    assert p["compile_ahead"] and parts["compile"] == pytest.approx((2 * 40 - first_group_s) / 3600)
    assert p["hours"]["v4-8"] == pytest.approx(sum(parts.values()))
    # checkpoints: 16 computed trials × 2 checkpoints × one trial's state
    state = p["checkpoint_bytes"] // (16 * 2)
    assert state * 32 == p["checkpoint_bytes"] and state > 4 * 3 * (16 * 128 + 128 * 128)
    # kept at the end ("latest_and_best"): at most 1 + K = 5 of a group's 2 checkpoints: both
    assert p["checkpoint_kept_bytes"] == p["checkpoint_bytes"]
    sweep = load_config_file(tiny)
    sweep.keep_checkpoints = "all"
    for study in sweep.studies:
        study.trial.keep_checkpoints = 1  # the trial's own cap: the latest alone
    capped = plan.plan(sweep, "v4-8", measure_memory=False)
    assert capped["checkpoint_kept_bytes"] == p["checkpoint_bytes"] // 2


def test_compile_ahead_off_puts_every_program_on_the_critical_path(tiny):

    sweep = load_config_file(tiny)
    sweep.compile_ahead = "off"
    p = plan.plan(sweep, "v4-8", measure_memory=False)
    assert not p["compile_ahead"] and p["hours_parts"]["compile"] == pytest.approx(2 * 40 / 3600)
    assert "one after another: compile_ahead is off" in plan.summary(p)


def test_hours_follow_rates_and_utilisation():
    v4 = costs.ACCELERATORS["v4-8"]
    assert v4.rate("bfloat16_3x") == 4 * 275e12 / 3 and v4.rate("float32") == 4 * 275e12 / 6
    h100 = costs.ACCELERATORS["1xH100"]
    assert h100.rate("tensorfloat32") == 495e12 and h100.rate("float32", "bfloat16") == 989e12
    hours = costs.hours(v4, 1e18, 0.0, 0, "bfloat16_3x", "float32")
    assert hours == pytest.approx(1e18 / (4 * 275e12 / 3 * 0.3) / 3600)


def test_bad_accelerator_is_one_line():
    with pytest.raises(ConfigError, match=r"^--accelerator: unknown 'v9'; allowed: v4-8, "
                                          r"v5e-8, v5p-8, v6e-8, 8xH100, 1xH100, cpu$"):
        plan.check_accelerator("v9")


def _gancmp(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": CPU_COMPILE_FLAGS,
           "GANCMP_COMPILATION_CACHE": "none"}
    return subprocess.run([sys.executable, "-m", "gancmp.cli", "plan", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def test_cli_json_and_bad_accelerator(tiny):
    out = _gancmp("--config", tiny, "--accelerator", "v4-8", "--json")
    assert out.returncode == 0, out.stderr
    p = json.loads(out.stdout)
    for key in ("trials", "groups", "programs", "d_updates", "train_flop", "eval_flop",
                "checkpoint_bytes", "peak_device_bytes", "hours"):
        assert key in p, key
    assert (p["trials"], p["groups"], p["programs"]) == (8, 4, 2)
    assert 0 < p["peak_device_bytes"] < 2**30 and set(p["hours"]) >= {"v4-8", "cpu"}
    bad = _gancmp("--config", tiny, "--accelerator", "v9")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "gancmp plan: error: --accelerator: unknown 'v9'; allowed: v4-8, v5e-8, v5p-8, v6e-8, "
        "8xH100, 1xH100, cpu"]


IMAGES = '''
import ml_collections
from gancmp.config import load_config_file


def get_config():
    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = "images", 0, 16, ""
    s = ml_collections.ConfigDict()
    s.name = "mnist"
    s.trial = load_config_file("{root}/configs/mnist_infogan.py", num_d_steps=40,
                               checkpoint_every=20, steps_per_call=5)
    s.trial.eval = ml_collections.ConfigDict({{"num_samples": 4096}})
    s.trial.fid.num_real = 4096
    s.trial.fid.matmul_precision = "{metric}"
    s.methods = "NS_GAN"
    s.phases = [ml_collections.ConfigDict(dict(name="tuned", mode="tuned", range="wide",
                                               num_settings=1, seeds=[0]))]
    c.studies = [s]
    return c
'''


@pytest.mark.parametrize("metric,passes", [("float32", 6), ("bfloat16_3x", 3)])
def test_plan_prices_the_metric_network_at_its_own_precision(tmp_path, metric, passes):
    """Training at the TPU's one bf16 pass, the FID Inception (and KID/PR's float32 products) at
    `fid.matmul_precision`: float32 costs 6 bf16 passes on a TPU, bfloat16_3x 3 (issue 24)."""
    path = tmp_path / "images.py"
    path.write_text(IMAGES.format(root=ROOT, metric=metric))
    p = plan.plan(load_config_file(str(path)), "v4-8", measure_memory=False)
    assert p["precision"]["v4-8"] == "bfloat16" and p["metric_precision"]["v4-8"] == metric
    assert p["metric_precision"]["1xH100"] == "float32"  # no 3-pass mode on a GPU
    inception, n = plan.inception_flops(), 4096
    # 2 checkpoints × (4096 samples' features + KID's and PR's products), the real side once
    kid_pr = 2 * 2.0 * (n * n + n * n) * 2048
    assert p["metric_flop"] == pytest.approx(2 * (n * inception + kid_pr) + n * inception)
    generator = p["eval_flop"] - p["metric_flop"]
    assert 0 < generator < 1e-2 * p["metric_flop"]  # G is small beside the Inception
    peak = 4 * 275e12 * 0.5
    assert p["hours_parts"]["eval"] == pytest.approx(
        (generator / peak + p["metric_flop"] / (peak / passes)) / 3600)
    assert f"v4-8 {p['hours']['v4-8']:.3g} (bfloat16, metrics {metric})" in plan.summary(p)


def test_hours_on_n_workers_by_hand():
    """`plan.workers_hours`: each group to the worker free first, a seeds phase after its source
    phase, a program compiled once per worker that runs it."""
    acc = costs.accelerators()["v4-8"]
    flop = 1e15
    t = costs.train_seconds(acc, flop, "bfloat16", "float32")
    c = costs.COMPILE_S["tpu"]
    a, b = frozenset({("a", 1)}), frozenset({("b", 1)})
    sequence = [(1, 1, flop, 0.0, 0.0, a), (1, 0, flop, 0.0, 0.0, a), (2, 1, flop, 0.0, 0.0, b)]
    sources = {1: None, 2: 1}
    hours = [plan.workers_hours(sequence, sources, acc, ("bfloat16", "float32"), "float32", n)
             for n in (1, 2, 3)]
    assert hours[0] * 3600 == pytest.approx(2 * c + 3 * t)
    # two workers: phase 1's groups side by side (each compiles a), then phase 2 on one of them
    assert hours[1] * 3600 == pytest.approx((c + t) + (c + t))
    assert hours[2] == hours[1]  # a third worker waits for phase 1 like the others


def test_plan_workers_in_the_summary(tiny):
    p = plan.plan(load_config_file(tiny), "v4-8", measure_memory=False, workers=4)
    assert p["workers"]["count"] == 4 and p["workers"]["hours"] <= p["workers"]["hours_one"]
    assert "on 4 single-host v4-8 workers" in plan.summary(p)
    with pytest.raises(ConfigError, match="--workers"):
        plan.plan(load_config_file(tiny), "v4-8", measure_memory=False, workers=0)

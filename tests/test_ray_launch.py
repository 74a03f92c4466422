"""The Ray cluster recipes (experiments/ray/*.sh) with --dry_run: every command they would run,
printed and never run (no gcloud, kubectl or helm call in tests); their refusals in one line.
shellcheck runs over them in tests/test_scripts.py."""

import os
import subprocess

import pytest

from tests.helpers import ROOT

SCRIPTS = ("tpu_cluster.sh", "gpu_cluster.sh", "kuberay.sh")


def _dry(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", os.path.join(ROOT, "experiments", "ray", script),
                           "--dry_run", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, cwd=ROOT)


@pytest.mark.parametrize("script", ["tpu_cluster.sh", "gpu_cluster.sh"])
def test_a_cluster_recipe_prints_head_workers_and_driver(script):
    out = _dry(script, "--spot", "lucic", "us-central2-b", "3", "gs://b/w",
               "configs/sweeps/quick.py", "--", "--config.max_trials_per_group=4",
               DATA_DIR="gs://b/tfds")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    creates = [x for x in lines if " create lucic-w" in x]
    assert len(creates) == 3 and all(("--spot" in x or "SPOT" in x) for x in creates)
    head = [x for x in lines if x.startswith("gcloud compute instances create lucic-head ")]
    assert len(head) == 1 and "SPOT" not in head[0] and "--spot" not in head[0]
    assert sum("ray\\ start\\ --head\\ --port\\ 6379\\ --num-cpus\\ 0" in x for x in lines) == 1
    joins = [x for x in lines if "ray\\ start\\ --address\\ HEAD_IP:6379" in x]
    assert len(joins) == 3 and all("gancmp_host" in x for x in joins)
    (driver,) = [x for x in lines if "gancmp\\ sweep\\ --engine\\ ray" in x]
    for part in ("--ray_address\\ 127.0.0.1:6379", "--workdir\\ gs://b/w",
                 "configs/sweeps/quick.py", "--config.max_trials_per_group=4",
                 "data_dir=gs://b/tfds", "--compilation_cache\\ gs://b/w/xla"):
        assert part in driver, part
    assert lines[-1].startswith("teardown: ")


def test_kuberay_prints_the_raycluster_with_n_tpu_workers():
    out = _dry("kuberay.sh", "k", "us-central2-b", "4", "gs://b/w")
    assert out.returncode == 0, out.stderr
    assert "    replicas: 4\n" in out.stdout and '\\"gancmp_host\\": 1' in out.stdout
    assert "cloud.google.com/gke-tpu-topology: 2x2x1" in out.stdout
    assert "gancmp\\ sweep\\ --engine\\ ray" in out.stdout


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("args,said", [
    (("n", "z", "2", "/local/w"), "GS_WORKDIR must be a gs:// path"),
    (("n", "z", "0", "gs://b/w"), "N (workers) must be a positive integer"),
])
def test_bad_arguments_are_one_line_and_exit_2(script, args, said):
    out = _dry(script, *args)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and said in out.stderr
    assert out.stdout == ""


def test_a_pod_slice_is_refused_one_ray_node_is_one_host():
    out = _dry("tpu_cluster.sh", "n", "z", "2", "gs://b/w", ACCELERATOR="v4-32")
    assert out.returncode == 2 and "single-host slice" in out.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_arguments_print_the_usage(script):
    out = subprocess.run(["bash", os.path.join(ROOT, "experiments", "ray", script)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and f"experiments/ray/{script}" in out.stderr

"""Extending gancmp with a user module: `config.imports` finds it next to the config file or in the
current directory, `GANCMP_IMPORTS` runs the generic loss tests on its losses, and a sweep's
imports travel in its trials' configs (so `gancmp sample --trial` rebuilds a user-loss trial)."""

import json
import os
import subprocess
import sys

import pytest

from gancmp import losses, methods
from gancmp.config import ConfigError, import_user_modules, load_config_file
from gancmp.trial import make_trial
from tests.helpers import ROOT, tensorboard_events
from tests.test_cli import run


def _user_module(name: str, loss: str, method: str) -> str:
    return ("import jax, jax.numpy as jnp\n"
            "from gancmp import losses, methods\n\n\n"
            f"def {loss}(d_real, d_fake):\n"
            "    '''D = E relu(1 - r)^2 + E relu(1 + f)^2, G = -E f.'''\n"
            "    return (jnp.mean(jax.nn.relu(1 - d_real) ** 2)\n"
            "            + jnp.mean(jax.nn.relu(1 + d_fake) ** 2), -jnp.mean(d_fake))\n\n\n"
            f"losses.register({loss!r}, {loss})\n"
            f"methods.register(methods.Method({method!r}, {loss!r}))\n")


@pytest.fixture
def isolated(monkeypatch):
    """The registries, sys.path and sys.modules as they were, after the test (a user module
    registers into the registries of this process); the current directory not on sys.path,
    as for the `gancmp` command."""
    monkeypatch.setattr(losses, "_REGISTRY", dict(losses._REGISTRY))
    monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("near_losses", "cwd_losses", "gancmp_config_")):
            del sys.modules[name]


def test_imports_are_found_next_to_the_config_file(tmp_path, isolated):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "near_losses.py").write_text(_user_module("near_losses", "near_sq", "NEAR_SQ"))
    (folder / "cfg.py").write_text(
        "from gancmp.config import base_config\n\n\n"
        "def get_config():\n"
        "    c = base_config()\n"
        "    c.imports = 'near_losses'\n"
        "    c.method = 'NEAR_SQ'\n"
        "    return c\n")
    config = load_config_file(str(folder / "cfg.py"))
    assert make_trial(config).setup.method.loss == "near_sq"


def test_imports_are_found_in_the_current_directory(tmp_path, isolated, monkeypatch):
    (tmp_path / "cwd_losses.py").write_text(_user_module("cwd_losses", "cwd_sq", "CWD_SQ"))
    monkeypatch.chdir(tmp_path)
    import_user_modules({"imports": "cwd_losses"})
    assert methods.get("CWD_SQ").loss == "cwd_sq"
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_mod'.* \(looked on "
                                          r"PYTHONPATH, next to the config file and in the "
                                          r"current directory\)"):
        import_user_modules({"imports": "no_such_mod"})


def test_gancmp_imports_runs_the_generic_loss_tests_on_user_losses(tmp_path):
    (tmp_path / "user_sq_losses.py").write_text(
        _user_module("user_sq_losses", "user_sq", "USER_SQ"))
    env = {**os.environ, "GANCMP_IMPORTS": "user_sq_losses", "PYTHONPATH": str(tmp_path),
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_losses.py", "-k", "user_sq", "-rA"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    passed = [line for line in out.stdout.splitlines() if line.startswith("PASSED")]
    assert len(passed) == 3, out.stdout  # finite (2 scales) and D's monotonicity
    assert all("user_sq" in line for line in passed)


def test_a_sweep_s_imports_travel_in_its_trials_so_sample_finds_the_loss(tmp_path):
    """The sweep config's module sits next to it (found there); the sample is drawn in a fresh
    process from the directory that holds the module (found in the current directory)."""
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "sweep_sq_losses.py").write_text(
        _user_module("sweep_sq_losses", "sweep_sq", "SWEEP_SQ"))
    (folder / "sweep.py").write_text(
        "import ml_collections\n"
        "from gancmp.config import load_config_file\n\n\n"
        "def get_config():\n"
        "    c = ml_collections.ConfigDict()\n"
        "    c.name, c.seed, c.max_trials_per_group, c.imports = 'user', 0, 16, "
        "'sweep_sq_losses'\n"
        "    s = ml_collections.ConfigDict()\n"
        "    s.name, s.methods = 'ring8', 'SWEEP_SQ'\n"
        f"    s.trial = load_config_file({ROOT!r} + '/configs/ring8_mlp.py', num_d_steps=20,\n"
        "                                checkpoint_every=10, batch_size=32, steps_per_call=10)\n"
        "    s.trial.eval.num_samples = 500\n"
        "    s.phases = [ml_collections.ConfigDict(dict(name='tuned', mode='tuned', "
        "range='narrow', num_settings=1, seeds=[0]))]\n"
        "    c.studies = [s]\n"
        "    return c\n")
    workdir = tmp_path / "w"
    out = run("sweep", "--config", str(folder / "sweep.py"), "--workdir", str(workdir),
              "--noprogress", "--noreport", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = (workdir / "results-0.jsonl").read_text().splitlines()
    (record,) = [json.loads(line) for line in results]
    assert record["config"]["imports"] == "sweep_sq_losses" and record["method"] == "SWEEP_SQ"
    tags = {tag for tag, _, _ in tensorboard_events(str(workdir / record["group_dir"]))}
    assert f"{record['trial_id']}/d_loss" in tags  # the run is named by its trial id
    assert f"{record['trial_id']}/eval/modes_covered" in tags
    picture = tmp_path / "s.png"
    out = run("sample", "--workdir", str(workdir), "--trial", record["trial_id"], "--num", "16",
              "--out", str(picture), timeout=300, cwd=str(folder))
    assert out.returncode == 0, out.stderr[-3000:]
    assert picture.stat().st_size > 1000

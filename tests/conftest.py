"""Test setup: 4 simulated CPU devices, so the device-parallel step is tested on CPU.

XLA reads XLA_FLAGS once, when the backend starts, so this must run before JAX is used.

`GANCMP_IMPORTS=my_losses ./dev test tests/test_losses.py` imports the user modules named (comma-
separated; found on PYTHONPATH or in the current directory, as `config.imports`) before the tests
are collected, so the generic tests, parametrized over every registered loss, run on the losses
those modules register too.
"""

import atexit
import os
import shutil
import tempfile

from tests.helpers import CPU_COMPILE_FLAGS

# XLA:CPU's LLVM at -O1 instead of -O2: compiles the suite's small programs 3-5× faster and runs
# them as fast (measured on the VAE test group: init 18 s -> 4 s, step compile 21 s -> 7 s, step
# 47 ms -> 44 ms); and the elemental emitters instead of the MLIR fusion emitters: another 25 %
# off (test_programs, test_vae and test_ema, one process: 136 s -> 103 s; the ring-learning test,
# which trains 4,000 steps, 16.2 s -> 16.6 s). Every comparison in the suite is between runs made
# under the same flags. The CLI subprocesses the tests start get the same
# (tests/helpers.CPU_COMPILE_FLAGS).
_flags = os.environ.get("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
if "xla_backend_optimization_level" not in _flags:
    _flags = f"{_flags} {CPU_COMPILE_FLAGS}"
os.environ["XLA_FLAGS"] = _flags
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole session, this process and the CLI subprocesses
# the tests start: the same tiny programs are compiled by many tests, and loading one beats
# compiling it again. Fresh per session, so no test ever reads a program a previous run left.
# Each pytest-xdist worker (`./dev test` runs one per core) keeps its own.
if "PYTEST_XDIST_WORKER" in os.environ or "GANCMP_COMPILATION_CACHE" not in os.environ:
    os.environ["GANCMP_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="gancmp-test-xla-")
    # Removed when this process ends (the CLI subprocesses that share it have ended by then).
    atexit.register(shutil.rmtree, os.environ["GANCMP_COMPILATION_CACHE"], ignore_errors=True)


def _enable_compilation_cache() -> None:
    from gancmp import runtime

    runtime.enable_compilation_cache(os.environ["GANCMP_COMPILATION_CACHE"])


def _import_user_modules() -> None:
    names = os.environ.get("GANCMP_IMPORTS", "")
    if names.strip():
        from gancmp.config import import_user_modules

        import_user_modules({"imports": names})


_enable_compilation_cache()
_import_user_modules()

from tests.gcs_emulator import gcs  # noqa: E402, F401  (the session's GCS emulator fixture)

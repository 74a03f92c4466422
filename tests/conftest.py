"""Test setup: 4 simulated CPU devices, so the device-parallel step is tested on CPU.

XLA reads XLA_FLAGS once, when the backend starts, so this must run before JAX is used.

`GANCMP_IMPORTS=my_losses ./dev test tests/test_losses.py` imports the user modules named (comma-
separated; found on PYTHONPATH or in the current directory, as `config.imports`) before the tests
are collected, so the generic tests, parametrized over every registered loss, run on the losses
those modules register too.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _import_user_modules() -> None:
    names = os.environ.get("GANCMP_IMPORTS", "")
    if names.strip():
        from gancmp.train.config import import_user_modules

        import_user_modules({"imports": names})


_import_user_modules()

from tests.gcs_emulator import gcs  # noqa: E402, F401  (the session's GCS emulator fixture)

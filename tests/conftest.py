"""Test setup: 4 simulated CPU devices, so the device-parallel step is tested on CPU.

XLA reads XLA_FLAGS once, when the backend starts, so this must run before JAX is used.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

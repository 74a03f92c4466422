"""Runs the gancmp CLI with every XLA compilation checked: a program whose devices include none
of this process's own (a compile a TPU pod's PJRT client refuses, though XLA:CPU allows it) stops
the process with one line on stderr. At exit it prints how many compilations it checked, so a
test can tell that the check ran.

    python -c "import tests.addressable_guard as g; g.main()" sweep --config ...
"""

from __future__ import annotations

import atexit
import sys

import jax
from jax._src.interpreters import pxla  # the one place every jit and AOT compile passes

FOREIGN = "gancmp-test: compile on devices this process cannot address"
CHECKED = "gancmp-test: compilations checked:"


def install() -> None:
    """Wraps `MeshComputation.compile` (jax 0.10's lowering of every jit, eager op and
    `.lower().compile()`) with the check."""
    compile_ = pxla.MeshComputation.compile
    count = [0]

    def checked(self, *args, **kwargs):
        devices = list(self._device_list or [])
        if devices and not any(d.process_index == jax.process_index() for d in devices):
            ids = [d.id for d in devices]
            print(f"{FOREIGN}: {self._name} on {ids}, process {jax.process_index()}",
                  file=sys.stderr, flush=True)
            raise RuntimeError(f"{FOREIGN}: {self._name} on devices {ids}")
        count[0] += 1
        return compile_(self, *args, **kwargs)

    pxla.MeshComputation.compile = checked
    atexit.register(lambda: print(f"{CHECKED} {count[0]}", file=sys.stderr, flush=True))


def main() -> None:
    install()
    from gancmp.cli import main as cli_main
    sys.argv[0] = "gancmp"
    sys.exit(cli_main())

"""Which form of a layer a program takes: XLA:CPU's (`gancmp.nets.layers`' compact sub-pixel
convolutions, `gancmp.nets.dense`' kernel-gradient layout, the FID Inception's `cpu_ops` and the
ViT feature networks' [out, in] kernels, chosen for their extractor's devices) or the
accelerators', chosen when the layer is traced. `accelerator_forms()` gives the TPU/GPU forms on
any backend, so that the tests run the accelerators' layer code on CPU devices."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import jax

_ACCELERATOR_FORMS = contextvars.ContextVar("accelerator_forms", default=False)


@contextlib.contextmanager
def accelerator_forms() -> Iterator[None]:
    """Layers traced inside take the forms a TPU or GPU program has, on any backend. jit's trace
    cache does not see the switch: trace a function not traced before."""
    token = _ACCELERATOR_FORMS.set(True)
    try:
        yield
    finally:
        _ACCELERATOR_FORMS.reset(token)


def cpu_forms(platform: str | None = None) -> bool:
    """Whether a layer traced now takes its XLA:CPU form: for devices of `platform` (default:
    the default backend's) "cpu", outside `accelerator_forms()`."""
    return (platform or jax.default_backend()) == "cpu" and not _ACCELERATOR_FORMS.get()

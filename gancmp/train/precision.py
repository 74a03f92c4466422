"""Arithmetic precision as a recorded setting: how float32 matrix products are computed on each
backend (`config.matmul_precision`) and the dtype G and D compute in (`config.compute_dtype`).

Names are what the hardware does, so a record means the same thing whatever machine wrote it:

| name            | products                                  | backends  | JAX precision |
|-----------------|-------------------------------------------|-----------|---------------|
| `float32`       | float32 (TPU: 6 bf16 passes)              | all       | "highest"     |
| `bfloat16_3x`   | 3 bf16 passes (~16 significant bits)      | tpu       | "high"        |
| `tensorfloat32` | TF32 tensor cores (10-bit mantissa)       | gpu       | "high"        |
| `bfloat16`      | one bf16 pass (8-bit mantissa)            | tpu       | "default"     |

Every mode accumulates in float32. `auto` (the default) is the fastest mode whose inputs are
rounded no coarser than TF32's (relative error 2^-11 per operand): `float32` on CPU (XLA:CPU
multiplies in float32 whatever it is asked, so no other name is allowed there), `tensorfloat32`
on GPU (tensor cores: about 7× an H100's float32 rate), `bfloat16_3x` on TPU. A TPU's own default,
one bf16 pass, rounds every operand to 8 significant bits (2^-9); measured in emulation it moves
the losses by up to 2.5e-4 relative from the first step, and GAN training amplifies such
differences, so it is allowed only when asked for. The setting is applied while the train and
evaluation programs are traced (`scope`), and the loss math is float32 in every mode.

`compute_dtype = "bfloat16"` runs G and D in bfloat16 (params and inputs cast on the way in,
outputs cast back to float32; master params, optimizer state and batch-norm statistics stay
float32): meant for accelerators, whose bf16 rate is their peak; on CPU bf16 is emulated (slow).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

AUTO = "auto"
# name -> the jax_default_matmul_precision value that gives it
JAX_NAMES = {"float32": "highest", "bfloat16_3x": "high", "tensorfloat32": "high",
             "bfloat16": "default"}
# backend -> the names it computes (first: the `auto` choice)
BY_BACKEND = {"cpu": ("float32",), "gpu": ("tensorfloat32", "float32"),
              "tpu": ("bfloat16_3x", "float32", "bfloat16")}
COMPUTE_DTYPES = ("float32", "bfloat16")
# passes of the bf16 matrix unit per product (the rate divisor of the plan's estimates)
TPU_PASSES = {"bfloat16": 1, "bfloat16_3x": 3, "float32": 6}


def backend_kind(backend: str) -> str:
    """"cpu", "gpu" or "tpu" for a JAX backend name ("cuda" and "rocm" are GPUs)."""
    return "gpu" if backend in ("gpu", "cuda", "rocm") else backend


def resolve(requested: str, backend: str) -> str:
    """The precision name `requested` ("auto" or a name) means on `backend`. ValueError naming
    the allowed values on that backend otherwise."""
    kind = backend_kind(backend)
    allowed = BY_BACKEND.get(kind, ("float32",))
    if requested == AUTO:
        return allowed[0]
    if requested not in allowed:
        known = "" if requested in JAX_NAMES else "unknown "
        raise ValueError(f"{known}{requested!r} on {kind}; allowed on {kind}: "
                         f"{', '.join((AUTO, *allowed))}")
    return requested


def check_compute_dtype(name: Any) -> str:
    """`name` if it is a compute dtype; ValueError naming the allowed ones."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown {name!r}; allowed: {', '.join(COMPUTE_DTYPES)}")
    return name


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Traces the enclosed code with float32 products computed as `name` says."""
    with jax.default_matmul_precision(JAX_NAMES[name]):
        yield


def cast_floats(tree: Any, dtype: Any) -> Any:
    """`tree` with its floating-point leaves cast to `dtype` (integers, keys untouched)."""
    def cast(x):
        return x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x
    return jax.tree.map(cast, tree)


def setting(matmul_precision: str, compute_dtype: str) -> dict[str, str]:
    """What a record carries: {"matmul_precision": ..., "compute_dtype": ...}."""
    return {"matmul_precision": matmul_precision, "compute_dtype": compute_dtype}

"""Arithmetic precision as a recorded setting: how float32 matrix products are computed on each
backend (`config.matmul_precision`) and the dtype G and D compute in (`config.compute_dtype`).

Names are what the hardware does, so a record means the same thing whatever machine wrote it:

| name                     | products                                 | backends | JAX precision |
|--------------------------|------------------------------------------|----------|---------------|
| `float32`                | float32 (TPU: 6 bf16 passes)             | all      | "highest"     |
| `bfloat16_3x`            | 3 bf16 passes (~16 significant bits)     | tpu      | "high"        |
| `tensorfloat32`          | TF32 tensor cores (10-bit mantissa)      | gpu      | "high"        |
| `bfloat16`               | one bf16 pass (8-bit mantissa)           | tpu      | "default"     |
| `emulated_bfloat16`      | one bf16 pass, emulated (slow)           | cpu      | "float32"     |
| `emulated_tensorfloat32` | TF32, emulated (slow)                    | cpu      | "float32"     |

Every mode accumulates in float32. `auto` (the default) is the fastest mode that keeps float32
accumulation on each backend: `float32` on CPU (XLA:CPU multiplies in float32 whatever it is asked,
so no other hardware mode exists there), `tensorfloat32` on GPU (tensor cores, float32
accumulators: about 7× an H100's float32 rate), and `bfloat16` on TPU: one pass of the matrix
unit, which rounds each operand to bf16 and accumulates in float32. That is what a TPU does with
float32 products unless told otherwise (JAX's default precision there), and 3× the rate of
`bfloat16_3x` (6× that of `float32`). Its cost is stated, not hidden: operands keep 8 significant
bits (relative error 2^-9), enough that a TPU run never repeats a CPU run's trajectory; so every
record carries its mode and `gancmp report` refuses to merge modes. `bfloat16_3x` (about 16 bits)
or `float32` is one setting away. The setting is applied while the train and evaluation programs
are traced (`scope`), and the loss math is float32 in every mode.

On a CPU, `emulated_bfloat16` and `emulated_tensorfloat32` measure what the accelerators' modes do
to training: every product of G and D, forward and backward, takes operands rounded as the
hardware rounds them (`gancmp.emulation`), about 1.5× float32's time; refused on accelerators.
Measured with them (`experiments/lucic2018/train_precision.py`, numbers and intervals in
experiments/lucic2018/README.md): on ring8 NS_GAN (8 seeds) one bf16 pass moved G's loss by
1.2e-4 relative at the first step (median; max 9.5e-4; D's first loss 2e-7), about 2e-3 by step
10, and by step 30 the trajectory had decorrelated from float32's as another seed's does (Adam's
early steps amplify any perturbation). No systematic effect on the study's results was found: over
48 ring8 settings (MM_GAN, NS_GAN, WGAN_GP, 16 each, 3,000 D updates) trained at float32 and at
emulated bf16 with the same seeds, the paired change per setting was +0.17 modes covered
(95 % interval −0.64 to +0.98, of 8) and +0.014 high-quality fraction (−0.047 to +0.075), while
another float32 seed moved them by +0.56 (−0.14 to +1.26) and +0.052 (−0.016 to +0.120); the
per-setting |change| under bf16 (2.2 modes) is not distinguishable from another seed's (1.8,
p = 0.26). Emulated TF32 alike: +0.44 modes (−0.42 to +1.30), +0.055 (−0.017 to +0.126),
|change| 2.1 modes (p = 0.51 against the seed's). At this size a systematic effect beyond the
intervals' ends (about 1 mode of 8 for bf16, 1.3 for TF32) is excluded and a smaller one is not
resolved. On the polygons (MM_GAN and NS_GAN, 8 settings each, 1,500 D updates) one bf16 pass
moved polygon F1 by +0.002 (95 % −0.078 to +0.083) where another seed moved it by −0.021 (−0.089
to +0.046): none found at about ±0.08 F1. The effect on a trained image GAN's FID is not measured
(the Inception's own precision is: below).

The metric networks (the FID Inception, `config.fid.matmul_precision`) have their own setting,
independent of the trial's: `float32` (the default, what the published reference features and
compare_gan v1 computed) or `bfloat16_3x`, whose FID equals float32's to within 4e-5 relative
in emulation (`experiments/lucic2018/metric_precision.py`: 0.0009 at FID 24; one bf16 pass moved
that FID by +2.5 %, TF32 by +0.17 %, systematically, both sides of the FID computed alike: so
`auto` is not offered there). `bfloat16_3x` runs as 3 bf16 passes on a TPU
only: elsewhere the network runs in float32 (XLA:CPU computes float32 anyway, and JAX's "high" on
a GPU is TF32, less exact than 3 passes), and the record names what ran (`resolve_metric`).

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

from gancmp import emulation

AUTO = "auto"
# name -> the jax_default_matmul_precision value that gives it
JAX_NAMES = {"float32": "highest", "bfloat16_3x": "high", "tensorfloat32": "high",
             "bfloat16": "default"}
# backend -> the names it computes (first: the `auto` choice)
BY_BACKEND = {"cpu": ("float32",), "gpu": ("tensorfloat32", "float32"),
              "tpu": ("bfloat16", "bfloat16_3x", "float32")}
# CPU only: the accelerators' fast modes emulated (`gancmp.emulation`), for measuring their effect
EMULATED = {"emulated_bfloat16": "bfloat16", "emulated_tensorfloat32": "tensorfloat32"}
COMPUTE_DTYPES = ("float32", "bfloat16")
# what a metric network may compute in (first: the default), whatever the trial's precision
METRIC_NAMES = ("float32", "bfloat16_3x")
# passes of the bf16 matrix unit per product (the rate divisor of the plan's estimates)
TPU_PASSES = {"bfloat16": 1, "bfloat16_3x": 3, "float32": 6}


def backend_kind(backend: str) -> str:
    """"cpu", "gpu" or "tpu" for a JAX backend name ("cuda" and "rocm" are GPUs)."""
    return "gpu" if backend in ("gpu", "cuda", "rocm") else backend


def resolve(requested: str, backend: str, emulated: bool = False) -> str:
    """The precision name `requested` ("auto" or a name) means on `backend`; with `emulated`, a
    CPU also takes the `EMULATED` names (training only: nothing else traces through
    `gancmp.emulation`). ValueError naming the allowed values on that backend otherwise."""
    kind = backend_kind(backend)
    allowed = BY_BACKEND.get(kind, ("float32",))
    if emulated and kind == "cpu":
        allowed = (*allowed, *EMULATED)
    if requested == AUTO:
        return allowed[0]
    if requested not in allowed:
        known = "" if requested in JAX_NAMES or requested in EMULATED else "unknown "
        raise ValueError(f"{known}{requested!r} on {kind}; allowed on {kind}: "
                         f"{', '.join((AUTO, *allowed))}")
    return requested


def resolve_training(requested: str, backend: str) -> str:
    """`resolve` for a trial's `matmul_precision`: the `EMULATED` names allowed on a CPU."""
    return resolve(requested, backend, emulated=True)


def resolve_metric(requested: str, backend: str) -> str:
    """The precision a metric network computes in for `requested` (one of `METRIC_NAMES`) on
    `backend`: `bfloat16_3x` on a TPU, `float32` everywhere else and whenever asked for.
    ValueError naming the allowed values otherwise."""
    if requested not in METRIC_NAMES:
        raise ValueError(f"unknown {requested!r}; allowed: {', '.join(METRIC_NAMES)} "
                         f"(the metric network's precision, independent of the trial's)")
    return requested if backend_kind(backend) == "tpu" else "float32"


def check_compute_dtype(name: Any) -> str:
    """`name` if it is a compute dtype; ValueError naming the allowed ones."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown {name!r}; allowed: {', '.join(COMPUTE_DTYPES)}")
    return name


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Traces the enclosed code with float32 products computed as `name` says. An `EMULATED`
    name traces G's and D's products with rounded operands (`emulation.intercept`) under JAX's
    "float32" precision (the same arithmetic as "highest" on a CPU, but a different trace
    context, so no program or custom-gradient trace cached at float32 is reused)."""
    if name in EMULATED:
        with jax.default_matmul_precision("float32"), emulation.intercept(EMULATED[name]):
            yield
        return
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

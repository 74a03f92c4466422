"""Accelerator matrix arithmetic emulated on a CPU: operands rounded the way a TPU's one bf16 pass
or a GPU's TF32 tensor cores round them, products accumulated in float32.

XLA:CPU multiplies float32 in float32 whatever precision it is asked for, so the effect of the
accelerators' fast modes can only be measured on a CPU by rounding the operands by hand. The
product of two bf16 numbers (8 significant bits each) is exact in float32 (16 bits), and so is
that of two TF32 numbers (11 bits, 22 bit products, within float32's 24), so rounding both
operands and multiplying in float32 is what the hardware computes, up to the order of the float32
accumulation.

`intercept(mode)` traces `jax.lax.dot_general` (flax's `nn.Dense`) and
`jax.lax.conv_general_dilated` (`nn.Conv`, the convolutions of `gancmp.nets.layers`) with that
rounding, for every call whose `precision` is None or DEFAULT: the calls that defer to the
default precision, the ones a TPU runs as one bf16 pass (an explicit HIGHEST, as the metric
networks ask for, is left alone). The gradients are emulated too: each intercepted product is a
`custom_vjp` whose backward products take the rounded cotangent and the rounded forward operands,
as the accelerator computes its backward products. Products reached through `jnp.dot`,
`jnp.matmul` or `jnp.einsum` (e.g. spectral norm's power iteration, DCGAN's im2col layer) are
not intercepted, nor are the products inside the derivative of a backward product (a gradient
penalty's second-order terms): they stay float32. Used by `gancmp.precision.scope` for the
`emulated_*` precision names; meant for measurements on a CPU, never for speed (rounding costs).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp

Rounding = Callable[[jax.Array], jax.Array]


def round_bf16(x: jax.Array) -> jax.Array:
    """float32 → the nearest bfloat16 (8 significant bits, round half to even), as float32."""
    return x.astype(jnp.bfloat16).astype(jnp.float32)


def round_tf32(x: jax.Array) -> jax.Array:
    """float32 → the nearest TF32 (11 significant bits, round half to even), as float32: the low
    13 mantissa bits cleared after adding 0x0FFF plus the lowest kept bit."""
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    bits = (bits + jnp.uint32(0x0FFF) + ((bits >> 13) & 1)) & jnp.uint32(0xFFFFE000)
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def split_bf16(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x = hi + lo (to ~16 bits) with hi = bf16(x), lo = bf16(x − hi): the operand split of
    XLA's 3-pass algorithm (BF16_BF16_F32_X3: hi·hi' + hi·lo' + lo·hi')."""
    hi = round_bf16(x)
    return hi, round_bf16(x - hi)


# mode -> how each operand of a product is rounded
ROUNDINGS: dict[str, Rounding] = {"bfloat16": round_bf16, "tensorfloat32": round_tf32}


def rounded(x: jax.Array, rounding: Rounding) -> jax.Array:
    """`rounding(x)` for a float32 `x` (other dtypes as they are), with the identity as its
    derivative (straight through), so that it can sit inside differentiated code. The value is
    exactly `rounding(x)`: x + (r − x) is exact in float32 for r within a factor 2 of x."""
    if jnp.result_type(x) != jnp.float32:
        return x
    return x + jax.lax.stop_gradient(rounding(x) - x)


def emulated_product(op: Callable[[jax.Array, jax.Array], jax.Array], rounding: Rounding
                     ) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """`op(a, b)` (a bilinear product computed in float32) as the accelerator computes it:
    `op(round(a), round(b))`, and backward `vjp(op at the rounded operands)(round(cotangent))`."""

    @jax.custom_vjp
    def product(a, b):
        return op(rounded(a, rounding), rounded(b, rounding))

    def forward(a, b):
        ra, rb = rounded(a, rounding), rounded(b, rounding)
        return op(ra, rb), (ra, rb)

    def backward(residuals, g):
        _, vjp = jax.vjp(op, *residuals)
        return vjp(rounded(g, rounding))

    product.defvjp(forward, backward)
    return product


_MODE: contextvars.ContextVar[str | None] = contextvars.ContextVar("emulated_mode", default=None)
_LOCK = threading.Lock()
_ORIGINALS: dict[str, Callable] = {}  # name in jax.lax -> the function replaced (while active)
_ACTIVE = [0]  # intercept() blocks open in this process
_DEFERRING = (None, jax.lax.Precision.DEFAULT)


def _intercepted(name: str, original: Callable) -> Callable:
    """`original` (`jax.lax.<name>`, a product of its first two arguments) rounded as the
    current context's mode says, for calls that defer to the default precision."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def call(*args, **kwargs):
        mode = _MODE.get()
        bound = signature.bind(*args, **kwargs)
        precision = bound.arguments.get("precision")
        if mode is None or precision not in _DEFERRING:
            return original(*args, **kwargs)
        lhs, rhs = bound.arguments.pop("lhs"), bound.arguments.pop("rhs")
        bound.arguments["precision"] = jax.lax.Precision.HIGHEST
        op = functools.partial(original, **bound.arguments)
        return emulated_product(op, ROUNDINGS[mode])(lhs, rhs)

    return call


@contextlib.contextmanager
def intercept(mode: str) -> Iterator[None]:
    """Traces the enclosed code (this thread's) with `jax.lax.dot_general` and
    `jax.lax.conv_general_dilated` emulating `mode` ("bfloat16" or "tensorfloat32") wherever
    they defer to the default precision. Other threads tracing meanwhile see the originals'
    results (the mode is a context variable); the originals are back when the last block ends."""
    if mode not in ROUNDINGS:
        raise ValueError(f"unknown emulated mode {mode!r}; allowed: {', '.join(ROUNDINGS)}")
    with _LOCK:
        if not _ACTIVE[0]:
            for name in ("dot_general", "conv_general_dilated"):
                _ORIGINALS[name] = getattr(jax.lax, name)
                setattr(jax.lax, name, _intercepted(name, _ORIGINALS[name]))
        _ACTIVE[0] += 1
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)
        with _LOCK:
            _ACTIVE[0] -= 1
            if not _ACTIVE[0]:
                for name, original in _ORIGINALS.items():
                    setattr(jax.lax, name, original)
                _ORIGINALS.clear()

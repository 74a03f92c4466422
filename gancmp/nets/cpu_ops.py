"""XLA:CPU-friendly forms of the FID Inception's convolutions and pools (issue 28): the same
functions as `lax.conv_general_dilated` and `lax.reduce_window`, written as matmuls and
elementwise ops that XLA:CPU runs faster. `gancmp.nets.inception.FIDInceptionV3(cpu_ops=True)`
uses them; the extractor turns that on for CPU devices only, so the TPU/GPU programs are
unchanged.

Why (2 Sapphire Rapids cores, XLA 0.10, per image): XLA's matmul reaches ~310 GFLOP/s on the
Inception's matmul shapes, while its YNNPACK convolutions reach 60–160 GFLOP/s; a 1×1 convolution
is not lowered to a matmul (0.87 ms against 0.66 ms for the 17×17×768 → 192 one); the
`reduce_window` pools run 3–6× slower than the same pools written as shifted slices.
`experiments/bench/RESULTS.md` ("FID features on XLA:CPU") has the per-layer table.

Conventions: x [N, H, W, C] (NHWC), kernel [kh, kw, C, O] (HWIO), symmetric zero `padding`
((top, bottom), (left, right)) as `lax.conv_general_dilated`'s. Matmul forms sum the products in
another order than the convolution, so results differ by float32 rounding (relative 1e-6);
the pools are exact (max) or sum the same 9 terms (average).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Padding = tuple[tuple[int, int], tuple[int, int]]


def _out_size(n: int, k: int, stride: int) -> int:
    return (n - k) // stride + 1


def _taps(x: jax.Array, axis: int, k: int, stride: int) -> list[jax.Array]:
    """The k strided windows of x along `axis` (an im2col column each): tap t is
    x[t::stride] cut to the output length."""
    out = _out_size(x.shape[axis], k, stride)
    return [jax.lax.slice_in_dim(x, t, t + (out - 1) * stride + 1, stride, axis)
            for t in range(k)]


def im2col_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Padding,
                precision: jax.lax.PrecisionLike = None) -> jax.Array:
    """The convolution as one matmul of the [N·Ho·Wo, kh·kw·C] patches (taps in (dy, dx, c)
    order, the kernel's HWIO order) with the kernel as [kh·kw·C, O]. → [N, Ho, Wo, O]."""
    kh, kw, c, o = kernel.shape
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    rows = _taps(x, 1, kh, strides[0])
    cols = [t for r in rows for t in _taps(r, 2, kw, strides[1])]
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    n, ho, wo, _ = patches.shape
    y = jnp.dot(patches.reshape(-1, kh * kw * c), kernel.reshape(-1, o), precision=precision)
    return y.reshape(n, ho, wo, o)


def wide_conv(x: jax.Array, kernel: jax.Array, padding: Padding,
              precision: jax.lax.PrecisionLike = None) -> jax.Array:
    """Stride-1 convolution as one matmul of the row patches [N·Hp·Wo, kw·C] (im2col along W
    only) with the kernel as [kw·C, kh·O] (every kernel row's outputs side by side), then the
    sum over dy of the dy-th output block shifted up by dy rows. → [N, Ho, Wo, O]."""
    kh, kw, c, o = kernel.shape
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    cols = _taps(x, 2, kw, 1)
    patches = cols[0] if kw == 1 else jnp.concatenate(cols, axis=-1)  # [N, Hp, Wo, kw·C]
    wide = jnp.transpose(kernel, (1, 2, 0, 3)).reshape(kw * c, kh * o)
    z = jnp.dot(patches, wide, precision=precision)  # [N, Hp, Wo, kh·O]
    ho = x.shape[1] - kh + 1
    y = z[:, :ho, :, :o]
    for dy in range(1, kh):
        y = y + z[:, dy:dy + ho, :, dy * o:(dy + 1) * o]
    return y


def conv_form(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...],
              strides: tuple[int, int]) -> str:
    """Which form `conv` uses for this layer, by the per-layer measurements (module docstring):
    "dot" for 1×1, "im2col" for strided layers and for 1-D kernels on grids up to 8×8, "wide"
    for 3×3 layers with few input channels on large grids, else "conv" (YNNPACK's)."""
    kh, kw, c, _ = kernel_shape
    if (kh, kw) == (1, 1) and strides == (1, 1):
        return "dot"
    if strides != (1, 1) or (min(kh, kw) == 1 and x_shape[1] * x_shape[2] <= 64):
        return "im2col"
    if (kh, kw) == (3, 3) and c <= 80 and x_shape[1] >= 71:
        return "wide"
    return "conv"


def conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Padding,
         precision: jax.lax.PrecisionLike = None) -> jax.Array:
    """`lax.conv_general_dilated(x, kernel, strides, padding)` in NHWC/HWIO, in the form
    `conv_form` picks for XLA:CPU. → [N, Ho, Wo, O]."""
    form = conv_form(x.shape, kernel.shape, strides)
    if form == "dot":
        return jnp.dot(x, kernel[0, 0], precision=precision)
    if form == "im2col":
        return im2col_conv(x, kernel, strides, padding, precision)
    if form == "wide":
        return wide_conv(x, kernel, padding, precision)
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, precision=precision,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def avg_pool_3x3_exclude_pad(x: jax.Array) -> jax.Array:
    """3×3 average pool, stride 1, padding 1 left out of the count (TF's rule), as the sum of
    the 9 shifted copies over the (constant) count. x: [N, H, W, C] → [N, H, W, C]."""
    _, h, w, _ = x.shape
    p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ones = np.pad(np.ones((h, w), np.float32), 1)
    total, count = 0.0, np.zeros((h, w), np.float32)
    for dy in range(3):
        for dx in range(3):
            total = total + p[:, dy:dy + h, dx:dx + w]
            count = count + ones[dy:dy + h, dx:dx + w]
    return total / count[None, :, :, None]


def max_pool_3x3(x: jax.Array, stride: int, pad: int) -> jax.Array:
    """3×3 max pool (padding counts as -inf), separable: the max of 3 strided column taps,
    then of 3 strided row taps; exact. x: [N, H, W, C]."""
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-jnp.inf)
    a, b, c = _taps(x, 2, 3, stride)
    r = jnp.maximum(jnp.maximum(a, b), c)
    a, b, c = _taps(r, 1, 3, stride)
    return jnp.maximum(jnp.maximum(a, b), c)

"""The image preprocessing in front of the FID Inception-v3 (`gancmp.nets.inception`): the
resize to 299×299 by one of three reference rules and the scaling to [-1, 1] (`preprocess`).
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
PreprocessMode = Literal["pytorch_fid", "tf1_legacy", "clean"]
PREPROCESS_MODES: tuple[str, ...] = ("pytorch_fid", "tf1_legacy", "clean")
BILINEAR_MODES: tuple[str, ...] = ("pytorch_fid", "tf1_legacy")  # the modes of `resize_bilinear`


def _torch_bilinear_taps(in_size: int, out_size: int):
    """Source taps of torch `F.interpolate(mode='bilinear', align_corners=False)`, no antialias.

    src = (dst + 0.5)·(in/out) − 0.5, clamped at 0, in float32 as torch's CPU kernel does.
    Returns (i0, i1, w0, w1) with out[d] = w0[d]·x[i0[d]] + w1[d]·x[i1[d]].
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    return i0, i1, (np.float32(1) - w1).astype(np.float32), w1


def _tf1_legacy_taps(in_size: int, out_size: int):
    """Source taps of TF1 `resize_bilinear(align_corners=False, half_pixel_centers=False)`.

    src = dst·(in/out) in float32, no half-pixel offset; lower = floor(src),
    upper = min(ceil(src), in − 1), lerp = src − floor(src). Returns (lower, upper, lerp) with
    out[d] = x[lower] + (x[upper] − x[lower])·lerp, TF's arithmetic.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * scale
    lower = np.maximum(np.floor(src), 0).astype(np.int32)
    upper = np.minimum(np.ceil(src).astype(np.int32), in_size - 1)
    lerp = (src - np.floor(src)).astype(np.float32)
    return lower, upper, lerp


def _resize_axis(x: jax.Array, axis: int, out_size: int, mode: str) -> jax.Array:
    in_size = x.shape[axis]
    if in_size == out_size:  # both rules give the identity (weights exactly 1 and 0)
        return x
    shape = [1] * x.ndim
    shape[axis] = out_size
    if mode == "pytorch_fid":
        i0, i1, w0, w1 = _torch_bilinear_taps(in_size, out_size)
        a, b = jnp.take(x, i0, axis=axis), jnp.take(x, i1, axis=axis)
        return a * w0.reshape(shape) + b * w1.reshape(shape)
    lower, upper, lerp = _tf1_legacy_taps(in_size, out_size)
    a, b = jnp.take(x, lower, axis=axis), jnp.take(x, upper, axis=axis)
    return a + (b - a) * lerp.reshape(shape)


def resize_bilinear(images: jax.Array, size: tuple[int, int], mode: str) -> jax.Array:
    """Bilinear resize of [N, H, W, C] to [N, size[0], size[1], C] by `mode`'s rule.

    "pytorch_fid": torch `F.interpolate(..., mode='bilinear', align_corners=False)`;
    "tf1_legacy": TF1 `tf.image.resize_bilinear` (align_corners=False, no half-pixel centres).
    Both are separable: columns (W) first, then rows (H), the order of both reference kernels.
    """
    if mode not in BILINEAR_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; known: {', '.join(BILINEAR_MODES)}")
    x = _resize_axis(images, 2, size[1], mode)
    return _resize_axis(x, 1, size[0], mode)


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """PIL's bicubic kernel (Keys, a = −0.5, support 2), in float64, its formula term by term."""
    a, x = -0.5, np.abs(x)
    inner = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


def _pil_bicubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source taps of Pillow's `Image.resize(..., BICUBIC)` (Resample.c `precompute_coeffs`).

    Antialiased: when shrinking, the kernel is stretched by the scale (support 2·in/out). Output
    pixel d is centred at c = (d + 0.5)·in/out; its taps are source pixels
    x ∈ [trunc(c − support + 0.5), trunc(c + support + 0.5)) within the image, weighted by
    kernel((x − c + 0.5)/filterscale), normalised to sum 1 (float64, as Pillow). Returns
    (index [out, k] int32, weight [out, k] float32); unused slots have weight 0.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    centre = (np.arange(out_size) + 0.5) * scale
    lo = np.maximum(np.trunc(centre - support + 0.5), 0).astype(np.int64)
    count = np.minimum(np.trunc(centre + support + 0.5), in_size).astype(np.int64) - lo
    k = np.arange(ksize)
    w = _keys_cubic((k + lo[:, None] - centre[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(k < count[:, None], w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total != 0, w / np.where(total != 0, total, 1.0), w)
    index = np.minimum(lo[:, None] + k, in_size - 1).astype(np.int32)
    return index, w.astype(np.float32)


def _pil_resize_axis(x: jax.Array, axis: int, out_size: int) -> jax.Array:
    in_size = x.shape[axis]
    if in_size == out_size:  # Pillow skips the pass (the kernel would give the identity too)
        return x
    index, w = _pil_bicubic_taps(in_size, out_size)
    shape = [1] * x.ndim
    shape[axis] = out_size
    out = jnp.take(x, index[:, 0], axis=axis) * w[:, 0].reshape(shape)
    for j in range(1, index.shape[1]):  # taps summed in Pillow's order
        out = out + jnp.take(x, index[:, j], axis=axis) * w[:, j].reshape(shape)
    return out


def resize_bicubic_pil(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Pillow's antialiased bicubic resize of float images, each channel on its own, as
    `Image.fromarray(channel, mode="F").resize((size[1], size[0]), Image.BICUBIC)` (clean-fid's
    resizer): [N, H, W, C] → [N, size[0], size[1], C] float32, no clipping. Separable: columns
    (W) first, then rows (H), Pillow's order. Pillow accumulates in float64, this in float32:
    the results agree to a few float32 ulps.
    """
    x = _pil_resize_axis(jnp.asarray(images, jnp.float32), 2, size[1])
    return _pil_resize_axis(x, 1, size[0])


def preprocess(images: jax.Array, mode: str = "tf1_legacy") -> jax.Array:
    """Images in [0, 1] → the network's input; pure jnp, jittable.

    images: [N, H, W, C] float, C ∈ {1, 3} (grey is tiled to RGB). Returns [N, 299, 299, 3]
    float32 in [-1, 1]:
    - "pytorch_fid": torch bilinear resize (align_corners=False, no antialias) of the [0, 1]
      values, then x·2 − 1, exactly pytorch-fid's `resize_input` + `normalize_input`.
    - "tf1_legacy": the TF1 FID graph (TTUR / tf.contrib.gan era): values scaled to 0–255,
      TF1 `resize_bilinear` (no half-pixel offset), then (x − 128)/128.
    - "clean": clean-fid's (Parmar et al. 2022) `make_resizer("PIL", False, "bicubic")`: values
      scaled to 0–255 (uint8 images give their exact integers), Pillow's antialiased bicubic
      resize of each channel in float mode "F" (`resize_bicubic_pil`), clipped to [0, 255],
      then (x − 128)/128, the scaling of the network clean-fid feeds.
    """
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"unknown preprocess mode {mode!r}; known: {', '.join(PREPROCESS_MODES)}")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"preprocess takes [N, H, W, C] images with C in {{1, 3}}, got "
                         f"{images.shape}")
    x = jnp.asarray(images, jnp.float32)
    size = (INPUT_SIZE, INPUT_SIZE)
    if mode == "pytorch_fid":
        x = resize_bilinear(x, size, mode) * 2.0 - 1.0
    elif mode == "clean":
        x = (jnp.clip(resize_bicubic_pil(x * 255.0, size), 0.0, 255.0) - 128.0) / 128.0
    else:
        x = (resize_bilinear(x * 255.0, size, mode) - 128.0) / 128.0
    if x.shape[-1] == 1:
        x = jnp.broadcast_to(x, (*x.shape[:3], 3))
    return x

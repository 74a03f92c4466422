"""The FID Inception-v3 network in Flax Linen, and the image preprocessing in front of it.

The network is the one behind every published FID: the TensorFlow graph
`inception-2015-12-05`, in the form pytorch-fid ships it (`InceptionV3` with
`use_fid_inception=True`). Up to float rounding it computes the same function: the same layers in
the same order, batch norm with eps 1e-3 from running statistics (inference only), the FID
patches of the pooling branches (TF's average pool that leaves padding out of the count, and the
max pool in the last block), and the global average pool that gives the 2048-d "pool3" features.

Layout and names:
- Input NHWC float32, 299×299×3, already scaled to [-1, 1] (use `preprocess`); output [N, 2048]
  (or, with `output_block` 0/1/2, the 64/192/768-d spatial means of pytorch-fid's earlier blocks).
- The variable tree mirrors the names in pytorch-fid's state dict one for one. The torch key
  `Mixed_6b.branch7x7_2.conv.weight` [O, I, kh, kw] is `params/Mixed_6b/branch7x7_2/conv/kernel`
  [kh, kw, I, O]; `....bn.weight` / `bn.bias` are `params/.../bn/scale` / `bias`, and
  `bn.running_mean` / `running_var` are `batch_stats/.../bn/mean` / `var`.
  (`gancmp.metrics.inception.convert_state_dict` does the conversion.)
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3

PreprocessMode = Literal["pytorch_fid", "tf1_legacy", "clean"]
PREPROCESS_MODES: tuple[str, ...] = ("pytorch_fid", "tf1_legacy", "clean")
BILINEAR_MODES: tuple[str, ...] = ("pytorch_fid", "tf1_legacy")  # the modes of `resize_bilinear`
# Feature size of each of pytorch-fid's output blocks (its `BLOCK_INDEX_BY_DIM`): 0 after the
# first max pool, 1 after the second, 2 after Mixed_6e, 3 the pool3 features.
BLOCK_DIMS: tuple[int, ...] = (64, 192, 768, 2048)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """conv (no bias) → batch norm (running statistics, eps 1e-3) → ReLU; torchvision's block.

    `padding` is symmetric (rows, cols) zero padding, as torch's `padding=(ph, pw)`. Convs run at
    full float32 precision (`Precision.HIGHEST`: no TF32/bf16 passes on accelerators), as the
    reference features are float32.
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        x = nn.Conv(self.features, self.kernel_size, self.strides,
                    padding=((ph, ph), (pw, pw)), use_bias=False,
                    precision=jax.lax.Precision.HIGHEST, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


def _conv(features: int, k: int | tuple[int, int], *, stride: int = 1,
          pad: int | tuple[int, int] = 0, name: str) -> BasicConv2d:
    k = (k, k) if isinstance(k, int) else k
    pad = (pad, pad) if isinstance(pad, int) else pad
    return BasicConv2d(features, k, (stride, stride), pad, name=name)


def avg_pool_3x3_exclude_pad(x: jax.Array) -> jax.Array:
    """3×3 average pool, stride 1, padding 1, the padding left out of the count (TF's rule;
    torch's `count_include_pad=False`). x: [N, H, W, C] → [N, H, W, C]."""
    window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
    return total / count


def max_pool_3x3(x: jax.Array, stride: int, pad: int) -> jax.Array:
    """3×3 max pool (padding counts as -inf, as in torch). x: [N, H, W, C]."""
    return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


# ---------------------------------------------------------------------------------------------
# Blocks (names as in torchvision's InceptionA..E; FID patches as in pytorch-fid)
# ---------------------------------------------------------------------------------------------


class FIDInceptionA(nn.Module):
    """Mixed_5b/c/d: 1×1, 5×5, double 3×3 and (TF) average-pool branches; 35×35 grid."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = _conv(64, 1, name="branch1x1")(x)
        b5 = _conv(48, 1, name="branch5x5_1")(x)
        b5 = _conv(64, 5, pad=2, name="branch5x5_2")(b5)
        b3 = _conv(64, 1, name="branch3x3dbl_1")(x)
        b3 = _conv(96, 3, pad=1, name="branch3x3dbl_2")(b3)
        b3 = _conv(96, 3, pad=1, name="branch3x3dbl_3")(b3)
        bp = _conv(self.pool_features, 1, name="branch_pool")(avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a: grid reduction 35 → 17."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = _conv(384, 3, stride=2, name="branch3x3")(x)
        bd = _conv(64, 1, name="branch3x3dbl_1")(x)
        bd = _conv(96, 3, pad=1, name="branch3x3dbl_2")(bd)
        bd = _conv(96, 3, stride=2, name="branch3x3dbl_3")(bd)
        bp = max_pool_3x3(x, stride=2, pad=0)
        return jnp.concatenate([b3, bd, bp], axis=-1)


class FIDInceptionC(nn.Module):
    """Mixed_6b..e: factorised 7×7 branches and (TF) average-pool branch; 17×17 grid."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        b1 = _conv(192, 1, name="branch1x1")(x)
        b7 = _conv(c7, 1, name="branch7x7_1")(x)
        b7 = _conv(c7, (1, 7), pad=(0, 3), name="branch7x7_2")(b7)
        b7 = _conv(192, (7, 1), pad=(3, 0), name="branch7x7_3")(b7)
        bd = _conv(c7, 1, name="branch7x7dbl_1")(x)
        bd = _conv(c7, (7, 1), pad=(3, 0), name="branch7x7dbl_2")(bd)
        bd = _conv(c7, (1, 7), pad=(0, 3), name="branch7x7dbl_3")(bd)
        bd = _conv(c7, (7, 1), pad=(3, 0), name="branch7x7dbl_4")(bd)
        bd = _conv(192, (1, 7), pad=(0, 3), name="branch7x7dbl_5")(bd)
        bp = _conv(192, 1, name="branch_pool")(avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a: grid reduction 17 → 8."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = _conv(192, 1, name="branch3x3_1")(x)
        b3 = _conv(320, 3, stride=2, name="branch3x3_2")(b3)
        b7 = _conv(192, 1, name="branch7x7x3_1")(x)
        b7 = _conv(192, (1, 7), pad=(0, 3), name="branch7x7x3_2")(b7)
        b7 = _conv(192, (7, 1), pad=(3, 0), name="branch7x7x3_3")(b7)
        b7 = _conv(192, 3, stride=2, name="branch7x7x3_4")(b7)
        bp = max_pool_3x3(x, stride=2, pad=0)
        return jnp.concatenate([b3, b7, bp], axis=-1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (`max_pool=False`: TF average pool, pytorch-fid's FIDInceptionE_1) and Mixed_7c
    (`max_pool=True`: the 3×3/1 max pool of the TF graph, pytorch-fid's FIDInceptionE_2)."""

    max_pool: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = _conv(320, 1, name="branch1x1")(x)
        b3 = _conv(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate([_conv(384, (1, 3), pad=(0, 1), name="branch3x3_2a")(b3),
                              _conv(384, (3, 1), pad=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = _conv(448, 1, name="branch3x3dbl_1")(x)
        bd = _conv(384, 3, pad=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([_conv(384, (1, 3), pad=(0, 1), name="branch3x3dbl_3a")(bd),
                              _conv(384, (3, 1), pad=(1, 0), name="branch3x3dbl_3b")(bd)],
                             axis=-1)
        pooled = max_pool_3x3(x, stride=1, pad=1) if self.max_pool else avg_pool_3x3_exclude_pad(x)
        bp = _conv(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's InceptionV3 (use_fid_inception=True) up to block 3: x → pool3 features.

    x: [N, 299, 299, 3] float32 in [-1, 1] (see `preprocess`). Returns [N, 2048] float32, the
    global average of Mixed_7c. Inference only: there are no trainable-mode statistics.
    `output_block` 0, 1 or 2 stops early, as pytorch-fid's `InceptionV3([block])` with
    `calculate_fid_given_paths(dims=64/192/768)`: the spatial mean of that block's output,
    [N, BLOCK_DIMS[output_block]] (the later layers' variables are then not used).
    """

    output_block: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"FIDInceptionV3 takes [N, H, W, 3] images, got shape {x.shape}")
        if self.output_block not in range(len(BLOCK_DIMS)):
            raise ValueError(f"output_block must be 0, 1, 2 or 3, got {self.output_block}")
        x = _conv(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
        x = _conv(32, 3, name="Conv2d_2a_3x3")(x)
        x = _conv(64, 3, pad=1, name="Conv2d_2b_3x3")(x)
        x = max_pool_3x3(x, stride=2, pad=0)
        if self.output_block == 0:
            return jnp.mean(x, axis=(1, 2))
        x = _conv(80, 1, name="Conv2d_3b_1x1")(x)
        x = _conv(192, 3, name="Conv2d_4a_3x3")(x)
        x = max_pool_3x3(x, stride=2, pad=0)
        if self.output_block == 1:
            return jnp.mean(x, axis=(1, 2))
        x = FIDInceptionA(32, name="Mixed_5b")(x)
        x = FIDInceptionA(64, name="Mixed_5c")(x)
        x = FIDInceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = FIDInceptionC(128, name="Mixed_6b")(x)
        x = FIDInceptionC(160, name="Mixed_6c")(x)
        x = FIDInceptionC(160, name="Mixed_6d")(x)
        x = FIDInceptionC(192, name="Mixed_6e")(x)
        if self.output_block == 2:
            return jnp.mean(x, axis=(1, 2))
        x = InceptionD(name="Mixed_7a")(x)
        x = FIDInceptionE(max_pool=False, name="Mixed_7b")(x)
        x = FIDInceptionE(max_pool=True, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


@functools.cache
def variable_shapes() -> dict:
    """The network's variable tree as `jax.ShapeDtypeStruct`s ({'params', 'batch_stats'}).
    Cached: treat the result as read-only."""
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), x)


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------


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

"""The FID Inception-v3 network in Flax Linen (the image preprocessing in front of it is
`gancmp.nets.inception_input`, re-exported here).

The network is the one behind every published FID: the TensorFlow graph
`inception-2015-12-05`, in the form pytorch-fid ships it (`InceptionV3` with
`use_fid_inception=True`). Up to float rounding it computes the same function: the same layers in
the same order, batch norm with eps 1e-3 from running statistics (inference only), the FID
patches of the pooling branches (TF's average pool that leaves padding out of the count, and the
max pool in the last block), and the global average pool that gives the 2048-d "pool3" features.

Layout and names:
- Input NHWC float32, 299×299×3, already scaled to [-1, 1] (use `preprocess`); output [N, 2048]
  (or, with `output_block` 0/1/2, the 64/192/768-d spatial means of pytorch-fid's earlier blocks);
  with `logits=True`, (pool3 [N, 2048], logits [N, 1008]) from the same forward pass: the graph's
  1008-way classifier `fc` on pool3, without its bias as the Inception Score takes it.
- The variable tree mirrors the names in pytorch-fid's state dict one for one. The torch key
  `Mixed_6b.branch7x7_2.conv.weight` [O, I, kh, kw] is `params/Mixed_6b/branch7x7_2/conv/kernel`
  [kh, kw, I, O]; `....bn.weight` / `bn.bias` are `params/.../bn/scale` / `bias`, and
  `bn.running_mean` / `running_var` are `batch_stats/.../bn/mean` / `var`; `fc.weight` [1008, 2048]
  and `fc.bias` are `params/fc/kernel` [2048, 1008] and `params/fc/bias`.
  (`gancmp.metrics.inception.convert_state_dict` does the conversion.)
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gancmp.nets import cpu_ops as cpu
from gancmp.nets.inception_input import (  # noqa: F401  (re-exported: the stable API)
    BILINEAR_MODES,
    INPUT_SIZE,
    PREPROCESS_MODES,
    PreprocessMode,
    preprocess,
    resize_bicubic_pil,
    resize_bilinear,
)

FEATURE_DIM = 2048
BN_EPS = 1e-3
NUM_CLASSES = 1008  # the 2015-12-05 graph's classifier (1000 ImageNet classes + 8 unused)
# Feature size of each of pytorch-fid's output blocks (its `BLOCK_INDEX_BY_DIM`): 0 after the
# first max pool, 1 after the second, 2 after Mixed_6e, 3 the pool3 features.
BLOCK_DIMS: tuple[int, ...] = (64, 192, 768, 2048)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """conv (no bias) → batch norm (running statistics, eps 1e-3) → ReLU; torchvision's block.

    `padding` is symmetric (rows, cols) zero padding, as torch's `padding=(ph, pw)`. Convs run at
    `precision` (default `Precision.HIGHEST`: full float32, no TF32/bf16 passes on
    accelerators, as the reference features are float32; see `FIDInceptionV3.precision`).
    `cpu_ops`: the convolution in `gancmp.nets.cpu_ops`' form for XLA:CPU (same variables).
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    cpu_ops: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, stage: str = "all") -> jax.Array:
        """stage "all": conv → bn → ReLU of x; "kernel" (`cpu_ops` only): the conv's kernel
        [kh, kw, C, features] (x gives C); "activate": bn → ReLU of x, already convolved."""
        if stage != "activate":
            ph, pw = self.padding
            conv = CpuConv if self.cpu_ops else functools.partial(nn.Conv, use_bias=False)
            conv = conv(self.features, self.kernel_size, self.strides,
                        padding=((ph, ph), (pw, pw)), precision=self.precision, name="conv")
            if stage == "kernel":
                return conv(x, kernel_only=True)
            x = conv(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


class CpuConv(nn.Module):
    """`nn.Conv(features, kernel_size, strides, padding, use_bias=False)`'s variable ('kernel'
    [kh, kw, C, features], the same initialiser) computed by `cpu_ops.conv`."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array, kernel_only: bool = False) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel_size, x.shape[-1], self.features))
        if kernel_only:
            return kernel
        return cpu.conv(x, kernel, self.strides, self.padding, self.precision)


def _conv(features: int, k: int | tuple[int, int], *, stride: int = 1,
          pad: int | tuple[int, int] = 0, name: str,
          precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
          cpu_ops: bool = False) -> BasicConv2d:
    k = (k, k) if isinstance(k, int) else k
    pad = (pad, pad) if isinstance(pad, int) else pad
    return BasicConv2d(features, k, (stride, stride), pad, precision, cpu_ops, name=name)


def _heads(x: jax.Array, convs: list[BasicConv2d], pool: bool, cpu_ops: bool,
           precision: jax.lax.Precision) -> list[Callable[[], jax.Array]]:
    """A block's first layers, all 1×1 `BasicConv2d`s of x, each as a thunk giving conv(x),
    the last one's of the 3×3 average pool of x when `pool` (the TF pooling branch). Without
    `cpu_ops` each thunk traces its layer when called, so the block's program is the plain
    layer-by-layer one in the block's order. With `cpu_ops` all of them are computed at once,
    one matmul of x with the kernels side by side, and the pooling branch pools its conv's
    output instead of x (both are linear, so pool(x)·K = pool(x·K), fewer channels to pool):
    the same function up to float32 rounding."""
    if not cpu_ops:
        pooled = (lambda: _avg_pool(x, False)) if pool else (lambda: x)
        return ([functools.partial(conv, x) for conv in convs[:-1]]
                + [lambda: convs[-1](pooled())])
    kernels = [conv(x, stage="kernel")[0, 0] for conv in convs]
    z = jnp.dot(x, jnp.concatenate(kernels, axis=1), precision=precision)
    parts = jnp.split(z, list(itertools.accumulate(k.shape[1] for k in kernels[:-1])), axis=-1)
    if pool:
        parts[-1] = cpu.avg_pool_3x3_exclude_pad(parts[-1])
    heads = [conv(part, stage="activate") for conv, part in zip(convs, parts, strict=True)]
    return [(lambda h=h: h) for h in heads]


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


def _avg_pool(x: jax.Array, cpu_ops: bool) -> jax.Array:
    return cpu.avg_pool_3x3_exclude_pad(x) if cpu_ops else avg_pool_3x3_exclude_pad(x)


def _max_pool(x: jax.Array, stride: int, pad: int, cpu_ops: bool) -> jax.Array:
    return cpu.max_pool_3x3(x, stride, pad) if cpu_ops else max_pool_3x3(x, stride, pad)


# ---------------------------------------------------------------------------------------------
# Blocks (names as in torchvision's InceptionA..E; FID patches as in pytorch-fid)
# ---------------------------------------------------------------------------------------------


class FIDInceptionA(nn.Module):
    """Mixed_5b/c/d: 1×1, 5×5, double 3×3 and (TF) average-pool branches; 35×35 grid."""

    pool_features: int
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    cpu_ops: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(_conv, precision=self.precision, cpu_ops=self.cpu_ops)
        b1, b5, b3, bp = _heads(x, [conv(64, 1, name="branch1x1"),
                                    conv(48, 1, name="branch5x5_1"),
                                    conv(64, 1, name="branch3x3dbl_1"),
                                    conv(self.pool_features, 1, name="branch_pool")],
                                True, self.cpu_ops, self.precision)
        b1 = b1()
        b5 = conv(64, 5, pad=2, name="branch5x5_2")(b5())
        b3 = conv(96, 3, pad=1, name="branch3x3dbl_2")(b3())
        b3 = conv(96, 3, pad=1, name="branch3x3dbl_3")(b3)
        return jnp.concatenate([b1, b5, b3, bp()], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a: grid reduction 35 → 17."""

    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    cpu_ops: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(_conv, precision=self.precision, cpu_ops=self.cpu_ops)
        b3 = conv(384, 3, stride=2, name="branch3x3")(x)
        bd = conv(64, 1, name="branch3x3dbl_1")(x)
        bd = conv(96, 3, pad=1, name="branch3x3dbl_2")(bd)
        bd = conv(96, 3, stride=2, name="branch3x3dbl_3")(bd)
        bp = _max_pool(x, 2, 0, self.cpu_ops)
        return jnp.concatenate([b3, bd, bp], axis=-1)


class FIDInceptionC(nn.Module):
    """Mixed_6b..e: factorised 7×7 branches and (TF) average-pool branch; 17×17 grid."""

    channels_7x7: int
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    cpu_ops: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(_conv, precision=self.precision, cpu_ops=self.cpu_ops)
        c7 = self.channels_7x7
        b1, b7, bd, bp = _heads(x, [conv(192, 1, name="branch1x1"),
                                    conv(c7, 1, name="branch7x7_1"),
                                    conv(c7, 1, name="branch7x7dbl_1"),
                                    conv(192, 1, name="branch_pool")],
                                True, self.cpu_ops, self.precision)
        b1 = b1()
        b7 = conv(c7, (1, 7), pad=(0, 3), name="branch7x7_2")(b7())
        b7 = conv(192, (7, 1), pad=(3, 0), name="branch7x7_3")(b7)
        bd = conv(c7, (7, 1), pad=(3, 0), name="branch7x7dbl_2")(bd())
        bd = conv(c7, (1, 7), pad=(0, 3), name="branch7x7dbl_3")(bd)
        bd = conv(c7, (7, 1), pad=(3, 0), name="branch7x7dbl_4")(bd)
        bd = conv(192, (1, 7), pad=(0, 3), name="branch7x7dbl_5")(bd)
        return jnp.concatenate([b1, b7, bd, bp()], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a: grid reduction 17 → 8."""

    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    cpu_ops: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(_conv, precision=self.precision, cpu_ops=self.cpu_ops)
        b3, b7 = _heads(x, [conv(192, 1, name="branch3x3_1"), conv(192, 1, name="branch7x7x3_1")],
                        False, self.cpu_ops, self.precision)
        b3 = conv(320, 3, stride=2, name="branch3x3_2")(b3())
        b7 = conv(192, (1, 7), pad=(0, 3), name="branch7x7x3_2")(b7())
        b7 = conv(192, (7, 1), pad=(3, 0), name="branch7x7x3_3")(b7)
        b7 = conv(192, 3, stride=2, name="branch7x7x3_4")(b7)
        bp = _max_pool(x, 2, 0, self.cpu_ops)
        return jnp.concatenate([b3, b7, bp], axis=-1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (`max_pool=False`: TF average pool, pytorch-fid's FIDInceptionE_1) and Mixed_7c
    (`max_pool=True`: the 3×3/1 max pool of the TF graph, pytorch-fid's FIDInceptionE_2)."""

    max_pool: bool
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    cpu_ops: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(_conv, precision=self.precision, cpu_ops=self.cpu_ops)
        heads = [conv(320, 1, name="branch1x1"), conv(384, 1, name="branch3x3_1"),
                 conv(448, 1, name="branch3x3dbl_1")]
        if self.max_pool:  # the max pool does not commute with the conv: x pooled, then conv
            b1, b3, bd = _heads(x, heads, False, self.cpu_ops, self.precision)

            def bp() -> jax.Array:
                return conv(192, 1, name="branch_pool")(_max_pool(x, 1, 1, self.cpu_ops))
        else:
            b1, b3, bd, bp = _heads(x, [*heads, conv(192, 1, name="branch_pool")], True,
                                    self.cpu_ops, self.precision)
        b1, b3 = b1(), b3()
        b3 = jnp.concatenate([conv(384, (1, 3), pad=(0, 1), name="branch3x3_2a")(b3),
                              conv(384, (3, 1), pad=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = conv(384, 3, pad=1, name="branch3x3dbl_2")(bd())
        bd = jnp.concatenate([conv(384, (1, 3), pad=(0, 1), name="branch3x3dbl_3a")(bd),
                              conv(384, (3, 1), pad=(1, 0), name="branch3x3dbl_3b")(bd)],
                             axis=-1)
        return jnp.concatenate([b1, b3, bd, bp()], axis=-1)


class Classifier(nn.Module):
    """pytorch-fid's `fc`: pool3 [N, 2048] → logits [N, 1008], pool3 · kernel (+ bias with
    `use_bias`). Both variables exist either way, mirroring `fc.weight` and `fc.bias`; without the
    bias (the default) these are the logits of the original Inception Score script (Salimans et
    al. 2016, `softmax/logits/MatMul`), torch-fidelity's `logits_unbiased`. Full float32
    precision, as the convolutions (`precision`)."""

    classes: int = NUM_CLASSES
    use_bias: bool = False
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.zeros, (x.shape[-1], self.classes))
        bias = self.param("bias", nn.initializers.zeros, (self.classes,))
        out = jnp.dot(x, kernel, precision=self.precision)
        return out + bias if self.use_bias else out


class FIDInceptionV3(nn.Module):
    """pytorch-fid's InceptionV3 (use_fid_inception=True) up to block 3: x → pool3 features.

    x: [N, 299, 299, 3] float32 in [-1, 1] (see `preprocess`). Returns [N, 2048] float32, the
    global average of Mixed_7c. Inference only: there are no trainable-mode statistics.
    `output_block` 0, 1 or 2 stops early, as pytorch-fid's `InceptionV3([block])` with
    `calculate_fid_given_paths(dims=64/192/768)`: the spatial mean of that block's output,
    [N, BLOCK_DIMS[output_block]] (the later layers' variables are then not used).
    `logits=True` (pool3 only) returns (pool3 [N, 2048], `Classifier` logits [N, 1008]) from one
    pass; the variables then include `params/fc`.
    `precision`: of every convolution and of the classifier (`jax.lax.Precision`; default
    HIGHEST, full float32; the evaluator records the one it used, `FeatureExtractor.provenance`).
    `cpu_ops`: convolutions and pools in `gancmp.nets.cpu_ops`' forms, faster on XLA:CPU (the
    same function up to float32 rounding, the same variables); for CPU devices only.
    """

    output_block: int = 3
    logits: bool = False
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    cpu_ops: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
        p, c = self.precision, self.cpu_ops
        conv = functools.partial(_conv, precision=p, cpu_ops=c)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"FIDInceptionV3 takes [N, H, W, 3] images, got shape {x.shape}")
        if self.output_block not in range(len(BLOCK_DIMS)):
            raise ValueError(f"output_block must be 0, 1, 2 or 3, got {self.output_block}")
        if self.logits and self.output_block != 3:
            raise ValueError("logits=True needs the pool3 output (output_block 3)")
        x = conv(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
        x = conv(32, 3, name="Conv2d_2a_3x3")(x)
        x = conv(64, 3, pad=1, name="Conv2d_2b_3x3")(x)
        x = _max_pool(x, 2, 0, c)
        if self.output_block == 0:
            return jnp.mean(x, axis=(1, 2))
        x = conv(80, 1, name="Conv2d_3b_1x1")(x)
        x = conv(192, 3, name="Conv2d_4a_3x3")(x)
        x = _max_pool(x, 2, 0, c)
        if self.output_block == 1:
            return jnp.mean(x, axis=(1, 2))
        x = FIDInceptionA(32, p, c, name="Mixed_5b")(x)
        x = FIDInceptionA(64, p, c, name="Mixed_5c")(x)
        x = FIDInceptionA(64, p, c, name="Mixed_5d")(x)
        x = InceptionB(p, c, name="Mixed_6a")(x)
        x = FIDInceptionC(128, p, c, name="Mixed_6b")(x)
        x = FIDInceptionC(160, p, c, name="Mixed_6c")(x)
        x = FIDInceptionC(160, p, c, name="Mixed_6d")(x)
        x = FIDInceptionC(192, p, c, name="Mixed_6e")(x)
        if self.output_block == 2:
            return jnp.mean(x, axis=(1, 2))
        x = InceptionD(p, c, name="Mixed_7a")(x)
        x = FIDInceptionE(False, p, c, name="Mixed_7b")(x)
        x = FIDInceptionE(True, p, c, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        if self.logits:
            return pool3, Classifier(precision=p, name="fc")(pool3)
        return pool3


@functools.cache
def variable_shapes(logits: bool = False) -> dict:
    """The network's variable tree as `jax.ShapeDtypeStruct`s ({'params', 'batch_stats'}): the
    pool3 network's, plus the classifier `params/fc` with `logits`. Cached: treat the result as
    read-only."""
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return jax.eval_shape(FIDInceptionV3(logits=logits).init, jax.random.key(0), x)

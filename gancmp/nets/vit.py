"""A pre-norm Vision Transformer in Flax Linen: the trunk shared by the metric feature networks
DINOv2 (`gancmp.nets.dinov2`) and CLIP's visual tower (`gancmp.nets.clip`).

    model = ViT(ViTConfig(width=1024, depth=24, heads=16, mlp_dim=4096, patch=14, ...))
    cls = model.apply(variables, x)   # x [N, H, W, 3] normalised pixels → [N, width] float32

Conventions (both reference models share them): patches of `patch`×`patch` pixels embedded by a
linear map (the reference's stride-`patch` convolution), tokens ordered row by row, a learned
class token first; learned position embeddings `pos_embed` [1 + (H/patch)·(W/patch), width] for
the input size the variables were converted for (the converter interpolates them; the trunk
adds them as they are); blocks x ← x + ls1·attn(norm1(x)), x ← x + ls2·mlp(norm2(x)) with fused
qkv projections and softmax(q·kᵀ/√d_head) attention; the output is the class token after the
final LayerNorm. Only that token's row is read, so the last block computes only its row (its
attention query, projection and MLP: one row of 257 instead of all; the keys and values of every
token, which it needs): the same numbers, 3 % fewer FLOPs for DINOv2 ViT-L. Every matmul runs
at `precision` (HIGHEST = full float32, the default).

`form` (`ViTForm`): how the same products are laid out, chosen per backend. `kernel_layout`: the
dense kernels stored "in_out" ([in, out], Flax's layout, what `gancmp.metrics.vit_weights`
converts to) or "out_in" ([out, in], torch's; `with_kernel_layout` converts variables once);
`head_group`: the attention's products for at most that many heads at a time (None: all heads
in one batched product). q, k and v are written head-major ([b, h, n, d]) by one copy after
the fused qkv product in every form. `CPU_FORM` ("out_in", 4 heads) is XLA:CPU's, each part
measured against the code before it, alternating in one process (RESULTS.md): products
x [257, 1024] · K run at 336 against 314 GFLOP/s with K [out, in] (DINOv2 ViT-L 3–7 % faster,
CLIP 2 %); head-major attention in groups of 4 heads, DINOv2 5 % and CLIP ViT-L/14@336 12 %
faster than all 16 heads in one product from token-major q, k, v.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

KERNEL_LAYOUTS = ("in_out", "out_in")


def _check_layout(layout: str) -> None:
    """Refuses a kernel layout not in KERNEL_LAYOUTS with one line naming the allowed ones."""
    if layout not in KERNEL_LAYOUTS:
        raise ValueError(f"kernel_layout must be one of {', '.join(KERNEL_LAYOUTS)}, "
                         f"got {layout!r}")


@dataclasses.dataclass(frozen=True)
class ViTForm:
    """How a ViT lays out its products (see the module docstring); the numbers are the same
    to float32 summation order in every form."""

    kernel_layout: str = "in_out"
    head_group: int | None = None

    def __post_init__(self):
        _check_layout(self.kernel_layout)
        if self.head_group is not None and self.head_group < 1:
            raise ValueError(f"head_group must be a number of heads ≥ 1 or None (all heads), "
                             f"got {self.head_group!r}")


ACCELERATOR_FORM = ViTForm()  # the default
CPU_FORM = ViTForm(kernel_layout="out_in", head_group=4)


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """A ViT's static shape and its reference's choices.

    `act`: "gelu" (exact, erf: DINOv2) or "quick_gelu" (x·σ(1.702x): OpenAI CLIP).
    `layer_scale`: per-channel scales ls1, ls2 on each residual branch (DINOv2).
    `ln_pre`: a LayerNorm after the embeddings, before the blocks (CLIP).
    `patch_bias`: the patch embedding has a bias (DINOv2: yes, CLIP: no).
    `eps`: LayerNorm epsilon (DINOv2 1e-6, CLIP 1e-5)."""

    width: int
    depth: int
    heads: int
    mlp_dim: int
    patch: int
    act: str = "gelu"
    layer_scale: bool = False
    ln_pre: bool = False
    patch_bias: bool = True
    eps: float = 1e-6

    def tokens(self, height: int, width: int) -> int:
        """Tokens of an input of height × width pixels: the class token and one per patch."""
        return 1 + (height // self.patch) * (width // self.patch)


def quick_gelu(x: jax.Array) -> jax.Array:
    """OpenAI CLIP's activation, x·sigmoid(1.702·x)."""
    return x * jax.nn.sigmoid(1.702 * x)


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
    """LayerNorm with the variance as mean((x − mean)²), as torch computes it."""
    return nn.LayerNorm(eps, use_fast_variance=False, name=name)


_ACTS = {"gelu": lambda x: jax.nn.gelu(x, approximate=False), "quick_gelu": quick_gelu}


class LayerScale(nn.Module):
    """x·gamma, gamma [width] (DINOv2's `ls1`, `ls2`)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.param("gamma", nn.initializers.ones, (x.shape[-1],))


class DenseOutIn(nn.Module):
    """`nn.Dense` with its kernel stored [out, in]: x [..., in] → x·Kᵀ + b [..., out]. Its
    random initialisation is `nn.Dense`'s, transposed."""

    features: int
    use_bias: bool = True
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.lecun_normal()
        kernel = self.param("kernel", lambda key, shape: init(key, shape[::-1]).T,
                            (self.features, x.shape[-1]))
        y = lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ())),
                            precision=self.precision)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def _dense(features: int, precision: Any, layout: str, name: str,
           use_bias: bool = True) -> nn.Module:
    """A dense layer whose kernel is stored in `layout` (see the module docstring)."""
    if layout == "in_out":
        return nn.Dense(features, use_bias=use_bias, precision=precision, name=name)
    return DenseOutIn(features, use_bias, precision, name=name)


def with_kernel_layout(variables: Any, layout: str) -> Any:
    """ViT variables (Flax's "in_out" layout, as converted) with every dense kernel (the 2-D
    leaves named "kernel") stored in `layout`; arrays or `jax.ShapeDtypeStruct`s."""
    _check_layout(layout)
    if layout == "in_out":
        return variables

    def convert(path, leaf):
        if getattr(path[-1], "key", None) != "kernel" or len(leaf.shape) != 2:
            return leaf
        if isinstance(leaf, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(leaf.shape[::-1], leaf.dtype)
        return np.ascontiguousarray(np.asarray(leaf).T)
    return jax.tree_util.tree_map_with_path(convert, variables)


class Attention(nn.Module):
    """Multi-head self-attention: qkv [width → 3·width] fused, softmax(q·kᵀ/√d), proj.
    x [b, n, width] → [b, n, width], or the first `queries` tokens' outputs [b, queries, width]
    (each attends to all n)."""

    heads: int
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    form: ViTForm = ACCELERATOR_FORM
    queries: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, width = x.shape
        h, d = self.heads, width // self.heads
        qkv = _dense(3 * width, self.precision, self.form.kernel_layout, "qkv")(x)
        q, k, v = jnp.transpose(qkv.reshape(b, n, 3, h, d), (2, 0, 3, 1, 4))  # [b, h, n, d]
        if self.queries is not None:
            q = q[:, :, :self.queries]
        q = q * (d ** -0.5)
        group = self.form.head_group or h
        out = jnp.concatenate([_attend(q[:, i:i + group], k[:, i:i + group], v[:, i:i + group],
                                       self.precision) for i in range(0, h, group)], axis=1)
        out = jnp.transpose(out, (0, 2, 1, 3)).reshape(b, q.shape[2], width)
        return _dense(width, self.precision, self.form.kernel_layout, "proj")(out)


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, precision: Any) -> jax.Array:
    """softmax(q·kᵀ)·v per head: q [b, h, m, d] (scaled), k, v [b, h, n, d] → [b, h, m, d]."""
    weights = jax.nn.softmax(jnp.einsum("bhqd,bhkd->bhqk", q, k, precision=precision), axis=-1)
    return jnp.einsum("bhqk,bhkd->bhqd", weights, v, precision=precision)


class Mlp(nn.Module):
    """fc1 [width → mlp_dim], the activation, fc2 [mlp_dim → width]."""

    mlp_dim: int
    act: str
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    kernel_layout: str = "in_out"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = _ACTS[self.act](_dense(self.mlp_dim, self.precision, self.kernel_layout, "fc1")(x))
        return _dense(x.shape[-1], self.precision, self.kernel_layout, "fc2")(h)


class Block(nn.Module):
    """One pre-norm transformer block (see the module docstring): x [b, n, width] → [b, n,
    width], or with `class_only` the class token's row alone, [b, 1, width]."""

    config: ViTConfig
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    form: ViTForm = ACCELERATOR_FORM
    class_only: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        h = Attention(c.heads, self.precision, self.form, 1 if self.class_only else None,
                      name="attn")(
            _layer_norm(c.eps, name="norm1")(x))
        x = x[:, :1] if self.class_only else x
        x = x + (LayerScale(name="ls1")(h) if c.layer_scale else h)
        h = Mlp(c.mlp_dim, c.act, self.precision, self.form.kernel_layout, name="mlp")(
            _layer_norm(c.eps, name="norm2")(x))
        return x + (LayerScale(name="ls2")(h) if c.layer_scale else h)


class ViT(nn.Module):
    """x [N, H, W, 3] (normalised; H, W multiples of `patch`) → the class token after the final
    LayerNorm, [N, width] float32."""

    config: ViTConfig
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    form: ViTForm = ACCELERATOR_FORM

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        n, h, w, ch = x.shape
        p = c.patch
        patches = x.reshape(n, h // p, p, w // p, p, ch).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(n, (h // p) * (w // p), p * p * ch)  # (row, col, channel)
        tokens = _dense(c.width, self.precision, self.form.kernel_layout, "patch_embed",
                        c.patch_bias)(patches)
        cls = self.param("cls_token", nn.initializers.normal(0.02), (c.width,))
        tokens = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, c.width)), tokens], axis=1)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (c.tokens(h, w), c.width))
        tokens = tokens + pos
        if c.ln_pre:
            tokens = _layer_norm(c.eps, name="ln_pre")(tokens)
        for i in range(c.depth):
            tokens = Block(c, self.precision, self.form, class_only=i == c.depth - 1,
                           name=f"blocks_{i}")(tokens)
        return _layer_norm(c.eps, name="norm")(tokens[:, 0])


def variable_shapes(config: ViTConfig, height: int, width: int) -> dict:
    """The ViT's variables as `jax.ShapeDtypeStruct`s for inputs of height × width pixels."""
    model = ViT(config)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, height, width, 3), jnp.float32))

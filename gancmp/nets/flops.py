"""Analytic FLOP counts from the reference layers (Dense, Conv, 4×4 s2 transposed conv).

Counted from the paper's layer definitions, not from XLA's cost analysis, which also counts work
that an exact reformulation adds (a sub-pixel convolution multiplies zeros). One multiply-add = 2
FLOPs; a backward pass is counted as twice its forward (input and weight gradients).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax

from gancmp.nets.layers import ConvTranspose2x
from gancmp.nets.vit import Attention, DenseOutIn


def forward_macs(module: nn.Module, variables: Any, x: jax.Array, **kwargs) -> int:
    """Multiply-adds of one forward pass of `module` on `x`, summed over its Dense, Conv and
    transposed-conv layers and a ViT's attention products (q·kᵀ and weights·v: 2·m·n·width per
    image of m queries over n tokens; its qkv and output projections are Dense layers, either
    kernel layout); biases, norms,
    softmax and activations are negligible and not counted."""
    total = 0

    def count(next_fun, args, kw, context):
        nonlocal total
        out = next_fun(*args, **kw)
        # (wrappers such as nn.SpectralNorm also call helper methods with no positional input)
        if context.method_name == "__call__" and args:
            layer, inp = context.module, args[0]
            if isinstance(layer, nn.Dense | DenseOutIn):
                total += math.prod(inp.shape[:-1]) * inp.shape[-1] * layer.features
            elif isinstance(layer, nn.Conv):
                kernel = math.prod(layer.kernel_size) * inp.shape[-1]
                total += math.prod(out.shape) * kernel
            elif isinstance(layer, Attention):
                total += 2 * inp.shape[0] * out.shape[1] * inp.shape[1] * inp.shape[2]
            elif isinstance(layer, ConvTranspose2x | nn.ConvTranspose):
                # every input pixel scatters a 4×4 (k×k) patch into every output channel
                k = 16 if isinstance(layer, ConvTranspose2x) else math.prod(layer.kernel_size)
                total += math.prod(inp.shape[:-1]) * inp.shape[-1] * out.shape[-1] * k
        return out

    with nn.intercept_methods(count):
        jax.eval_shape(lambda v, a: module.apply(v, a, **kwargs), variables, x)
    return total


def train_step_flops(g: nn.Module, g_vars: Any, d: nn.Module, d_vars: Any, z: jax.Array,
                     x: jax.Array, disc_iters: int = 1) -> int:
    """FLOPs of one iteration (`disc_iters` D updates + one G update) at batch size len(z).

    D update: G forward + D forward on the real and on the fake batch + their backward (2×).
    G update: G forward + D forward on fakes + D backward to its input (1×) + G backward (2×).
    """
    f_g = forward_macs(g, g_vars, z, train=False)
    f_d = forward_macs(d, d_vars, x, train=False)
    d_update = f_g + 3 * 2 * f_d
    g_update = 3 * f_g + 2 * f_d
    return 2 * (disc_iters * d_update + g_update)




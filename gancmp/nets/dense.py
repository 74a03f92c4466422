"""`nn.Dense`'s product with its kernel gradient computed in the kernel's own layout on XLA:CPU
(`dense_dot_general`, the `dot_general` of `gancmp.nets.common.Dense`).

Autodiff differentiates x · K (x [..., C], K [C, O]) with respect to K as a product of shape
[O, C] followed by a transpose, which XLA:CPU does not fold into the product: a copy of the
gradient (25 MB for the InfoGAN D's 6272 × 1024 kernel) or, when XLA fuses the transpose into
the optimizer's update instead, strided reads of the gradient in each of Adam's moments
(measured: 23 ms per moment and step, issue 28). Here the gradient is one product whose output
is [C, O]: the same products and sums.
"""

from __future__ import annotations

import functools

import jax
from jax import lax

from gancmp.nets.forms import cpu_forms
from gancmp.nets.layers import match_vma


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _dense_product(x: jax.Array, kernel: jax.Array, precision: lax.PrecisionLike) -> jax.Array:
    """x [..., C] · kernel [C, O] → [..., O] with the kernel gradient computed in the kernel's
    own layout: dkernel = Σ_batch x ⊗ dy as one product whose output is [C, O]. Autodiff computes
    it as a product of shape [O, C] and a transpose (the module docstring)."""
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


def _dense_product_fwd(x, kernel, precision):
    return _dense_product(x, kernel, precision), (x, kernel)


def _dense_product_bwd(precision, residuals, dy):
    x, kernel = residuals
    batch = tuple(range(x.ndim - 1))
    dx = lax.dot_general(dy, kernel, (((dy.ndim - 1,), (1,)), ((), ())), precision=precision)
    dkernel = lax.dot_general(x, dy, ((batch, batch), ((), ())), precision=precision)
    return match_vma(dx, x), match_vma(dkernel, kernel)


_dense_product.defvjp(_dense_product_fwd, _dense_product_bwd)


def dense_dot_general(x: jax.Array, kernel: jax.Array, dimension_numbers, precision=None,
                      preferred_element_type=None) -> jax.Array:
    """`nn.Dense`'s `dot_general`: `lax.dot_general` itself on accelerators (their compilers
    lay out the gradient for the update; their programs stay as they are), `_dense_product` on
    XLA:CPU (`forms.cpu_forms`, when the layer is traced). Dense's own contraction only (x's
    last axis with the kernel's first), as `nn.Dense` calls it."""
    if (not cpu_forms() or preferred_element_type is not None
            or dimension_numbers != (((x.ndim - 1,), (0,)), ((), ()))):
        return lax.dot_general(x, kernel, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
    return _dense_product(x, kernel, precision)

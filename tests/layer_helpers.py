"""Shared pieces of the layer tests (tests/test_layers.py, tests/test_conv_layers.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def close(a, b, rtol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = max(float(np.abs(b).max()), 1e-30)
    assert float(np.abs(a - b).max()) <= rtol * scale


def random_vars(variables, key):
    """Non-zero bias too, so the bias path is exercised."""
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)])


class Stack(nn.Module):
    """Two stride-2 'SAME' transposed convolutions of `cls` (nn.ConvTranspose or the drop-in),
    auto-named as in a compact parent: 'ConvTranspose_0', 'ConvTranspose_1'."""

    cls: type
    kernel: tuple[int, int]
    features: int

    @nn.compact
    def __call__(self, x):
        x = self.cls(self.features + 1, self.kernel, strides=(2, 2), padding="SAME")(x)
        return self.cls(self.features, self.kernel, strides=(2, 2), padding="SAME")(x)


def small_vars(variables):
    """Random params at scale 0.3 (with SGD steps of 0.01), so two stacked layers stay
    well-conditioned in float32: at scale 1 and step 0.1 the params move by ~6 per step and both
    implementations differ from a float64 reference by ~3e-4 after two steps."""
    return jax.tree.map(lambda a: 0.3 * a, random_vars(variables, jax.random.key(2)))


def value_and_grads(module, variables, x, cotangent):
    def loss(v, x):
        return jnp.sum(module.apply(v, x) * cotangent)

    y = module.apply(variables, x)
    gv, gx = jax.grad(loss, argnums=(0, 1))(variables, x)
    return y, gv, gx


def assert_same_values_and_grads(new, ref, x, cotangent):
    """`new` and `ref` (one layer each) on random variables: same output and the same input,
    kernel and bias gradients of <output, cotangent>."""
    v = random_vars(ref.init(jax.random.key(0), x), jax.random.key(2))
    (y, gv, gx), (y_ref, gv_ref, gx_ref) = jax.jit(lambda v, x: (
        value_and_grads(new, v, x, cotangent), value_and_grads(ref, v, x, cotangent)))(v, x)
    close(y, y_ref)
    close(gx, gx_ref)
    for name in ("kernel", "bias"):
        close(gv["params"][name], gv_ref["params"][name])

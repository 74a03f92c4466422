"""The FID Inception's XLA:CPU forms (`gancmp.nets.cpu_ops`, `FIDInceptionV3(cpu_ops=True)`) and
the extractor's micro-batch lanes compute the same function as the plain layers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp.metrics import features
from gancmp.nets import cpu_ops
from gancmp.nets import inception as net

HIGHEST = jax.lax.Precision.HIGHEST


def _lax_conv(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, precision=HIGHEST,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


# (x shape, kernel shape, strides, padding, the form `conv_form` picks): one case per form,
# odd sizes so that strided windows leave a remainder.
CASES = [
    ((2, 9, 11, 16), (1, 1, 16, 24), (1, 1), ((0, 0), (0, 0)), "dot"),
    ((2, 13, 12, 5), (3, 3, 5, 7), (2, 2), ((0, 0), (0, 0)), "im2col"),
    ((1, 8, 8, 12), (1, 3, 12, 10), (1, 1), ((0, 0), (1, 1)), "im2col"),
    ((1, 8, 8, 12), (3, 1, 12, 10), (1, 1), ((1, 1), (0, 0)), "im2col"),
    ((2, 73, 74, 8), (3, 3, 8, 6), (1, 1), ((1, 1), (1, 1)), "wide"),
    ((1, 75, 71, 4), (3, 3, 4, 5), (1, 1), ((0, 0), (0, 0)), "wide"),
    ((1, 17, 17, 8), (1, 7, 8, 6), (1, 1), ((0, 0), (3, 3)), "conv"),
]


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, form", CASES)
def test_conv_forms_equal_the_convolution(x_shape, k_shape, strides, padding, form):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=k_shape), jnp.float32)
    assert cpu_ops.conv_form(x_shape, k_shape, strides) == form
    ref = np.asarray(_lax_conv(x, kernel, strides, padding))
    ours = np.asarray(jax.jit(cpu_ops.conv, static_argnums=(2, 3, 4))(x, kernel, strides,
                                                                       padding, HIGHEST))
    assert ours.shape == ref.shape
    # a sum of k·k·C float32 products in another order: a few ulps of the largest term
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    if form != "dot":  # and each matmul form on its own, whatever conv_form would pick
        im2col = jax.jit(cpu_ops.im2col_conv, static_argnums=(2, 3, 4))
        np.testing.assert_allclose(im2col(x, kernel, strides, padding, HIGHEST),
                                   ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    if strides == (1, 1):
        wide = jax.jit(cpu_ops.wide_conv, static_argnums=(2, 3))
        np.testing.assert_allclose(wide(x, kernel, padding, HIGHEST), ref,
                                   rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("shape", [(2, 7, 9, 3), (1, 1, 1, 2), (1, 8, 8, 5)])
def test_pools_equal_reduce_window(shape):
    x = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32)
    avg = np.asarray(jax.jit(cpu_ops.avg_pool_3x3_exclude_pad)(x))
    np.testing.assert_allclose(avg, net.avg_pool_3x3_exclude_pad(x), rtol=1e-6, atol=1e-6)
    # by hand at a corner: the mean of the 4 pixels there (padding left out of the count)
    if min(shape[1:3]) >= 2:
        np.testing.assert_allclose(avg[:, 0, 0], np.asarray(x[:, :2, :2]).mean(axis=(1, 2)),
                                   rtol=1e-6)
    for stride, pad in ((1, 1), (2, 0)):
        if min(shape[1:3]) < 3 - 2 * pad:
            continue
        np.testing.assert_array_equal(jax.jit(cpu_ops.max_pool_3x3, static_argnums=(1, 2))(
                                          x, stride, pad),
                                      net.max_pool_3x3(x, stride, pad))


def test_cpu_ops_keep_the_variable_tree():
    # The network's numbers with cpu_ops are pytorch-fid's to 1e-4 (test_inception.py's parity
    # test runs the CPU extractor, cpu_ops on); here: the same variables, names and shapes.
    x = jnp.zeros((1, 75, 75, 3))  # the smallest input the network takes
    for logits in (False, True):
        ours = jax.eval_shape(net.FIDInceptionV3(logits=logits, cpu_ops=True).init,
                              jax.random.key(0), x)
        plain = jax.eval_shape(net.FIDInceptionV3(logits=logits).init, jax.random.key(0), x)
        assert ours == plain


class _Affine(nn.Module):  # a per-image function with two outputs, for the lanes
    @nn.compact
    def __call__(self, x):
        y = nn.Dense(3)(x.reshape(x.shape[0], -1))
        return y, y.sum(axis=1) * x.shape[0]  # the second output sees the pass's size


@pytest.mark.parametrize("micro_batch, lanes", [(4, 4), (4, 2), (3, 3), (None, 2)])
def test_lanes_split_each_micro_batch_into_independent_passes(micro_batch, lanes):
    model = _Affine()
    x = jnp.asarray(np.random.default_rng(3).normal(size=(10, 2, 2, 1)), jnp.float32)
    params = model.init(jax.random.key(0), x)
    y, s = jax.jit(features._micro_batched, static_argnums=(0, 3, 4))(model, params, x,
                                                                       micro_batch, lanes)
    ref = model.apply(params, x)[0]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)  # passes of other sizes: rounding
    per_pass = (micro_batch or 10) // lanes  # images in each pass
    np.testing.assert_allclose(s, ref.sum(axis=1) * per_pass, rtol=1e-5)


def test_extractor_chooses_cpu_ops_and_lanes_on_cpu():
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), net.variable_shapes())
    ex = features.FeatureExtractor(zeros, batch_size=4)
    assert ex.cpu_ops and ex.micro_batch == features.INCEPTION_CPU_MICRO_BATCH
    assert ex.lanes == ex.micro_batch
    plain = features.FeatureExtractor(zeros, batch_size=4, micro_batch=0, cpu_ops=False)
    assert not plain.cpu_ops and plain.micro_batch is None and plain.lanes == 1
    from gancmp.nets import forms  # noqa: PLC0415

    with forms.accelerator_forms():  # the switch the layers' tests use picks the plain network
        assert not features.FeatureExtractor(zeros, batch_size=4, micro_batch=0).cpu_ops

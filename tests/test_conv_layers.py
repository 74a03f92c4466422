"""The drop-in `layers.Conv` equals `nn.Conv(f, (k, k), (2, 2), 'SAME')` (DCGAN's D): a stride-1
convolution of the space-to-depth input, with the same parameters, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp import nets
from gancmp.nets import layers
from tests.layer_helpers import (
    Stack,
    assert_same_values_and_grads,
    close,
    random_vars,
    small_vars,
)

# --- the drop-in layers.Conv: stride-2 'SAME' convolutions via space-to-depth (DCGAN's D) ------


def _conv(cls, kernel, features):
    """One stride-2 'SAME' convolution: nn.Conv or the drop-in."""
    return cls(features, kernel, strides=(2, 2), padding="SAME")


def test_space_to_depth_kernel_taps():
    """W[u, v, (r_y, r_x, c), f] = K[2u + r_y, 2v + r_x, c, f], zero where 2u + r ≥ k."""
    k = np.arange(5 * 3 * 2 * 3, dtype=np.float32).reshape(5, 3, 2, 3) + 1
    w = np.asarray(layers.space_to_depth_kernel(jnp.asarray(k))).reshape(3, 2, 2, 2, 2, 3)
    for u in range(3):
        for v in range(2):
            for ry in range(2):
                for rx in range(2):
                    i, j = 2 * u + ry, 2 * v + rx
                    want = k[i, j] if i < 5 and j < 3 else np.zeros((2, 3))
                    np.testing.assert_array_equal(w[u, v, ry, rx], want)


@pytest.mark.parametrize("shape,features", [((2, 8, 8, 3), 4), ((3, 4, 4, 5), 6),
                                            ((2, 5, 7, 2), 3)])
def test_conv_drop_in_5x5_equals_conv_with_gradients(shape, features):
    """DCGAN D's layer: same output and input, kernel and bias gradients as nn.Conv on 8×8 (3×3
    window on 4×4×4C: convolution path), 4×4 (2×2 image under a 3×3 window: im2col path) and
    odd, non-square input sizes."""
    x = jax.random.normal(jax.random.key(1), shape)
    new, ref = _conv(layers.Conv, (5, 5), features), _conv(nn.Conv, (5, 5), features)
    b, h, w, _ = shape
    cot = jax.random.normal(jax.random.key(3), (b, -(-h // 2), -(-w // 2), features))
    assert_same_values_and_grads(new, ref, x, cot)


def test_conv_drop_in_values_for_other_kernel_sizes():
    """Forward values for other, non-square kernels (k = 1, 2, 3, 6, 7; windows of 1 to 4 taps)
    on even and odd input sizes, and inputs with extra leading axes or no batch axis."""
    for kernel, shape in (((1, 6), (2, 6, 5, 3)), ((7, 2), (3, 2, 4, 9, 3)),
                          ((3, 3), (8, 7, 2))):
        x = jax.random.normal(jax.random.key(1), shape)
        v = random_vars(jax.eval_shape(_conv(nn.Conv, kernel, 2).init, jax.random.key(0), x),
                         jax.random.key(2))
        close(_conv(layers.Conv, kernel, 2).apply(v, x), _conv(nn.Conv, kernel, 2).apply(v, x))


def test_conv_drop_in_second_order_rolled_scan_and_shard_map():
    """Reverse-over-reverse and SGD steps inside a rolled scan through two stacked 5×5 layers
    (8×8 → 4×4: convolution path, 4×4 → 2×2: im2col path), and the device-summed gradient of
    replicated params under shard_map."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    v = small_vars(Stack(nn.Conv, (5, 5), 2).init(jax.random.key(0), x))
    mesh = Mesh(np.asarray(jax.devices()[:4]), ("d",))

    def run(module):
        def penalty(v):
            gx = jax.grad(lambda x: jnp.sum(jnp.tanh(module.apply(v, x))))(x)
            return jnp.sum(gx ** 2)

        def grad(v, x):
            return jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))(v)

        def step(v, _):
            return jax.tree.map(lambda p, d: p - 0.01 * d, v, grad(v, x)), None
        sharded = jax.shard_map(grad, mesh=mesh, in_specs=(P(), P("d")), out_specs=P())
        return jax.jit(lambda v: (jax.grad(penalty)(v), jax.lax.scan(step, v, None, length=2)[0],
                                  sharded(v, x)))(v)

    jax.tree.map(close, run(Stack(layers.Conv, (5, 5), 2)), run(Stack(nn.Conv, (5, 5), 2)))


def test_conv_drop_in_rejects_other_configurations():
    x = jnp.zeros((1, 4, 4, 2))
    for kw in ({"strides": (1, 1)}, {"strides": (2, 1)}, {"padding": "VALID"},
               {"kernel_dilation": 2}, {"input_dilation": 2}, {"feature_group_count": 2}):
        with pytest.raises(NotImplementedError):
            layers.Conv(2, (5, 5), **{"strides": (2, 2), **kw}).init(jax.random.key(0), x)
    with pytest.raises(NotImplementedError):
        layers.Conv(2, (5,), strides=2).init(jax.random.key(0), jnp.zeros((1, 4, 2)))


@pytest.mark.parametrize("discriminator,spectral_norm", [("classifier", False),
                                                         ("classifier", True),
                                                         ("autoencoder", False)])
def test_dcgan_discriminators_use_the_conv_drop_in_with_the_same_tree(
        monkeypatch, discriminator, spectral_norm):
    """dcgan's D (also spectrally normalised) and BEGAN auto-encoder D: same variable tree
    (names, shapes, dtypes) as with nn.Conv; for the plain D also the same initial values and
    output."""
    import functools

    from gancmp.nets import dcgan

    assert dcgan.Conv5x5s2.func is layers.Conv
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
    _, d = nets.build("dcgan", (32, 32, 3), width=0.125, discriminator=discriminator,
                      spectral_norm=spectral_norm)
    concrete = discriminator == "classifier" and not spectral_norm

    def init_apply():
        if not concrete:
            return jax.eval_shape(lambda: d.init(jax.random.key(0), x, train=False)), None
        v = d.init(jax.random.key(0), x, train=False)
        return v, d.apply(v, x, train=False)

    v_new, y_new = init_apply()
    monkeypatch.setattr(dcgan, "Conv5x5s2", functools.partial(
        nn.Conv, **dcgan.Conv5x5s2.keywords))
    v_ref, y_ref = init_apply()
    assert "Conv_3" in v_new["params"]
    assert jax.tree.map(lambda a: (a.shape, a.dtype), v_new) == jax.tree.map(
        lambda a: (a.shape, a.dtype), v_ref)
    if concrete:
        jax.tree.map(np.testing.assert_array_equal, v_new, v_ref)
        close(y_new, y_ref)

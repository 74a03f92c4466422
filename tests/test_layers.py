"""The sub-pixel `ConvTranspose2x` equals `nn.ConvTranspose(f, (4, 4), (2, 2), 'SAME')`, and the
drop-in `layers.ConvTranspose` equals `nn.ConvTranspose(f, (k, k), (2, 2), 'SAME')` for any k: same
parameters and initial values, same output, same gradients, also vmapped over trials."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp import nets
from gancmp.nets import layers
from gancmp.nets.layers import ConvTranspose2x, subpixel_kernel


class Reference(nn.Module):
    """The straightforward layer, with the parameter tree `ConvTranspose2x` keeps."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding="SAME",
                                name="ConvTranspose_0")(x)


def _close(a, b, rtol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = max(float(np.abs(b).max()), 1e-30)
    assert float(np.abs(a - b).max()) <= rtol * scale


def _random_vars(variables, key):
    """Non-zero bias too, so the bias path is exercised."""
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)])


def _value_and_grads(module, variables, x, cotangent):
    def loss(v, x):
        return jnp.sum(module.apply(v, x) * cotangent)

    y = module.apply(variables, x)
    gv, gx = jax.grad(loss, argnums=(0, 1))(variables, x)
    return y, gv, gx


@pytest.mark.parametrize("shape,features", [((3, 7, 7, 5), 4), ((3, 14, 14, 5), 4),
                                            ((2, 4, 6, 3), 1)])
def test_equals_conv_transpose_with_gradients(shape, features):
    x = jax.random.normal(jax.random.key(1), shape)
    new, ref = ConvTranspose2x(features), Reference(features)
    v_new = new.init(jax.random.key(0), x)
    v_ref = ref.init(jax.random.key(0), x)
    # same tree, shapes and initial values
    assert jax.tree.structure(v_new) == jax.tree.structure(v_ref)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), v_new, v_ref)
    assert v_new["params"]["ConvTranspose_0"]["kernel"].shape == (4, 4, shape[-1], features)

    v = _random_vars(v_ref, jax.random.key(2))
    b, h, w, _ = shape
    cot = jax.random.normal(jax.random.key(3), (b, 2 * h, 2 * w, features))
    y, gv, gx = jax.jit(lambda v, x: _value_and_grads(new, v, x, cot))(v, x)
    y_ref, gv_ref, gx_ref = jax.jit(lambda v, x: _value_and_grads(ref, v, x, cot))(v, x)
    _close(y, y_ref)
    _close(gx, gx_ref)
    for name in ("kernel", "bias"):
        _close(gv["params"]["ConvTranspose_0"][name], gv_ref["params"]["ConvTranspose_0"][name])


def test_equals_conv_transpose_vmapped_over_trials():
    """A leading trial axis on params and inputs (how sweeps stack trials)."""
    trials, shape, features = 2, (2, 5, 5, 3), 4
    xs = jax.random.normal(jax.random.key(1), (trials, *shape))
    new, ref = ConvTranspose2x(features), Reference(features)
    vs = jax.vmap(lambda k: _random_vars(ref.init(k, xs[0]), k))(
        jax.random.split(jax.random.key(0), trials))
    cot = jax.random.normal(jax.random.key(3), (trials, 2, 10, 10, features))

    def run(module):
        return jax.jit(jax.vmap(lambda v, x, c: _value_and_grads(module, v, x, c)))(vs, xs, cot)

    (y, gv, gx), (y_ref, gv_ref, gx_ref) = run(new), run(ref)
    _close(y, y_ref)
    _close(gx, gx_ref)
    for name in ("kernel", "bias"):
        _close(gv["params"]["ConvTranspose_0"][name], gv_ref["params"]["ConvTranspose_0"][name])


def test_extra_leading_axes_like_flax():
    """Inputs with several batch axes are flattened and restored, as nn.ConvTranspose does."""
    x = jax.random.normal(jax.random.key(1), (2, 3, 5, 5, 4))
    v = _random_vars(Reference(3).init(jax.random.key(0), x), jax.random.key(2))
    _close(ConvTranspose2x(3).apply(v, x), Reference(3).apply(v, x))


def test_subpixel_kernel_taps():
    """W[u, v, c, r_y, r_x, g] = K[2u − r_y, 2v − r_x, c, g], zero outside the 4×4 kernel."""
    k = np.arange(4 * 4 * 2 * 3, dtype=np.float32).reshape(4, 4, 2, 3) + 1
    w = np.asarray(subpixel_kernel(jnp.asarray(k))).reshape(3, 3, 2, 2, 2, 3)
    for u in range(3):
        for v in range(3):
            for ry in range(2):
                for rx in range(2):
                    i, j = 2 * u - ry, 2 * v - rx
                    want = k[i, j] if 0 <= i < 4 and 0 <= j < 4 else np.zeros((2, 3))
                    np.testing.assert_array_equal(w[u, v, :, ry, rx], want)


def test_infogan_generator_deconv_shapes_are_the_papers():
    g, _ = nets.build("infogan", (28, 28, 1))
    params = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((1, 64)), train=False))
    deconvs = {name: jax.tree.map(lambda x: x.shape, p) for name, p in params["params"].items()
               if name.startswith("ConvTranspose2x")}
    assert deconvs == {
        "ConvTranspose2x_0": {"ConvTranspose_0": {"kernel": (4, 4, 128, 64), "bias": (64,)}},
        "ConvTranspose2x_1": {"ConvTranspose_0": {"kernel": (4, 4, 64, 1), "bias": (1,)}},
    }


def test_gradient_penalty_second_order_matches():
    """Reverse-over-reverse (a gradient penalty on a discriminator that contains the layer, as
    BEGAN's auto-encoder does) equals the reference. (Forward mode is not supported: custom VJP.)"""
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 3))
    v = _random_vars(Reference(4).init(jax.random.key(0), x), jax.random.key(2))

    def penalty_grad(module):
        def penalty(v):
            gx = jax.grad(lambda x: jnp.sum(jnp.tanh(module.apply(v, x))))(x)
            return jnp.sum(gx ** 2)
        return jax.jit(jax.grad(penalty))(v)

    got, want = penalty_grad(ConvTranspose2x(4)), penalty_grad(Reference(4))
    for name in ("kernel", "bias"):
        _close(got["params"]["ConvTranspose_0"][name], want["params"]["ConvTranspose_0"][name])


def test_gradients_inside_a_rolled_scan():
    """The custom-VJP path inside a `lax.scan` loop body (how multi-step calls run)."""
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 3))
    v = _random_vars(Reference(4).init(jax.random.key(0), x), jax.random.key(2))

    def two_sgd_steps(module):
        def step(v, _):
            g = jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))(v)
            return jax.tree.map(lambda p, d: p - 0.1 * d, v, g), None
        return jax.jit(lambda v: jax.lax.scan(step, v, None, length=2)[0])(v)

    got, want = two_sgd_steps(ConvTranspose2x(4)), two_sgd_steps(Reference(4))
    for name in ("kernel", "bias"):
        _close(got["params"]["ConvTranspose_0"][name], want["params"]["ConvTranspose_0"][name])


@pytest.mark.parametrize("per_device_params", [False, True])
def test_gradients_inside_shard_map(per_device_params):
    """Over 4 devices with a sharded batch: replicated params get the device-summed gradient (as
    autodiff gives); params cast to device-varying get each device's own (then pmean'd)."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.asarray(jax.devices()[:4]), ("d",))
    x = jax.random.normal(jax.random.key(1), (8, 5, 5, 3))
    v = _random_vars(Reference(4).init(jax.random.key(0), x), jax.random.key(2))

    def grads(module):
        def per_device(v, x):
            if per_device_params:
                v = jax.lax.pcast(v, "d", to="varying")
            g = jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))(v)
            return jax.lax.pmean(g, "d") if per_device_params else g
        return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("d")),
                                     out_specs=P()))(v, x)

    got, want = grads(ConvTranspose2x(4)), grads(Reference(4))
    for name in ("kernel", "bias"):
        _close(got["params"]["ConvTranspose_0"][name], want["params"]["ConvTranspose_0"][name])


# --- the drop-in layers.ConvTranspose, any kernel size (DCGAN's 5×5) ---------------------------


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


def _small_vars(variables):
    """Random params at scale 0.3 (with SGD steps of 0.01), so two stacked layers stay
    well-conditioned in float32: at scale 1 and step 0.1 the params move by ~6 per step and both
    implementations differ from a float64 reference by ~3e-4 after two steps."""
    return jax.tree.map(lambda a: 0.3 * a, _random_vars(variables, jax.random.key(2)))


def test_subpixel_kernel_taps_5x5():
    """k = 5: W_0 = (K[1], K[3], 0), W_1 = (K[0], K[2], K[4]) per axis (see the module doc)."""
    taps = {0: (1, 3, None), 1: (0, 2, 4)}
    k = np.arange(5 * 5 * 2 * 3, dtype=np.float32).reshape(5, 5, 2, 3) + 1
    w = np.asarray(subpixel_kernel(jnp.asarray(k))).reshape(3, 3, 2, 2, 2, 3)
    for u in range(3):
        for v in range(3):
            for ry in range(2):
                for rx in range(2):
                    i, j = taps[ry][u], taps[rx][v]
                    want = k[i, j] if i is not None and j is not None else np.zeros((2, 3))
                    np.testing.assert_array_equal(w[u, v, :, ry, rx], want)


def _deconv(cls, kernel, features):
    """One stride-2 'SAME' transposed convolution: nn.ConvTranspose or the drop-in."""
    return cls(features, kernel, strides=(2, 2), padding="SAME")


def test_drop_in_values_for_other_kernel_sizes():
    """Forward values for other, non-square kernels (k = 2, 3, 6, 7): the phase taps are worked
    out per kernel size, with a window that need not be 3×3 or symmetric (k = 7: padding (2, 1),
    k = 2: a 1-tap window)."""
    x = jax.random.normal(jax.random.key(1), (2, 5, 4, 3))
    for kernel in ((2, 6), (7, 3)):
        v = _random_vars(_deconv(nn.ConvTranspose, kernel, 2).init(jax.random.key(0), x),
                         jax.random.key(2))
        got, want = jax.jit(lambda v, x, kernel=kernel: (
            _deconv(layers.ConvTranspose, kernel, 2).apply(v, x),
            _deconv(nn.ConvTranspose, kernel, 2).apply(v, x)))(v, x)
        _close(got, want)


def test_drop_in_tree_and_init_like_nn_conv_transpose():
    """Two drop-ins in a compact parent are auto-named, shaped and initialised exactly as two
    nn.ConvTranspose layers."""
    x = jnp.zeros((2, 3, 4, 5))
    v_new = Stack(layers.ConvTranspose, (5, 5), 2).init(jax.random.key(0), x)
    v_ref = Stack(nn.ConvTranspose, (5, 5), 2).init(jax.random.key(0), x)
    assert jax.tree.structure(v_new) == jax.tree.structure(v_ref)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), v_new, v_ref)
    assert jax.tree.map(jnp.shape, v_new["params"]) == {
        "ConvTranspose_0": {"kernel": (5, 5, 5, 3), "bias": (3,)},
        "ConvTranspose_1": {"kernel": (5, 5, 3, 2), "bias": (2,)}}


@pytest.mark.parametrize("shape,features", [((3, 5, 5, 4), 6), ((2, 4, 6, 3), 1),
                                            ((2, 2, 1, 5), 3)])
def test_drop_in_5x5_equals_conv_transpose_with_gradients(shape, features):
    """DCGAN's layer: same output and input, kernel and bias gradients, on odd and even (also
    non-square) input sizes, and on images smaller than the 3×3 window (DCGAN's first 2×2 layer:
    the im2col path)."""
    x = jax.random.normal(jax.random.key(1), shape)
    new, ref = (_deconv(layers.ConvTranspose, (5, 5), features),
                _deconv(nn.ConvTranspose, (5, 5), features))
    v = _random_vars(ref.init(jax.random.key(0), x), jax.random.key(2))
    b, h, w, _ = shape
    cot = jax.random.normal(jax.random.key(3), (b, 2 * h, 2 * w, features))
    (y, gv, gx), (y_ref, gv_ref, gx_ref) = jax.jit(lambda v, x: (
        _value_and_grads(new, v, x, cot), _value_and_grads(ref, v, x, cot)))(v, x)
    _close(y, y_ref)
    _close(gx, gx_ref)
    for name in ("kernel", "bias"):
        _close(gv["params"][name], gv_ref["params"][name])


def test_drop_in_5x5_second_order_and_rolled_scan():
    """Reverse-over-reverse, and SGD steps inside a rolled scan, through two stacked 5×5 layers
    (the first on a 2×2 image: im2col path, the second 4×4: convolution path)."""
    x = jax.random.normal(jax.random.key(1), (2, 2, 2, 3))
    v = _small_vars(Stack(nn.ConvTranspose, (5, 5), 2).init(jax.random.key(0), x))

    def penalty_then_scan(module):
        def penalty(v):
            gx = jax.grad(lambda x: jnp.sum(jnp.tanh(module.apply(v, x))))(x)
            return jnp.sum(gx ** 2)

        def step(v, _):
            g = jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))(v)
            return jax.tree.map(lambda p, d: p - 0.01 * d, v, g), None
        return jax.jit(lambda v: (jax.grad(penalty)(v),
                                  jax.lax.scan(step, v, None, length=2)[0]))(v)

    got = penalty_then_scan(Stack(layers.ConvTranspose, (5, 5), 2))
    want = penalty_then_scan(Stack(nn.ConvTranspose, (5, 5), 2))
    jax.tree.map(_close, got, want)


def test_drop_in_5x5_gradients_inside_shard_map():
    """Replicated params over 4 devices with a sharded batch get the device-summed gradient."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.asarray(jax.devices()[:4]), ("d",))
    x = jax.random.normal(jax.random.key(1), (8, 3, 3, 3))
    v = _small_vars(_deconv(nn.ConvTranspose, (5, 5), 2).init(jax.random.key(0), x))

    def grads(module):
        def per_device(v, x):
            return jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))(v)
        return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("d")),
                                     out_specs=P()))(v, x)

    jax.tree.map(_close, grads(_deconv(layers.ConvTranspose, (5, 5), 2)),
                 grads(_deconv(nn.ConvTranspose, (5, 5), 2)))


def test_drop_in_rejects_other_configurations():
    x = jnp.zeros((1, 3, 3, 2))
    for kw in ({"strides": (1, 1)}, {"padding": "VALID"}, {"transpose_kernel": True}):
        with pytest.raises(NotImplementedError):
            layers.ConvTranspose(2, (5, 5), **{"strides": (2, 2), **kw}).init(
                jax.random.key(0), x)


def test_dcgan_generator_uses_the_drop_in_with_the_same_tree():
    """dcgan's G: 5×5 transposed convolutions named and shaped as nn.ConvTranspose made them."""
    from gancmp.nets import dcgan

    assert dcgan.Deconv5x5s2.func is layers.ConvTranspose
    g, _ = nets.build("dcgan", (32, 32, 3), width=0.125)
    params = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((1, 64)), train=False))
    deconvs = {name: jax.tree.map(lambda x: x.shape, p) for name, p in params["params"].items()
               if name.startswith("ConvTranspose")}
    assert deconvs == {
        "ConvTranspose_0": {"kernel": (5, 5, 64, 32), "bias": (32,)},
        "ConvTranspose_1": {"kernel": (5, 5, 32, 16), "bias": (16,)},
        "ConvTranspose_2": {"kernel": (5, 5, 16, 8), "bias": (8,)},
        "ConvTranspose_3": {"kernel": (5, 5, 8, 3), "bias": (3,)},
    }


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
    v = _random_vars(ref.init(jax.random.key(0), x), jax.random.key(2))
    b, h, w, _ = shape
    cot = jax.random.normal(jax.random.key(3), (b, -(-h // 2), -(-w // 2), features))
    (y, gv, gx), (y_ref, gv_ref, gx_ref) = jax.jit(lambda v, x: (
        _value_and_grads(new, v, x, cot), _value_and_grads(ref, v, x, cot)))(v, x)
    _close(y, y_ref)
    _close(gx, gx_ref)
    for name in ("kernel", "bias"):
        _close(gv["params"][name], gv_ref["params"][name])


def test_conv_drop_in_values_for_other_kernel_sizes():
    """Forward values for other, non-square kernels (k = 1, 2, 3, 6, 7; windows of 1 to 4 taps)
    on even and odd input sizes, and inputs with extra leading axes or no batch axis."""
    for kernel, shape in (((1, 6), (2, 6, 5, 3)), ((7, 2), (3, 2, 4, 9, 3)),
                          ((3, 3), (8, 7, 2))):
        x = jax.random.normal(jax.random.key(1), shape)
        v = _random_vars(jax.eval_shape(_conv(nn.Conv, kernel, 2).init, jax.random.key(0), x),
                         jax.random.key(2))
        _close(_conv(layers.Conv, kernel, 2).apply(v, x), _conv(nn.Conv, kernel, 2).apply(v, x))


def test_conv_drop_in_tree_and_init_like_nn_conv():
    """Two drop-ins in a compact parent are auto-named, shaped and initialised exactly as two
    nn.Conv layers."""
    x = jnp.zeros((2, 8, 8, 5))
    v_new = Stack(layers.Conv, (5, 5), 2).init(jax.random.key(0), x)
    v_ref = Stack(nn.Conv, (5, 5), 2).init(jax.random.key(0), x)
    assert jax.tree.structure(v_new) == jax.tree.structure(v_ref)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), v_new, v_ref)
    assert jax.tree.map(jnp.shape, v_new["params"]) == {
        "Conv_0": {"kernel": (5, 5, 5, 3), "bias": (3,)},
        "Conv_1": {"kernel": (5, 5, 3, 2), "bias": (2,)}}


def test_conv_drop_in_second_order_rolled_scan_and_shard_map():
    """Reverse-over-reverse and SGD steps inside a rolled scan through two stacked 5×5 layers
    (8×8 → 4×4: convolution path, 4×4 → 2×2: im2col path), and the device-summed gradient of
    replicated params under shard_map."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    v = _small_vars(Stack(nn.Conv, (5, 5), 2).init(jax.random.key(0), x))
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

    jax.tree.map(_close, run(Stack(layers.Conv, (5, 5), 2)), run(Stack(nn.Conv, (5, 5), 2)))


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
        _close(y_new, y_ref)

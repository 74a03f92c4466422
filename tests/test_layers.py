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
from tests.layer_helpers import (
    Stack,
    assert_same_values_and_grads,
    close,
    random_vars,
    small_vars,
    value_and_grads,
)


class Reference(nn.Module):
    """The straightforward layer, with the parameter tree `ConvTranspose2x` keeps."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding="SAME",
                                name="ConvTranspose_0")(x)


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

    v = random_vars(v_ref, jax.random.key(2))
    b, h, w, _ = shape
    cot = jax.random.normal(jax.random.key(3), (b, 2 * h, 2 * w, features))
    y, gv, gx = jax.jit(lambda v, x: value_and_grads(new, v, x, cot))(v, x)
    y_ref, gv_ref, gx_ref = jax.jit(lambda v, x: value_and_grads(ref, v, x, cot))(v, x)
    close(y, y_ref)
    close(gx, gx_ref)
    for name in ("kernel", "bias"):
        close(gv["params"]["ConvTranspose_0"][name], gv_ref["params"]["ConvTranspose_0"][name])


def test_equals_conv_transpose_vmapped_over_trials():
    """A leading trial axis on params and inputs (how sweeps stack trials)."""
    trials, shape, features = 2, (2, 5, 5, 3), 4
    xs = jax.random.normal(jax.random.key(1), (trials, *shape))
    new, ref = ConvTranspose2x(features), Reference(features)
    vs = jax.vmap(lambda k: random_vars(ref.init(k, xs[0]), k))(
        jax.random.split(jax.random.key(0), trials))
    cot = jax.random.normal(jax.random.key(3), (trials, 2, 10, 10, features))

    def run(module):
        return jax.jit(jax.vmap(lambda v, x, c: value_and_grads(module, v, x, c)))(vs, xs, cot)

    (y, gv, gx), (y_ref, gv_ref, gx_ref) = run(new), run(ref)
    close(y, y_ref)
    close(gx, gx_ref)
    for name in ("kernel", "bias"):
        close(gv["params"]["ConvTranspose_0"][name], gv_ref["params"]["ConvTranspose_0"][name])


def test_extra_leading_axes_like_flax():
    """Inputs with several batch axes are flattened and restored, as nn.ConvTranspose does."""
    x = jax.random.normal(jax.random.key(1), (2, 3, 5, 5, 4))
    v = random_vars(Reference(3).init(jax.random.key(0), x), jax.random.key(2))
    close(ConvTranspose2x(3).apply(v, x), Reference(3).apply(v, x))


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
    v = random_vars(Reference(4).init(jax.random.key(0), x), jax.random.key(2))

    def penalty_grad(module):
        def penalty(v):
            gx = jax.grad(lambda x: jnp.sum(jnp.tanh(module.apply(v, x))))(x)
            return jnp.sum(gx ** 2)
        return jax.jit(jax.grad(penalty))(v)

    got, want = penalty_grad(ConvTranspose2x(4)), penalty_grad(Reference(4))
    for name in ("kernel", "bias"):
        close(got["params"]["ConvTranspose_0"][name], want["params"]["ConvTranspose_0"][name])


def test_gradients_inside_a_rolled_scan():
    """The custom-VJP path inside a `lax.scan` loop body (how multi-step calls run)."""
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 3))
    v = random_vars(Reference(4).init(jax.random.key(0), x), jax.random.key(2))

    def two_sgd_steps(module):
        def step(v, _):
            g = jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))(v)
            return jax.tree.map(lambda p, d: p - 0.1 * d, v, g), None
        return jax.jit(lambda v: jax.lax.scan(step, v, None, length=2)[0])(v)

    got, want = two_sgd_steps(ConvTranspose2x(4)), two_sgd_steps(Reference(4))
    for name in ("kernel", "bias"):
        close(got["params"]["ConvTranspose_0"][name], want["params"]["ConvTranspose_0"][name])


@pytest.mark.parametrize("per_device_params", [False, True])
def test_gradients_inside_shard_map(per_device_params):
    """Over 4 devices with a sharded batch: replicated params get the device-summed gradient (as
    autodiff gives); params cast to device-varying get each device's own (then pmean'd)."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.asarray(jax.devices()[:4]), ("d",))
    x = jax.random.normal(jax.random.key(1), (8, 5, 5, 3))
    v = random_vars(Reference(4).init(jax.random.key(0), x), jax.random.key(2))

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
        close(got["params"]["ConvTranspose_0"][name], want["params"]["ConvTranspose_0"][name])


# --- the drop-in layers.ConvTranspose, any kernel size (DCGAN's 5×5) ---------------------------


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
        v = random_vars(_deconv(nn.ConvTranspose, kernel, 2).init(jax.random.key(0), x),
                         jax.random.key(2))
        got, want = jax.jit(lambda v, x, kernel=kernel: (
            _deconv(layers.ConvTranspose, kernel, 2).apply(v, x),
            _deconv(nn.ConvTranspose, kernel, 2).apply(v, x)))(v, x)
        close(got, want)


@pytest.mark.parametrize("drop_in,flax_layer,x_shape", [
    (layers.ConvTranspose, nn.ConvTranspose, (2, 3, 4, 5)), (layers.Conv, nn.Conv, (2, 8, 8, 5))])
def test_drop_ins_tree_and_init_like_flax(drop_in, flax_layer, x_shape):
    """Two drop-ins in a compact parent are auto-named, shaped and initialised exactly as two
    layers of the Flax class they replace."""
    x = jnp.zeros(x_shape)
    v_new = Stack(drop_in, (5, 5), 2).init(jax.random.key(0), x)
    v_ref = Stack(flax_layer, (5, 5), 2).init(jax.random.key(0), x)
    assert jax.tree.structure(v_new) == jax.tree.structure(v_ref)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), v_new, v_ref)
    name = flax_layer.__name__
    assert jax.tree.map(jnp.shape, v_new["params"]) == {
        f"{name}_0": {"kernel": (5, 5, 5, 3), "bias": (3,)},
        f"{name}_1": {"kernel": (5, 5, 3, 2), "bias": (2,)}}


@pytest.mark.parametrize("shape,features", [((3, 5, 5, 4), 6), ((2, 4, 6, 3), 1),
                                            ((2, 2, 1, 5), 3)])
def test_drop_in_5x5_equals_conv_transpose_with_gradients(shape, features):
    """DCGAN's layer: same output and input, kernel and bias gradients, on odd and even (also
    non-square) input sizes, and on images smaller than the 3×3 window (DCGAN's first 2×2 layer:
    the im2col path)."""
    x = jax.random.normal(jax.random.key(1), shape)
    new, ref = (_deconv(layers.ConvTranspose, (5, 5), features),
                _deconv(nn.ConvTranspose, (5, 5), features))
    b, h, w, _ = shape
    cot = jax.random.normal(jax.random.key(3), (b, 2 * h, 2 * w, features))
    assert_same_values_and_grads(new, ref, x, cot)


def test_drop_in_5x5_second_order_and_rolled_scan():
    """Reverse-over-reverse, and SGD steps inside a rolled scan, through two stacked 5×5 layers
    (the first on a 2×2 image: im2col path, the second 4×4: convolution path)."""
    x = jax.random.normal(jax.random.key(1), (2, 2, 2, 3))
    v = small_vars(Stack(nn.ConvTranspose, (5, 5), 2).init(jax.random.key(0), x))

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
    jax.tree.map(close, got, want)


def test_drop_in_5x5_gradients_inside_shard_map():
    """Replicated params over 4 devices with a sharded batch get the device-summed gradient."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.asarray(jax.devices()[:4]), ("d",))
    x = jax.random.normal(jax.random.key(1), (8, 3, 3, 3))
    v = small_vars(_deconv(nn.ConvTranspose, (5, 5), 2).init(jax.random.key(0), x))

    def grads(module):
        def per_device(v, x):
            return jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))(v)
        return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("d")),
                                     out_specs=P()))(v, x)

    jax.tree.map(close, grads(_deconv(layers.ConvTranspose, (5, 5), 2)),
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


@pytest.mark.parametrize("compact", [True, False])
def test_both_subpixel_forms_equal_conv_transpose_with_gradients(compact):
    """XLA:CPU's compact form (even kernels without zero taps: one (k/2)×(k/2) convolution over
    one more row and column, phases interleaved by a custom VJP) and the accelerators' 3×3 form
    both equal `lax.conv_transpose` in value, input and kernel gradients, and second order (a
    gradient penalty's), for 4×4 (phases offset by one) and 2×6 (k ≡ 2 mod 4: phases swapped)."""
    def deconv(x, k):
        return layers.conv_transpose2x(x, k, precision="highest", compact=compact)

    def ref(x, k):
        return jax.lax.conv_transpose(x, k, (2, 2), "SAME", precision="highest",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    def grads(fn, x, k):
        first = jax.grad(lambda x, k: jnp.sum(jnp.sin(fn(x, k))), (0, 1))(x, k)
        second = jax.grad(lambda x: jnp.sum(jax.grad(
            lambda k: jnp.sum(jnp.sin(fn(x, k))))(k) ** 2))(x)
        return (*first, second)

    x = jax.random.normal(jax.random.key(1), (2, 7, 5, 3))
    for shape in ((4, 4, 3, 5), (2, 6, 3, 5)):
        k = jax.random.normal(jax.random.key(2), shape)
        close(deconv(x, k), ref(x, k))
        for got, want in zip(grads(deconv, x, k), grads(ref, x, k), strict=True):
            close(got, want)

"""Output shapes and parameter counts of the paper's networks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp import nets


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (64, 64, 3)])
def test_infogan_shapes(shape):
    g, d = nets.build("infogan", shape)
    _, ae = nets.build("infogan", shape, discriminator="autoencoder")
    z = jnp.zeros((2, 64))
    g_vars = jax.eval_shape(lambda: g.init(jax.random.key(0), z, train=False))
    images = jax.eval_shape(lambda v: g.apply(v, z, train=False), g_vars)
    assert images.shape == (2, *shape)
    x = jnp.zeros((2, *shape))
    for disc in (d, ae):
        d_vars = jax.eval_shape(lambda disc=disc: disc.init(jax.random.key(0), x, train=False))
        out = jax.eval_shape(lambda v, disc=disc: disc.apply(v, x, train=False), d_vars)
        assert out.shape == (2,)


def test_infogan_parameter_counts_match_the_paper_layers():
    """compare_gan v1 for MNIST: every layer's weights and biases, BN scale and offset."""
    g, d = nets.build("infogan", (28, 28, 1))
    z, x = jnp.zeros((1, 64)), jnp.zeros((1, 28, 28, 1))
    g_params = jax.eval_shape(lambda: g.init(jax.random.key(0), z, train=False))["params"]
    d_params = jax.eval_shape(lambda: d.init(jax.random.key(0), x, train=False))["params"]
    g_expected = (64 * 1024 + 1024 + 2 * 1024            # fc1 + bn1
                  + 1024 * 6272 + 6272 + 2 * 6272        # fc2 + bn2
                  + 4 * 4 * 128 * 64 + 64 + 2 * 64       # deconv3 + bn3
                  + 4 * 4 * 64 * 1 + 1)                  # deconv4
    d_expected = (4 * 4 * 1 * 64 + 64                    # conv1
                  + 4 * 4 * 64 * 128 + 128 + 2 * 128     # conv2 + bn2
                  + 6272 * 1024 + 1024 + 2 * 1024        # fc3 + bn3
                  + 1024 + 1)                            # fc4
    assert _count(g_params) == g_expected
    assert _count(d_params) == d_expected
    _, d_no_bn = nets.build("infogan", (28, 28, 1), d_batch_norm=False)
    assert _count(jax.eval_shape(lambda: d_no_bn.init(jax.random.key(0), x, train=False))[
        "params"]) == (
        d_expected - 2 * 128 - 2 * 1024)


def test_width_multiplier_scales_channels():
    g, _ = nets.build("infogan", (28, 28, 1), width=0.25)
    g_params = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((1, 64)),
                                             train=False))["params"]
    kernels = sorted(x.shape for x in jax.tree.leaves(g_params) if x.ndim > 1)
    assert (64, 256) in kernels and (256, 32 * 7 * 7) in kernels


def test_mlp_shapes():
    g, d = nets.build("mlp", (2,))
    _, ae = nets.build("mlp", (2,), discriminator="autoencoder")
    z = jnp.zeros((5, 16))
    pts = g.apply(g.init(jax.random.key(0), z, train=False), z, train=False)
    assert pts.shape == (5, 2)
    for disc in (d, ae):
        assert disc.apply(disc.init(jax.random.key(0), pts, train=False), pts,
                          train=False).shape == (5,)


def test_supports():
    assert nets.supports("infogan", (28, 28, 1)) and not nets.supports("infogan", (30, 30, 1))
    assert nets.supports("mlp", (2,)) and not nets.supports("mlp", (28, 28, 1))


def test_a_registered_architecture_is_built_and_checked_like_the_others(monkeypatch):
    monkeypatch.setattr(nets, "_REGISTRY", dict(nets._REGISTRY))  # leave the real one alone
    mlp = nets.get("mlp")
    tiny = nets.Arch("tiny", "3-D points", takes=lambda s: s == (3,),
                     generator=mlp.generator, classifier=mlp.classifier)
    assert nets.register(tiny) is tiny and nets.names()[-1] == "tiny"
    assert nets.supports("tiny", (3,)) and not nets.supports("tiny", (2,))
    g, d = nets.build("tiny", (3,), width=0.25)
    assert (g.out_dim, g.width, d.width, d.batch_norm) == (3, 32, 32, True)
    with pytest.raises(ValueError, match="tiny.*no auto-encoder.*infogan, mlp, dcgan$"):
        nets.build("tiny", (3,), discriminator="autoencoder")
    with pytest.raises(ValueError, match="tiny.*no spectrally normalised"):
        nets.build("tiny", (3,), spectral_norm=True)
    with pytest.raises(ValueError, match="already registered"):
        nets.register(dataclasses.replace(tiny, data="other"))


def test_dense_kernel_gradient_in_its_layout_equals_flax_dense():
    """`nets.common.Dense` (XLA:CPU: the kernel gradient as one [C, O] product, `nets.dense`)
    gives nn.Dense's values and gradients: plain, vmapped over trials, and inside shard_map with
    replicated params (the device-summed gradient autodiff gives) or per-device ones."""
    import flax.linen as nn  # noqa: PLC0415
    from jax.sharding import Mesh  # noqa: PLC0415
    from jax.sharding import PartitionSpec as P  # noqa: PLC0415

    from gancmp.nets import forms  # noqa: PLC0415
    from gancmp.nets.common import Dense  # noqa: PLC0415

    x = jax.random.normal(jax.random.key(0), (8, 6))
    params = Dense(5).init(jax.random.key(1), x)["params"]

    def grads(module, p, x):
        return jax.grad(lambda p, x: jnp.sum(jnp.sin(module.apply({"params": p}, x))),
                        (0, 1))(p, x)

    def same(a, b):  # the same products, summed in XLA's order: float rounding apart
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6), a, b)

    ours, flax_dense = Dense(5), nn.Dense(5)
    same(grads(ours, params, x), grads(flax_dense, params, x))
    def jaxpr(module):  # a new function each time: jit's trace cache ignores the forms
        return str(jax.make_jaxpr(lambda p, x: grads(module, p, x))(params, x))

    assert "transpose" in jaxpr(flax_dense) and "transpose" not in jaxpr(ours)
    with forms.accelerator_forms():  # the accelerators' program: autodiff's, as nn.Dense
        assert jaxpr(ours) == jaxpr(flax_dense)
        same(grads(ours, params, x), grads(flax_dense, params, x))
    stacked = jax.tree.map(lambda v: jnp.stack([v, 2 * v]), params)
    same(jax.vmap(lambda p: grads(ours, p, x))(stacked),
                 jax.vmap(lambda p: grads(flax_dense, p, x))(stacked))
    mesh = Mesh(np.asarray(jax.devices()[:4]), ("d",))
    for per_device in (False, True):
        def sharded(module, per_device=per_device):
            def body(p, x):
                p = jax.lax.pcast(p, "d", to="varying") if per_device else p
                g = grads(module, p, x)[0]
                return jax.lax.pmean(g, "d") if per_device else g
            return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(), P("d")),
                                         out_specs=P()))(params, x)
        same(sharded(ours), sharded(flax_dense))

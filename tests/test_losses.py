"""Losses against closed forms worked out by hand, and generic properties of every registered loss
(a newly registered loss is picked up here with no test edits)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp import losses, methods

LN2 = math.log(2.0)
ZERO = jnp.zeros(8)


@pytest.mark.parametrize(
    "name, d_expected, g_expected",
    [
        # at logits 0: σ = ½, so −log σ = −log(1 − σ) = ln 2
        ("ns", 2 * LN2, LN2),
        ("mm", 2 * LN2, -LN2),
        # ½(½ − 1)² + ½(½)² = ⅛ + ⅛;  ½(½ − 1)² = ⅛
        ("ls", 0.25, 0.125),
        # relu(1 − 0) + relu(1 + 0) = 2;  −E ℓf = 0
        ("hinge", 2.0, 0.0),
        ("rsgan", LN2, LN2),
        ("ragan", 2 * LN2, 2 * LN2),
        ("wgan", 0.0, 0.0),
    ],
)
def test_losses_at_zero_logits(name, d_expected, g_expected):
    d_loss, g_loss = losses.get(name)(ZERO, ZERO)
    np.testing.assert_allclose(d_loss, d_expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g_loss, g_expected, rtol=1e-6, atol=1e-7)


def test_wgan_closed_form():
    d_loss, g_loss = losses.get("wgan")(jnp.ones(4), -jnp.ones(4))
    assert float(d_loss) == pytest.approx(-2.0)
    assert float(g_loss) == pytest.approx(1.0)


def test_ns_and_ls_at_other_logits():
    real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
    sig = lambda x: 1 / (1 + np.exp(-np.asarray(x)))  # noqa: E731
    d, g = losses.get("ns")(real, fake)
    d_ref = np.mean(-np.log(sig(real))) + np.mean(-np.log(1 - sig(fake)))
    np.testing.assert_allclose(d, d_ref, rtol=1e-6)
    np.testing.assert_allclose(g, np.mean(-np.log(sig(fake))), rtol=1e-6)
    d, g = losses.get("ls")(real, fake)
    np.testing.assert_allclose(
        d, 0.5 * np.mean((sig(real) - 1) ** 2) + 0.5 * np.mean(sig(fake) ** 2), rtol=1e-6)
    np.testing.assert_allclose(g, 0.5 * np.mean((sig(fake) - 1) ** 2), rtol=1e-6)


def test_began_closed_form_and_k_update():
    real, fake = jnp.array([0.2, 0.4]), jnp.array([0.5, 0.7])  # L(x) = 0.3, L(G(z)) = 0.6
    d, g, k = losses.get("began")(real, fake, 0.5, gamma=0.5, lambda_k=0.1)
    assert float(d) == pytest.approx(0.3 - 0.5 * 0.6)
    assert float(g) == pytest.approx(0.6)
    assert float(k) == pytest.approx(0.5 + 0.1 * (0.5 * 0.3 - 0.6))
    # unclipped (compare_gan v1) k can leave [0, 1]; the clipped variant cannot
    _, _, k = losses.get("began")(real, fake, 0.0, gamma=0.5, lambda_k=1.0)
    assert float(k) == pytest.approx(-0.45)
    _, _, k = losses.get("began_clipped")(real, fake, 0.0, gamma=0.5, lambda_k=1.0)
    assert float(k) == 0.0


def test_began_starts_at_k_zero_through_the_registry():
    spec = losses.spec("began")
    assert spec.stateful and spec.init_state == 0.0 and spec.output == "energy"
    d, g, k = losses.apply("began", jnp.array([0.3]), jnp.array([0.6]))
    assert float(d) == pytest.approx(0.3)  # k₀ = 0: D = L(x)
    assert float(k) == pytest.approx(1e-3 * (0.75 * 0.3 - 0.6))


def _scalar_losses(name, real, fake):
    d_loss, g_loss, _ = losses.apply(name, real, fake)
    return d_loss, g_loss


@pytest.mark.parametrize("name", losses.names())
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_every_loss_is_finite_with_finite_gradients(name, scale):
    key = jax.random.key(0)
    real = scale * jax.random.normal(key, (16,))
    fake = scale * jax.random.normal(jax.random.fold_in(key, 1), (16,))
    if losses.spec(name).output == "energy":  # reconstruction errors are ≥ 0
        real, fake = jnp.abs(real), jnp.abs(fake)
    values = _scalar_losses(name, real, fake)
    grads = [jax.grad(lambda r, f, i=i: _scalar_losses(name, r, f)[i], argnums=(0, 1))(real, fake)
             for i in range(2)]
    assert all(np.isfinite(v) for v in values)
    assert all(np.all(np.isfinite(g)) for gs in grads for g in gs)


# Least squares on raw outputs pulls D's outputs towards its targets, past which its loss grows
# again by design (ls_raw: ℓr > 1 or ℓf < 0; ralsgan: ℓr − E ℓf > 1 or ℓf − E ℓr < −1); they are
# held to the same signs before their targets: ℓr in (−1, 0), ℓf in (0, 1).
TARGETED = ("ls_raw", "ralsgan")


@pytest.mark.parametrize("name", losses.names())
def test_every_d_loss_does_not_increase_as_d_gets_more_right(name):
    """D's loss must not grow as real outputs look more real or fake ones more fake: for logits,
    ∂L_D/∂ℓr ≤ 0 and ∂L_D/∂ℓf ≥ 0 wherever non-zero (signs flip for energies)."""
    key = jax.random.key(1)
    sign = -1.0 if losses.spec(name).output == "energy" else 1.0
    for trial in range(5):
        k1, k2 = jax.random.split(jax.random.fold_in(key, trial))
        real, fake = 3 * jax.random.normal(k1, (32,)), 3 * jax.random.normal(k2, (32,))
        if name in TARGETED:
            real, fake = -jax.random.uniform(k1, (32,)), jax.random.uniform(k2, (32,))
        if sign < 0:
            real, fake = jnp.abs(real), jnp.abs(fake)
        state = losses.spec(name).init_state
        hparams = {} if state is None else {"lambda_k": 0.0}
        if state is not None:
            state = 0.5  # a k in (0, 1) so that the fake term has a non-zero gradient

        def d_loss(r, f, state=state, hparams=hparams):
            return losses.apply(name, r, f, state, hparams)[0]

        g_real, g_fake = jax.grad(d_loss, argnums=(0, 1))(real, fake)
        assert np.all(sign * np.asarray(g_real) <= 1e-7), name
        assert np.all(sign * np.asarray(g_fake) >= -1e-7), name
        assert np.any(np.asarray(g_real) != 0) or np.any(np.asarray(g_fake) != 0), name


def test_stable_at_extreme_logits():
    big = jnp.full(4, 100.0)
    for name in ("ns", "mm", "ragan", "rsgan"):
        d, g = losses.get(name)(big, -big)
        assert np.isfinite(d) and np.isfinite(g)
        assert float(d) == pytest.approx(0.0, abs=1e-6)  # D is right with certainty


def test_registry_errors_name_the_known_losses():
    with pytest.raises(KeyError, match="registered: .*ns"):
        losses.get("nope")


def test_every_method_names_a_registered_loss():
    for name in methods.names():
        m = methods.get(name)
        assert m.loss in losses.names()
    assert set(methods.PAPER_METHODS) <= set(methods.names())

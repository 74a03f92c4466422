"""The variants of losses and penalties that other libraries' users expect (TF-GAN, StudioGAN,
Jolicoeur-Martineau's relativistic losses), against values worked out by hand in the comments,
with their gradients where a variant changes them."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp import losses, methods, penalties

LN2, LN3, LN4 = math.log(2.0), math.log(3.0), math.log(4.0)


def _grads(fn, real, fake, which=0):
    """(∂/∂ℓr, ∂/∂ℓf) of output `which` (0: D's loss, 1: G's) of `fn(real, fake)`."""
    return jax.grad(lambda r, f: fn(r, f)[which], argnums=(0, 1))(real, fake)


def _smoothed(name, s):
    return lambda r, f: losses.get(name)(r, f, label_smoothing=s)


@pytest.mark.parametrize("name", ["ns", "mm"])
def test_one_sided_label_smoothing_tf_gan_convention(name):
    # s = 0.25 → real label y = 1 − s/2 = 0.875 (TF-GAN smooths towards ½). At ℓr = ln 3
    # (σ = ¾): softplus(−ln 3) = ln(4/3), softplus(ln 3) = ln 4, so the real term is
    # 0.875·ln(4/3) + 0.125·ln 4; the fake term at ℓf = 0 is ln 2.
    real, fake = jnp.full(2, LN3), jnp.zeros(2)
    d, g = losses.get(name)(real, fake, label_smoothing=0.25)
    np.testing.assert_allclose(d, 0.875 * math.log(4 / 3) + 0.125 * LN4 + LN2, rtol=1e-6)
    np.testing.assert_allclose(g, LN2 if name == "ns" else -LN2, rtol=1e-6)  # G unchanged
    # ∂D/∂ℓr_i = (σ(ℓr_i) − y)/B = (0.75 − 0.875)/2, against (0.75 − 1)/2 without smoothing
    g_real, g_fake = _grads(_smoothed(name, 0.25), real, fake)
    np.testing.assert_allclose(g_real, [-0.0625, -0.0625], rtol=1e-5)
    np.testing.assert_allclose(g_fake, [0.25, 0.25], rtol=1e-5)  # σ(0)/B, as without
    g_real, _ = _grads(losses.get(name), real, fake)
    np.testing.assert_allclose(g_real, [-0.125, -0.125], rtol=1e-5)
    # s = 1: y = ½, D's real term is ½(softplus(−ℓ) + softplus(ℓ)) = ½(ln(4/3) + ln 4)
    d, _ = losses.get(name)(real, fake, label_smoothing=1.0)
    np.testing.assert_allclose(d, 0.5 * (math.log(4 / 3) + LN4) + LN2, rtol=1e-6)


def test_label_smoothing_zero_is_v1_bit_for_bit_and_bad_values_name_the_option():
    real = jax.random.normal(jax.random.key(0), (16,))
    fake = jax.random.normal(jax.random.key(1), (16,))
    for name in ("ns", "mm"):
        a, b = losses.get(name)(real, fake), losses.get(name)(real, fake, label_smoothing=0.0)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        with pytest.raises(ValueError, match=r"label_smoothing: must be in \[0, 1\]"):
            losses.get(name)(real, fake, label_smoothing=1.5)


def test_least_squares_on_raw_outputs():
    # ℓr = [3, 1], ℓf = [2, 0]: D = ½·mean((3−1)², 0²) + ½·mean(2², 0²) = 1 + 1 = 2,
    # G = ½·mean((2−1)², (0−1)²) = ½
    real, fake = jnp.array([3.0, 1.0]), jnp.array([2.0, 0.0])
    d, g = losses.get("ls_raw")(real, fake)
    assert (float(d), float(g)) == pytest.approx((2.0, 0.5))
    raw = losses.ls(real, fake, raw=True)
    assert all(np.array_equal(a, b) for a, b in zip(raw, (d, g), strict=True))
    # ∂D/∂ℓr = (ℓr − 1)/B = [1, 0], ∂D/∂ℓf = ℓf/B = [1, 0], ∂G/∂ℓf = (ℓf − 1)/B = [½, −½]
    g_real, g_fake = _grads(losses.get("ls_raw"), real, fake)
    np.testing.assert_allclose(g_real, [1.0, 0.0])
    np.testing.assert_allclose(g_fake, [1.0, 0.0])
    np.testing.assert_allclose(_grads(losses.get("ls_raw"), real, fake, 1)[1], [0.5, -0.5])
    # at zero outputs: D = ½·1 + 0, G = ½·1 (the sigmoid `ls` gives ¼ and ⅛ there)
    d, g = losses.get("ls_raw")(jnp.zeros(4), jnp.zeros(4))
    assert (float(d), float(g)) == pytest.approx((0.5, 0.5))


# ℓr = [2, 0], ℓf = [1, −½]: E ℓr = 1, E ℓf = ¼, so r = ℓr − E ℓf = [1.75, −0.25] and
# f = ℓf − E ℓr = [0, −1.5] (no example at a hinge's kink).
REAL, FAKE = jnp.array([2.0, 0.0]), jnp.array([1.0, -0.5])


def test_relativistic_average_hinge():
    # D = mean relu(1 − r) + mean relu(1 + f) = mean(0, 1.25) + mean(1, 0) = 0.625 + 0.5
    # G = mean relu(1 + r) + mean relu(1 − f) = mean(2.75, 0.75) + mean(1, 2.5) = 1.75 + 1.75
    d, g = losses.get("rahinge")(REAL, FAKE)
    assert (float(d), float(g)) == pytest.approx((1.125, 3.5))
    # active hinges a = 1[1 − r > 0] = [0, 1], b = 1[1 + f > 0] = [1, 0]; with B = 2:
    # ∂D/∂ℓr_i = −a_i/B − mean(b)/B = [−0.25, −0.75]; ∂D/∂ℓf_j = b_j/B + mean(a)/B = [0.75, 0.25]
    g_real, g_fake = _grads(losses.get("rahinge"), REAL, FAKE)
    np.testing.assert_allclose(g_real, [-0.25, -0.75])
    np.testing.assert_allclose(g_fake, [0.75, 0.25])
    d, g = losses.get("rahinge")(jnp.zeros(4), jnp.zeros(4))  # relu(1) + relu(1) each
    assert (float(d), float(g)) == pytest.approx((2.0, 2.0))


def test_relativistic_average_least_squares():
    # D = mean (r − 1)² + mean (f + 1)² = mean(0.5625, 1.5625) + mean(1, 0.25) = 1.0625 + 0.625
    # G = mean (r + 1)² + mean (f − 1)² = mean(7.5625, 0.5625) + mean(1, 6.25) = 4.0625 + 3.625
    d, g = losses.get("ralsgan")(REAL, FAKE)
    assert (float(d), float(g)) == pytest.approx((1.6875, 7.6875))
    # B = 2: ∂D/∂ℓr_i = (r_i − 1) − mean(f + 1) = [0.75, −1.25] − 0.25 = [0.5, −1.5];
    # ∂D/∂ℓf_j = (f_j + 1) − mean(r − 1) = [1, −0.5] + 0.25 = [1.25, −0.25]
    g_real, g_fake = _grads(losses.get("ralsgan"), REAL, FAKE)
    np.testing.assert_allclose(g_real, [0.5, -1.5])
    np.testing.assert_allclose(g_fake, [1.25, -0.25])


def test_relativistic_variants_are_methods():
    for method, loss in [("RAHINGE", "rahinge"), ("RALSGAN", "ralsgan")]:
        assert methods.get(method).loss == loss and methods.get(method).penalty is None


W = jnp.array([[[0.6]], [[0.8]]])  # [2, 1, 1], ‖W‖ = 1
SHAPE = (4, 2, 1, 1)


def linear_d(w):
    return lambda x: jnp.sum(x * w, axis=(1, 2, 3))


def _pair(seed=0):
    return (jax.random.uniform(jax.random.key(seed), SHAPE),
            jax.random.uniform(jax.random.key(seed + 1), SHAPE))


def test_wgan_gp_target_eps_and_one_sided():
    real, fake = _pair()
    key = jax.random.key(2)
    # ∇D = w everywhere: s = sqrt(eps + ‖w‖²). ‖w‖ = 3, eps = 0, target 2: (3/2 − 1)² = ¼
    pen = penalties.wgan_gp(linear_d(3 * W), real, fake, key, target=2.0, eps=0.0)
    np.testing.assert_allclose(pen, 0.25, rtol=1e-6)
    # the default eps (v1's 1e-4) with target 2: (sqrt(9.0001)/2 − 1)²
    pen = penalties.wgan_gp(linear_d(3 * W), real, fake, key, target=2.0)
    np.testing.assert_allclose(pen, (np.sqrt(9.0001) / 2 - 1) ** 2, rtol=1e-6)
    # one-sided: ‖w‖ = 3 > 1 is penalised as two-sided, (3 − 1)² = 4; ‖w‖ = ½ < 1 is not (0,
    # against (½ − 1)² = ¼ two-sided)
    pen = penalties.wgan_gp(linear_d(3 * W), real, fake, key, one_sided=True, eps=0.0)
    np.testing.assert_allclose(pen, 4.0, rtol=1e-6)
    for one_sided, want in ((True, 0.0), (False, 0.25)):
        pen = penalties.wgan_gp(linear_d(0.5 * W), real, fake, key, one_sided=one_sided, eps=0.0)
        np.testing.assert_allclose(pen, want, atol=1e-7)
    # its gradient in w: 2(‖w‖ − 1)·w/‖w‖ = −W at w = ½W two-sided, 0 one-sided
    def pen_of(w, one_sided):
        return penalties.wgan_gp(linear_d(w), real, fake, key, one_sided=one_sided, eps=0.0)
    np.testing.assert_allclose(jax.grad(pen_of)(0.5 * W, False), -W, rtol=1e-5)
    np.testing.assert_allclose(jax.grad(pen_of)(0.5 * W, True), 0 * W, atol=1e-7)
    with pytest.raises(ValueError, match="wgan_gp target: must be > 0"):
        penalties.wgan_gp(linear_d(W), real, fake, key, target=0.0)


def test_dragan_on_logits():
    # w = 12·e₀ and a constant real batch (std 0: x̃ = x = 0), D(x̃) = 0. On logits ∇D = w, so
    # with eps = 0 s = 12 and (12 − 1)² = 121; on σ(D) (v1) ∇σ(D) = ¼·w, s = sqrt(1e-4 + 9)
    w = 12 * jnp.array([[[1.0]], [[0.0]]])
    real = jnp.zeros(SHAPE)
    key = jax.random.key(3)
    pen = penalties.dragan(linear_d(w), real, real, key, on_logits=True, eps=0.0)
    np.testing.assert_allclose(pen, 121.0, rtol=1e-6)
    pen = penalties.dragan(linear_d(w), real, real, key, on_logits=True)
    np.testing.assert_allclose(pen, (np.sqrt(144.0001) - 1) ** 2, rtol=1e-6)
    pen = penalties.dragan(linear_d(w), real, real, key)
    np.testing.assert_allclose(pen, (np.sqrt(9.0001) - 1) ** 2, rtol=1e-5)


def test_r1_scale_and_r2_on_fakes():
    # D(x) = Σ x² per example: ∇D = 2x, Σ(∇D)² = 4‖x‖². Real = 1 everywhere (‖x‖² = 2) → 8;
    # fake = 2 everywhere (‖x‖² = 8) → 32
    d = lambda x: jnp.sum(jnp.square(x), axis=(1, 2, 3))  # noqa: E731
    real, fake = jnp.ones(SHAPE), 2 * jnp.ones(SHAPE)
    key = jax.random.key(4)
    np.testing.assert_allclose(penalties.r1(d, real, fake, key), 8.0, rtol=1e-6)
    np.testing.assert_allclose(penalties.r1(d, real, fake, key, on="fake"), 32.0, rtol=1e-6)
    # StudioGAN's ½: 4 and 16; linear 3W: Σ(∇D)² = 9 → 4.5
    np.testing.assert_allclose(penalties.r1(d, real, fake, key, scale=0.5), 4.0, rtol=1e-6)
    np.testing.assert_allclose(penalties.r1(d, real, fake, key, scale=0.5, on="fake"), 16.0,
                               rtol=1e-6)
    np.testing.assert_allclose(penalties.r1(linear_d(3 * W), real, fake, key, scale=0.5), 4.5,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="r1 on: must be one of real, fake"):
        penalties.r1(d, real, fake, key, on="both")

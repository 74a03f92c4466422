"""Stride-2 'SAME' transposed convolutions with the parameters of `nn.ConvTranspose`, computed as
sub-pixel convolutions.

`ConvTranspose(f, (k, k), strides=(2, 2), padding="SAME")` is a drop-in subclass of
`nn.ConvTranspose` (same fields, parameters 'kernel' [k, k, C, f] (not flipped) and 'bias' [f],
same initialisers, same auto-name 'ConvTranspose_<i>' in a compact parent) that returns the same
output for any kernel size k, but computes it with one ordinary stride-1 m×m convolution with 4·f
output channels followed by depth-to-space. `ConvTranspose2x(f)` is the older 4×4 wrapper (params
nested under 'ConvTranspose_0'), kept for the infogan/sndcgan parameter trees. Why: XLA:CPU
computes the *kernel gradient* of a transposed convolution about 15× slower than its forward pass,
while the gradients of an ordinary convolution are fast; for a 7×7×128 → 14×14×64 4×4 layer at
batch 64 forward + gradient drops from ~166 ms to ~28 ms. On accelerators both forms cost about
the same.

The mapping (one spatial axis; the two axes are independent). `lax.conv_transpose` with padding
SAME and stride 2 dilates x (length H) to length 2H − 1, pads it with a = `_same_pad_before(k)`
zeros in front (a = 2 for k = 4, a = 3 for k = 5; the total padding makes the output length 2H)
and correlates with the un-flipped kernel K[t], t = 0..k−1:

    y[o] = Σ_t K[t] · x[(o + t − a) / 2]      (only terms with o + t − a even; x[i] = 0 outside)

Splitting the output into its phases o = 2p + r (r = 0, 1), tap t of phase r reads x[p + d] with
d = (r + t − a) / 2. Over both phases d runs over −lo..hi; with the window u = d + lo = 0..m−1
(m = lo + hi + 1) each phase is a stride-1 correlation with padding (lo, hi),
z_r[p] = Σ_u W_r[u] · x[p + u − lo], with taps W_r[u] = K[2(u − lo) + a − r] (zero when that index
is outside 0..k−1). For k = 4 (a = 2, lo = hi = 1, m = 3):

    y[2p]     = K[0] · x[p − 1] + K[2] · x[p]                 W_0 = (K[0], K[2], 0)
    y[2p + 1] = K[1] · x[p]     + K[3] · x[p + 1]             W_1 = (0, K[1], K[3])

and for k = 5 (a = 3, lo = hi = 1, m = 3):

    y[2p]     = K[1] · x[p − 1] + K[3] · x[p]                 W_0 = (K[1], K[3], 0)
    y[2p + 1] = K[0] · x[p − 1] + K[2] · x[p] + K[4] · x[p + 1]   W_1 = (K[0], K[2], K[4]).

In 2-D the four phases (r_y, r_x) become 4·f output channels of one m×m convolution with kernel
W[u, v, c, r_y, r_x, g] = K[2(u − lo) + a − r_y, 2(v − lo) + a − r_x, c, g], and depth-to-space
interleaves them: y[b, 2p + r_y, 2q + r_x, g] = z[b, p, q, (r_y, r_x, g)] + bias[g]. The 3×3
window holds 4·4 = 16 (k = 4) or 5·5 = 25 (k = 5) non-zero taps of 4·9 = 36, so it multiplies
2.25× (1.44×) the multiply-adds of the transposed convolution, but through XLA's fast convolution
path in both directions. W is built from K with a pad, strided slices, stacks and a transpose, so
gradients flow to the k×k kernel exactly.

On XLA:CPU an even kernel skips the zero taps (`_compact_subpixel`, issue 28): for k = 4 each
phase reads x at offsets (−1, 0) (r = 0) or (0, +1) (r = 1), so one 2×2 convolution with
W'[u', r] = K[2u' + r] (a reshape of K), computed over one more row and column than x, gives
every phase, phase r of output p being that convolution's output at p + r; a custom VJP
interleaves the phases and places their gradients in one copy each. 16 multiply-adds per output
instead of 36; measured on the InfoGAN G's two 4×4 layers. Accelerators keep the 3×3 form.

The m×m convolution has a custom VJP (`conv_same`) whose two gradient convolutions are written in
XLA:CPU's canonical layout, so they stay fast inside a rolled `lax.scan` body too, where XLA:CPU
does not canonicalise convolutions (measured: fwd + grad of the 4×4 layer above inside a 2-step
rolled scan 25 ms instead of ~3 s). Reverse-over-reverse (gradient penalties) works; forward-mode
(`jax.jvp`, `jax.jacfwd`) through this layer does not. An image smaller than the window (DCGAN's
first layer, 2×2) is convolved as an im2col matmul instead: XLA:CPU's convolution takes a slow
generic path there (2×2×512 → 2×2×1024 at batch 64: 1.6 s instead of 6 ms).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

from gancmp.nets.forms import cpu_forms


def _same_pad_before(k: int, stride: int = 2) -> int:
    """Zeros `lax.conv_transpose(..., padding='SAME')` puts in front of the stride-dilated input
    (jax's `_conv_transpose_padding`): total k + s − 2, split with the larger half in front,
    except k − 1 in front when s > k − 1."""
    pad_len = k + stride - 2
    return k - 1 if stride > k - 1 else -(-pad_len // 2)


@functools.cache
def subpixel_taps(k: int) -> tuple[int, int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """For a stride-2 'SAME' transposed convolution with a length-k kernel along one axis:
    (lo, hi, taps), the window padding and, per phase r = 0, 1, the kernel tap read at window
    position u = 0..lo + hi (−1: none), i.e. y[2p + r] = Σ_u K[taps[r][u]] · x[p + u − lo].
    Worked out by enumerating which input offset d = (r + t − a) / 2 each tap t hits."""
    a = _same_pad_before(k)
    hits = {(r, (r + t - a) // 2): t for r in (0, 1) for t in range(k) if (r + t - a) % 2 == 0}
    lo = -min(d for _, d in hits)
    hi = max(d for _, d in hits)
    taps = tuple(tuple(hits.get((r, u - lo), -1) for u in range(lo + hi + 1)) for r in (0, 1))
    return lo, hi, taps


def _phase_axis(kernel: jax.Array, axis: int) -> jax.Array:
    """Replaces kernel axis `axis` (length k) by two axes (u, r) [m, 2] holding the phase taps
    of `subpixel_taps(k)` (zeros where a phase has no tap)."""
    k = kernel.shape[axis]
    lo, hi, taps = subpixel_taps(k)
    m = lo + hi + 1
    # taps[r][u] = 2u + first_r where in range: a strided slice of the zero-padded kernel
    first = [taps[r][u] - 2 * u for r in (0, 1) for u in range(m) if taps[r][u] >= 0]
    pad_lo = max(0, -min(first))
    pad_hi = max(0, max(first) + 2 * (m - 1) - (k - 1))
    pads = [(0, 0)] * kernel.ndim
    pads[axis] = (pad_lo, pad_hi)
    kp = jnp.pad(kernel, pads)
    phases = []
    for r in (0, 1):
        t0 = next(taps[r][u] - 2 * u for u in range(m) if taps[r][u] >= 0) + pad_lo
        phases.append(lax.slice_in_dim(kp, t0, t0 + 2 * (m - 1) + 1, stride=2, axis=axis))
    return jnp.stack(phases, axis=axis + 1)


def subpixel_kernel(kernel: jax.Array) -> jax.Array:
    """The k_y×k_x stride-2 'SAME' transposed-convolution kernel [k_y, k_x, C, F] as the
    equivalent m_y×m_x convolution kernel [m_y, m_x, C, 4·F] (3×3 for k = 4, 5), output channels
    ordered (r_y, r_x, g): W[u, v, c, r_y, r_x, g] = K[taps_y[r_y][u], taps_x[r_x][v], c, g] with
    `subpixel_taps`, zero where a phase has no tap. (k = 4: K[2u − r_y, 2v − r_x];
    k = 5: K[2u + 1 − r_y, 2v + 1 − r_x].)"""
    _, _, c, f = kernel.shape
    w = _phase_axis(_phase_axis(kernel, 0), 2)                      # [u, r_y, v, r_x, C, F]
    my, mx = w.shape[0], w.shape[2]
    return w.transpose(0, 2, 4, 1, 3, 5).reshape(my, mx, c, 4 * f)


def subpixel_padding(kernel_shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (lo, hi) padding per spatial axis of the `subpixel_kernel` convolution."""
    return tuple(subpixel_taps(k)[:2] for k in kernel_shape[:2])


@functools.cache
def compact_taps(k: int) -> tuple[tuple[int, int], tuple[tuple[int, ...], ...]] | None:
    """For an even k, where both phases of `subpixel_taps(k)` have k/2 taps at consecutive window
    positions: (starts, taps), phase r's first window position s_r and its taps in order, so
    that y[2p + r] = Σ_{u'} K[taps[r][u']] · x[p + s_r + u' − lo]; None otherwise (odd k). For
    k = 4: starts (0, 1), taps ((0, 2), (1, 3))."""
    _, _, taps = subpixel_taps(k)
    used = [[u for u, t in enumerate(phase) if t >= 0] for phase in taps]
    if len(used[0]) != len(used[1]) or any(u != list(range(u[0], u[0] + len(u))) for u in used):
        return None
    return (used[0][0], used[1][0]), tuple(tuple(taps[r][u] for u in used[r]) for r in (0, 1))


def _compact_subpixel(x: jax.Array, kernel: jax.Array, precision) -> jax.Array:
    """`conv_transpose2x` for even kernels without the sub-pixel form's zero taps (XLA:CPU's
    path): one (k_y/2)×(k_x/2) convolution with 4·F output channels (r_y, r_x, g) over one more
    row and column than the input, z'[q] = Σ_{u'} W'[u', r] · x[q + u' − lo], phase r of output
    row p being z'[p + s_r] (`compact_taps`; the same along columns). For k = 4 that multiplies
    16 taps per output instead of the 3×3 form's 36 (20 of them zero), on (H+1)(W+1) positions
    instead of H·W. Same products as `lax.conv_transpose`. x [B, H, W, C], kernel
    [k_y, k_x, C, F] → [B, 2H, 2W, F] (no bias)."""
    (sy, ty), (sx, tx) = (compact_taps(k) for k in kernel.shape[:2])
    (lo_y, _), (lo_x, _) = subpixel_padding(kernel.shape)
    w = _phase_pairs(_phase_pairs(kernel, 0, ty), 2, tx)            # [u', r_y, v', r_x, C, F]
    my, mx, c, f = w.shape[0], w.shape[2], w.shape[4], w.shape[5]
    w = w.transpose(0, 2, 4, 1, 3, 5).reshape(my, mx, c, 4 * f)
    padding = ((lo_y, my - 1 + max(sy) - lo_y), (lo_x, mx - 1 + max(sx) - lo_x))
    z = conv_same(x, w, padding, precision)                          # [B, H + s, W + s, 4·F]
    return _interleave_phases(z, (sy, sx), x.shape[1:3])


def _phase_pairs(kernel: jax.Array, axis: int, taps: tuple[tuple[int, ...], ...]) -> jax.Array:
    """Kernel axis `axis` (even length k) split into (u', r) [k/2, 2] holding K[taps[r][u']]:
    a reshape, with the phases swapped when taps[r][u'] = 2u' + 1 − r (k ≡ 2 mod 4), so that
    the gradient is a reshape too (a gather's would be a scatter)."""
    k = kernel.shape[axis]
    w = kernel.reshape(*kernel.shape[:axis], k // 2, 2, *kernel.shape[axis + 1:])
    if taps == tuple(tuple(range(r, k, 2)) for r in (0, 1)):
        return w
    if taps == tuple(tuple(range(1 - r, k, 2)) for r in (0, 1)):
        return jnp.flip(w, axis + 1)
    raise NotImplementedError(f"compact sub-pixel taps {taps}")                 # not reached


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _interleave_phases(z: jax.Array, starts: tuple[tuple[int, int], tuple[int, int]],
                       size: tuple[int, int]) -> jax.Array:
    """z [B, H', W', 4·F] (channels (r_y, r_x, g)) → y [B, 2H, 2W, F], size = (H, W):
    y[b, 2p + r_y, 2q + r_x, g] = z[b, p + s_y[r_y], q + s_x[r_x], (r_y, r_x, g)], one copy.
    Its gradient is the inverse placement (zeros where no output reads z), also one copy,
    where autodiff would add four zero-padded copies of z's size."""
    (sy, sx), (h, w) = starts, size
    b, _, _, c4 = z.shape
    z6 = z.reshape(*z.shape[:3], 2, 2, c4 // 4)
    rows = [jnp.stack([z6[:, sy[ry]:sy[ry] + h, sx[rx]:sx[rx] + w, ry, rx] for rx in (0, 1)],
                      axis=3) for ry in (0, 1)]                      # [B, H, W, r_x, F] each
    return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, c4 // 4)


def _interleave_fwd(z, starts, size):
    return _interleave_phases(z, starts, size), z.shape


def _interleave_bwd(starts, size, z_shape, dy):
    (sy, sx), (h, w) = starts, size
    b, hz, wz, c4 = z_shape
    d = dy.reshape(b, h, 2, w, 2, c4 // 4)
    dz = jnp.zeros((b, hz, wz, 2, 2, c4 // 4), dy.dtype)
    for ry in (0, 1):
        for rx in (0, 1):
            dz = dz.at[:, sy[ry]:sy[ry] + h, sx[rx]:sx[rx] + w, ry, rx].set(d[:, :, ry, :, rx])
    return (dz.reshape(z_shape),)


_interleave_phases.defvjp(_interleave_fwd, _interleave_bwd)


def depth_to_space2(z: jax.Array) -> jax.Array:
    """[B, H, W, 4·F] with channels ordered (r_y, r_x, g) → [B, 2H, 2W, F],
    out[b, 2p + r_y, 2q + r_x, g] = z[b, p, q, (r_y, r_x, g)]."""
    b, h, w, c4 = z.shape
    f = c4 // 4
    z = z.reshape(b, h, w, 2, 2, f).transpose(0, 1, 3, 2, 4, 5)
    return z.reshape(b, 2 * h, 2 * w, f)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, w: jax.Array, padding, precision) -> jax.Array:
    """Stride-1 NHWC/HWIO correlation with explicit padding. An image smaller than the kernel
    (DCGAN's first 2×2 layer) takes XLA:CPU's slow generic path (measured: 2×2×512 → 1024, 3×3,
    batch 64: 1.6 s instead of 6 ms), so that case is an im2col matmul instead."""
    kh, kw = w.shape[:2]
    if x.shape[1] >= kh and x.shape[2] >= kw:
        return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC,
                                        precision=precision)
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    if min(x.shape[1:3]) > 2 and xp.shape[1] >= kh and xp.shape[2] >= kw:
        # Only the padding makes room for the window (the kernel gradient of the compact
        # sub-pixel form: a 7×7 input padded to 9×9 under an 8×8 "kernel"): padded explicitly,
        # XLA:CPU's fast path; the im2col below would copy the input once per tap.
        return lax.conv_general_dilated(xp, w, (1, 1), ((0, 0), (0, 0)),
                                        dimension_numbers=_NHWC, precision=precision)
    oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    cols = jnp.concatenate([xp[:, u:u + oh, v:v + ow] for u in range(kh) for v in range(kw)],
                           axis=-1)                                  # [B, oh, ow, (u, v, C)]
    return jnp.dot(cols, w.reshape(-1, w.shape[-1]), precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_same(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]],
              precision: lax.PrecisionLike = None) -> jax.Array:
    """Stride-1 m_y×m_x correlation with zero padding ((lo_y, hi_y), (lo_x, hi_x)),
    0 ≤ lo, hi ≤ m − 1: x [B, H, W, C], w [m_y, m_x, C, O] → [B, H', W', O] with
    H' = H + lo_y + hi_y − m_y + 1 (= H for lo + hi = m − 1, 'SAME'; VALID is (0, 0)),
    z[b, p, q, o] = Σ_{u, v, c} x[b, p + u − lo_y, q + v − lo_x, c] · w[u, v, c, o].

    Its gradients are written as convolutions in XLA:CPU's canonical layout (batch first, feature
    last; kernel [h, w, in, out]) with explicit transposes. XLA:CPU rewrites non-canonical
    convolutions, such as the ones autodiff emits for these gradients, into canonical ones only in
    the top-level computation; inside a loop body (a rolled `lax.scan`) they would fall back to a
    generic loop about 40× slower. Same values as autodiff, up to float rounding:
      dx[b, i, j, c] = Σ_{u, v, o} dz[b, i − u + lo_y, j − v + lo_x, o] · w[u, v, c, o]
                     = (dz ⋆ w̃)[b, i, j, c],  w̃[u, v, o, c] = w[m_y − 1 − u, m_x − 1 − v, c, o],
                       padding ((m_y − 1 − lo_y, m_y − 1 − hi_y), (m_x − 1 − lo_x, …)), i.e.
                       ((hi_y, lo_y), (hi_x, lo_x)) in the size-keeping case;
      dw[u, v, c, o] = Σ_{b, p, q} x[b, p + u − lo_y, q + v − lo_x, c] · dz[b, p, q, o], a
                     correlation with C as the batch, B as the feature and dz as the [H, W, B, O]
                     kernel, padding as the forward.
    """
    return _conv(x, w, padding, precision)


def _conv_same_fwd(x, w, padding, precision):
    return _conv(x, w, padding, precision), (x, w)


def _conv_same_bwd(padding, precision, residuals, dz):
    x, w = residuals
    w_flipped = w[::-1, ::-1].transpose(0, 1, 3, 2)                  # [m_y, m_x, O, C]
    dx = _conv(dz, w_flipped, tuple((m - 1 - lo, m - 1 - hi)
                                    for m, (lo, hi) in zip(w.shape[:2], padding, strict=True)),
               precision)
    dw = _conv(x.transpose(3, 1, 2, 0), dz.transpose(1, 2, 0, 3),   # [C, H, W, B] ⋆ [H, W, B, O]
               padding, precision)                                   # → [C, m_y, m_x, O]
    return match_vma(dx, x), match_vma(dw.transpose(1, 2, 0, 3), w)


def match_vma(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
    """Inside `shard_map`, a primal invariant over a mesh axis (e.g. replicated params) whose
    cotangent varies over it gets the sum over that axis, as autodiff's transpose of the
    implicit broadcast does."""
    extra = tuple(sorted(_varying(cotangent) - _varying(primal)))
    return lax.psum(cotangent, extra) if extra else cotangent


def _varying(x: jax.Array) -> frozenset:
    """The manual mesh axes `x` varies over (empty outside `shard_map`)."""
    aval = jax.typeof(x)
    mat = getattr(aval, "manual_axis_type", None)
    return frozenset(mat.varying) if mat is not None else frozenset(getattr(aval, "vma", ()))


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def conv3x3_same(x: jax.Array, w: jax.Array, precision: lax.PrecisionLike = None) -> jax.Array:
    """`conv_same` with a 3×3 kernel and padding 1: x [B, H, W, C], w [3, 3, C, O] →
    [B, H, W, O]."""
    return conv_same(x, w, ((1, 1), (1, 1)), precision)


def conv_transpose2x(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None,
                     precision: lax.PrecisionLike = None, compact: bool | None = None
                     ) -> jax.Array:
    """`lax.conv_transpose(x, kernel, (2, 2), 'SAME')` (+ bias) for any k_y×k_x kernel, computed
    as a sub-pixel convolution. x [B, H, W, C], kernel [k_y, k_x, C, F], bias [F] →
    [B, 2H, 2W, F]. Even kernels take `_compact_subpixel` (no zero taps) when `compact`, which
    None sets on XLA:CPU only (measured there: the InfoGAN G's 4×4 layers' share of the step
    from 40 to 25 ms); accelerators keep the 3×3 form."""
    if compact is None:
        compact = cpu_forms()
    if compact and all(compact_taps(k) for k in kernel.shape[:2]):
        y = _compact_subpixel(x, kernel, precision)
    else:
        y = depth_to_space2(conv_same(x, subpixel_kernel(kernel),
                                      subpixel_padding(kernel.shape), precision))
    if bias is not None:
        y = y + bias
    return y



def _apply_2d(module, inputs: jax.Array, ks: tuple[int, ...], fn: Callable) -> jax.Array:
    """The body shared by the drop-in `Conv` and `ConvTranspose`: declares 'kernel'
    [*ks, C, features] (masked if the module has a mask) and 'bias' exactly as the Flax layer does,
    promotes dtypes, and applies `fn(x, kernel, bias, precision)` to `inputs` [..., H, W, C]
    flattened to one batch axis, restoring the leading axes. Call from a compact method."""
    lead = inputs.shape[:-3]
    x = inputs.reshape(-1, *inputs.shape[-3:])
    kernel_shape = ks + (x.shape[-1], module.features)
    if module.mask is not None and module.mask.shape != kernel_shape:
        raise ValueError("Mask needs to have the same shape as weights. "
                         f"Shapes are: {module.mask.shape}, {kernel_shape}")
    kernel = module.param("kernel", module.kernel_init, kernel_shape, module.param_dtype)
    if module.mask is not None:
        kernel *= module.mask
    bias = (module.param("bias", module.bias_init, (module.features,), module.param_dtype)
            if module.use_bias else None)
    x, kernel, bias = module.promote_dtype(x, kernel, bias, dtype=module.dtype)
    y = fn(x, kernel, bias, module.precision)
    return y.reshape(*lead, *y.shape[1:])

class ConvTranspose(nn.ConvTranspose):
    """Drop-in `nn.ConvTranspose`: same fields, parameters ('kernel' [k_y, k_x, C, features],
    'bias' [features]; same initialisers, order and dtypes) and auto-name ('ConvTranspose_<i>'),
    same output [..., 2H, 2W, features] for inputs [..., H, W, C]. Computed with
    `conv_transpose2x` when strides are 2, padding 'SAME', the input 2-D and the kernel neither
    dilated nor transposed; any other configuration raises (use `nn.ConvTranspose`)."""

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        ks = (self.kernel_size,) if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
        strides = (2,) * len(ks) if self.strides == 2 else tuple(self.strides or (1,) * len(ks))
        dilation = (1,) * len(ks) if self.kernel_dilation in (None, 1) else tuple(
            self.kernel_dilation)
        if (len(ks) != 2 or strides != (2, 2) or self.padding != "SAME" or dilation != (1, 1)
                or self.transpose_kernel or self.preferred_element_type is not None):
            raise NotImplementedError(
                "layers.ConvTranspose supports only 2-D, strides 2, padding 'SAME', no kernel "
                f"dilation, transpose_kernel=False; got {self}")
        return _apply_2d(self, inputs, ks, conv_transpose2x)


def space_to_depth2(x: jax.Array) -> jax.Array:
    """[B, 2H, 2W, C] → [B, H, W, 4·C] with channels ordered (r_y, r_x, c):
    out[b, p, q, (r_y, r_x, c)] = x[b, 2p + r_y, 2q + r_x, c] (inverse of `depth_to_space2`)."""
    b, h2, w2, c = x.shape
    x = x.reshape(b, h2 // 2, 2, w2 // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h2 // 2, w2 // 2, 4 * c)


def space_to_depth_kernel(kernel: jax.Array) -> jax.Array:
    """The k_y×k_x stride-2 convolution kernel K [k_y, k_x, C, F] as the stride-1 kernel
    W [m_y, m_x, 4·C, F] (m = ⌈k/2⌉) on a `space_to_depth2` input, input channels ordered
    (r_y, r_x, c): W[u, v, (r_y, r_x, c), f] = K[2u + r_y, 2v + r_x, c, f], zero where
    2u + r ≥ k (a zero pad at the end and a reshape, so gradients reach K exactly)."""
    ky, kx, c, f = kernel.shape
    my, mx = -(-ky // 2), -(-kx // 2)
    kp = jnp.pad(kernel, ((0, 2 * my - ky), (0, 2 * mx - kx), (0, 0), (0, 0)))
    w = kp.reshape(my, 2, mx, 2, c, f).transpose(0, 2, 1, 3, 4, 5)   # [u, v, r_y, r_x, C, F]
    return w.reshape(my, mx, 4 * c, f)


def _strided2_plan(n: int, k: int) -> tuple[int, int, tuple[int, int]]:
    """For one axis of a stride-2 'SAME' convolution (length-n input, length-k kernel): (front,
    back, (lo, hi)), the zeros to pad x with before `space_to_depth2` (front ∈ {0, 1}, making the
    length even) and the padding of the stride-1 ⌈k/2⌉-tap convolution on the result.

    lax's SAME pads (a, b) with a + b = max(2(⌈n/2⌉ − 1) + k − n, 0), a = (a + b) // 2 (for even
    n: a + b = max(k − 2, 0)), and y[p] = Σ_t K[t] · x[2p + t − a]. With t = 2u + r and x'
    = x padded by a (mod 2) in front, a // 2 whole blocks of 2 are the convolution's front
    padding lo: y[p] = Σ_u Σ_r K[2u + r] · x'[2(p + u − lo) + r]; hi makes the output ⌈n/2⌉."""
    (a, _), = lax.padtype_to_pads((n,), (k,), (2,), "SAME")
    m, out = -(-k // 2), -(-n // 2)
    front, lo = a % 2, a // 2
    blocks = -(-(n + front) // 2)
    hi = out + m - 1 - blocks - lo
    if not (0 <= lo <= m - 1 and 0 <= hi <= m - 1):                 # not reached for SAME
        raise NotImplementedError(f"stride-2 SAME plan for n={n}, k={k}: lo={lo}, hi={hi}")
    return front, 2 * blocks - n - front, (lo, hi)


def conv2x(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None,
           precision: lax.PrecisionLike = None) -> jax.Array:
    """`lax.conv_general_dilated(x, kernel, (2, 2), 'SAME')` (+ bias), NHWC/HWIO, for any
    k_y×k_x kernel and any H, W, computed as a stride-1 ⌈k_y/2⌉×⌈k_x/2⌉ convolution (`conv_same`,
    fast gradients on XLA:CPU) of the space-to-depth input with `space_to_depth_kernel`.
    x [B, H, W, C], kernel [k_y, k_x, C, F], bias [F] → [B, ⌈H/2⌉, ⌈W/2⌉, F]:

        y[b, p, q, f] = Σ_{u, v, r_y, r_x, c} K[2u + r_y, 2v + r_x, c, f]
                        · x'[b, 2(p + u − lo_y) + r_y, 2(q + v − lo_x) + r_x, c]

    with x' = x zero-padded per `_strided2_plan` (e.g. 5×5 on even H: lax pads (1, 2), so x' is x
    padded by (1, 1), lo = 0, hi = 1; a 4×4 image becomes 3×3×4C → 2×2 through a 3×3 window)."""
    plans = [_strided2_plan(n, k) for n, k in zip(x.shape[1:3], kernel.shape[:2], strict=True)]
    xp = jnp.pad(x, ((0, 0), *((f, b) for f, b, _ in plans), (0, 0)))
    z = conv_same(space_to_depth2(xp), space_to_depth_kernel(kernel),
                  tuple(p for _, _, p in plans), precision)
    if bias is not None:
        z = z + bias
    return z


class Conv(nn.Conv):
    """Drop-in `nn.Conv` for 2-D, strides 2, padding 'SAME': same fields, parameters ('kernel'
    [k_y, k_x, C, features], 'bias' [features]; same initialisers, order and dtypes), auto-name
    ('Conv_<i>') and output [..., ⌈H/2⌉, ⌈W/2⌉, features] for inputs [..., H, W, C] (any H, W,
    any kernel size; extra leading axes and a missing batch axis as flax). Computed with
    `conv2x`: a stride-1 ⌈k/2⌉×⌈k/2⌉ convolution on the space-to-depth input, which XLA:CPU runs
    (and differentiates) on its fast path, unlike the strided convolution's generic path on small
    images (5×5, 4×4×256 → 512 at batch 64). Any other configuration (other strides or padding,
    input or kernel dilation, feature groups, a custom `conv_general_dilated`) raises
    NotImplementedError (use `nn.Conv`)."""

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        ks = (self.kernel_size,) if isinstance(self.kernel_size, int) else tuple(self.kernel_size)

        def broadcast(v):
            v = 1 if v is None else v
            return (v,) * len(ks) if isinstance(v, int) else tuple(v)

        if (len(ks) != 2 or broadcast(self.strides) != (2, 2) or self.padding != "SAME"
                or broadcast(self.input_dilation) != (1, 1)
                or broadcast(self.kernel_dilation) != (1, 1) or self.feature_group_count != 1
                or self.conv_general_dilated is not None
                or self.conv_general_dilated_cls is not None):
            raise NotImplementedError(
                "layers.Conv supports only 2-D, strides 2, padding 'SAME', no dilation, one "
                f"feature group; got {self}")
        return _apply_2d(self, inputs, ks, conv2x)


class _SubPixelConvTranspose(nn.Module):
    """Declares the parameters exactly as `nn.ConvTranspose(features, (4, 4))` does (same names,
    order, shapes, dtypes and initialisers) and computes with `conv_transpose2x`."""

    features: int
    kernel_init: Callable
    bias_init: Callable
    use_bias: bool
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        lead = x.shape[:-3]
        y = conv_transpose2x(x.reshape(-1, *x.shape[-3:]), kernel, bias, self.precision)
        return y.reshape(*lead, *y.shape[1:])


class ConvTranspose2x(nn.Module):
    """[..., H, W, C] → [..., 2H, 2W, features]; equals nn.ConvTranspose(features, (4, 4),
    strides=(2, 2), padding="SAME") with params {'ConvTranspose_0': {'kernel' [4, 4, C, features],
    'bias' [features]}} (the tree of the wrapped `nn.ConvTranspose` it replaces)."""

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _SubPixelConvTranspose(self.features, self.kernel_init, self.bias_init,
                                      self.use_bias, name="ConvTranspose_0")(x)


"""Pure image preprocessing for the real datasets: decode, centre crop, bilinear resize.

Everything here is host-side numpy on uint8 images `[N, H, W, C]`; the float32 [0, 1] batches
are made on the device at batch time (`DataSource.batch` divides by 255).

Resize convention (the only place where implementations differ): `resize_bilinear` samples with
half-pixel centres (output pixel `o` reads source coordinate `(o + 0.5) * in / out - 0.5`,
clamped to the image) and no anti-aliasing, i.e. the same numbers as
`jax.image.resize(x, shape, "bilinear", antialias=False)` and TF2's
`tf.image.resize(..., "bilinear", antialias=False)`. The paper's code (TF1
`tf.image.resize_images`) used the legacy corner convention `o * in / out`, which at CelebA's
160 -> 64 samples 0.75 source pixels further up/left; the difference is a sub-pixel shift.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

CELEB_A_CROP = 160  # side of the centre crop of the 218x178 CelebA images
CELEB_A_SIZE = 64  # side after resizing


def decode_image(value: Any, channels: int) -> np.ndarray:
    """One image as uint8 `[H, W, channels]`.

    `value` is an already decoded array (`[H, W]` or `[H, W, C]`, what `tfds.data_source`
    returns) or the encoded PNG/JPEG bytes of one image (decoded with Pillow).
    """
    if isinstance(value, bytes | bytearray | memoryview):
        from PIL import Image  # noqa: PLC0415 (only needed for encoded input)

        with Image.open(io.BytesIO(bytes(value))) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            value = np.asarray(im)
    x = np.asarray(value)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[-1] != channels:
        raise ValueError(f"expected an image [H, W, {channels}], got shape {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {x.dtype}")
    return x


def center_crop(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """The central `height x width` window of `images` `[N, H, W, C]` -> `[N, height, width, C]`.

    When `H - height` is odd the extra row is dropped at the bottom (offset `(H - height) // 2`),
    likewise for columns; TF's `resize_with_crop_or_pad` does the same.
    """
    h, w = images.shape[1:3]
    if height > h or width > w:
        raise ValueError(f"crop {height}x{width} larger than the image {h}x{w}")
    top, left = (h - height) // 2, (w - width) // 2
    return images[:, top:top + height, left:left + width]


def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of `n_out` output positions: the two source indices and the weight of the second
    (half-pixel centres, edge clamped). Shapes `[n_out]`."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of `images` `[N, H, W, C]` to float32 `[N, height, width, C]`.

    Separable: rows first, then columns; half-pixel centres, no anti-aliasing (see the module
    docstring). A constant image stays constant and an image linear in (row, col) stays linear.
    """
    x = np.asarray(images, dtype=np.float32)
    lo, hi, t = _taps(x.shape[1], height)
    t = t[None, :, None, None]
    x = x[:, lo] * (1.0 - t) + x[:, hi] * t
    lo, hi, t = _taps(x.shape[2], width)
    t = t[None, None, :, None]
    return x[:, :, lo] * (1.0 - t) + x[:, :, hi] * t


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round float pixels in [0, 255] to the nearest uint8 (clipped)."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def celeb_a(images: np.ndarray) -> np.ndarray:
    """The paper's CelebA preprocessing: uint8 `[N, 218, 178, 3]` -> centre crop 160x160 ->
    bilinear resize -> uint8 `[N, 64, 64, 3]`. The rounding to uint8 (a quarter of the float32
    memory on the devices) is ours: compare_gan v1 (`gan_lib.py` `unpack_celeba_image`, L82–93)
    kept the resized float values; the error is at most 0.5/255 per pixel."""
    crop = center_crop(images, CELEB_A_CROP, CELEB_A_CROP)
    return to_uint8(resize_bilinear(crop, CELEB_A_SIZE, CELEB_A_SIZE))


def identity(images: np.ndarray) -> np.ndarray:
    """MNIST, Fashion-MNIST and CIFAR-10 are used at their native size: `[N, H, W, C]` as is."""
    return images

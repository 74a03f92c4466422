"""clean-fid's preprocessing ("clean"): Pillow's antialiased bicubic resize, checked by hand and
against Pillow itself, then the scaling of the network clean-fid feeds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gancmp.nets import inception as net


def _random_u8(n, shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _resize(x, size):
    return np.asarray(net.resize_bicubic_pil(np.asarray(x, np.float32)[None, :, :, None],
                                             size))[0, :, :, 0]


def test_pil_bicubic_hand_cases():
    # Keys' cubic (a = −0.5) at ±0.25, ±0.75, ±1.25, ±1.75 is 0.8671875, 0.2265625, −0.0703125,
    # −0.0234375. Shrinking 16 → 8 stretches it by 2: output pixel d (centre 2d + 1) reads the
    # 8 source pixels 2d − 3 … 2d + 4 at kernel(±0.25 … ±1.75), normalised by their sum 2.
    impulse = np.zeros((1, 16))
    impulse[0, 5] = 1.0
    edge = 0.0703125 / 2.0234375  # output 1 is cut by the border: 7 taps, sum 2.0234375
    np.testing.assert_allclose(_resize(impulse, (1, 8))[0],
                               [0, -edge, 0.43359375, 0.11328125, -0.01171875, 0, 0, 0],
                               rtol=1e-6, atol=1e-7)
    # antialiasing: a 0/255 checkerboard shrunk by 2 is its mean, 127.5, exactly, wherever the
    # kernel is not cut by the border (odd and even taps each sum to 1/2)
    checker = 255.0 * (np.add.outer(np.arange(16), np.arange(16)) % 2)
    assert np.all(_resize(checker, (8, 8))[2:6, 2:6] == 127.5)
    constant = _resize(np.full((7, 5), 77.0), (299, 299))
    np.testing.assert_allclose(constant, 77.0, rtol=0, atol=1e-4)  # normalised weights
    x = np.random.default_rng(0).uniform(0, 255, (6, 9))
    assert np.array_equal(_resize(x, (6, 9)), x.astype(np.float32))  # same size: untouched


@pytest.mark.parametrize("shape, out", [((32, 32), (299, 299)), ((7, 13), (5, 29)),
                                        ((600, 450), (299, 299)), ((300, 17), (299, 2))])
def test_pil_bicubic_matches_pillow(shape, out):
    x = np.random.default_rng(1).integers(0, 256, shape).astype(np.float32)
    ref = np.asarray(Image.fromarray(x, mode="F").resize((out[1], out[0]), Image.BICUBIC))
    np.testing.assert_allclose(_resize(x, out), ref, rtol=0, atol=1e-3)  # float32 vs float64


def test_clean_preprocess_is_clean_fid():
    """clean-fid: uint8 RGB → each channel through Pillow's "F" bicubic resize to 299×299 →
    clip to [0, 255] → (x − 128) / 128."""
    u8 = _random_u8(2, (21, 17, 3), seed=5)
    ref = np.stack([np.stack([np.asarray(Image.fromarray(im[..., c].astype(np.float32), "F")
                                         .resize((299, 299), Image.BICUBIC)).clip(0, 255)
                              for c in range(3)], -1) for im in u8])
    ours = np.asarray(net.preprocess(u8.astype(np.float32) / 255, "clean"))
    assert ours.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(ours, (ref - 128) / 128, rtol=0, atol=1e-5)
    assert ref.min() == 0 and ref.max() == 255  # the clip mattered (bicubic overshoots)
    grey = u8[..., :1]
    np.testing.assert_array_equal(net.preprocess(grey.astype(np.float32) / 255, "clean"),
                                  net.preprocess(np.repeat(grey, 3, -1) / np.float32(255),
                                                 "clean"))
    flat = np.asarray(net.preprocess(np.full((1, 8, 8, 1), 0.25, np.float32), "clean"))
    np.testing.assert_allclose(flat, (63.75 - 128) / 128, atol=1e-6)
    with pytest.raises(ValueError, match="unknown resize mode 'clean'"):
        net.resize_bilinear(np.zeros((1, 4, 4, 1), np.float32), (2, 2), "clean")

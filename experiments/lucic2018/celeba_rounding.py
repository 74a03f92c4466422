"""How much rounding CelebA to uint8 after its 160 → 64 resize moves FID (issue 13, item 5).

compare_gan v1 kept the resized CelebA images as float (`gan_lib.py` `unpack_celeba_image`,
L82–93: `tf.image.resize_images` returns float32, divided by 255); gancmp rounds them to uint8
(`gancmp.data.preprocess.celeb_a`), a quarter of the memory on the devices. The rounding error is
at most 0.5/255 per pixel, in the Inception input's units (x·255 − 128)/128 at most 0.5/128, and
the bilinear resize to 299 (a convex combination) keeps that bound.

The measurement: `--n` synthetic 160×160 images (blocks, gradients, noise), resized to 64×64
as CelebA is, in float and rounded; a second, independent set stands in for a generator. With
the random-weights Inception (`FeatureExtractor.random`, the real network's shapes, as the test
fixtures), it prints FID(float, rounded), FID(gen, float) and FID(gen, rounded) and their
difference, as JSON. The features of random weights mean nothing, so the number is a check of
scale (how far the rounding moves the statistics relative to the distance between two image
sets), not the trained network's value.

    .venv/bin/python experiments/lucic2018/celeba_rounding.py --n 256
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from gancmp.data import preprocess
from gancmp.metrics.features import FeatureExtractor
from gancmp.metrics.fid import compute_statistics, frechet_distance


def synthetic_faces(n: int, seed: int, size: int = preprocess.CELEB_A_CROP) -> np.ndarray:
    """n uint8 RGB images [n, size, size, 3]: coarse random blocks, a gradient and pixel noise
    (enough structure at every scale for the resize to produce non-integer values)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        grid = int(rng.integers(3, 12))
        coarse = rng.integers(0, 256, (grid, grid, 3))
        blocks = coarse[(yy * grid) // size, (xx * grid) // size]
        wy, wx = rng.integers(-255, 256, 2)
        gradient = (wy * yy + wx * xx) // (2 * (size - 1))
        noise = rng.integers(-24, 25, (size, size, 3))
        out[i] = np.clip(blocks // 2 + gradient[..., None] + 64 + noise, 0, 255)
    return out


def _fid(a, b) -> float:
    return frechet_distance(*a.statistics(min_samples=2), *b.statistics(min_samples=2))


def measure(n: int, seed: int = 0) -> dict:
    """The numbers described in the module docstring, for `n` images per set."""
    resized = preprocess.resize_bilinear(synthetic_faces(n, seed), preprocess.CELEB_A_SIZE,
                                         preprocess.CELEB_A_SIZE)  # float32 in [0, 255]
    rounded = preprocess.to_uint8(resized)
    error = rounded.astype(np.float64) - resized
    generated = preprocess.to_uint8(preprocess.resize_bilinear(
        synthetic_faces(n, seed + 1), preprocess.CELEB_A_SIZE, preprocess.CELEB_A_SIZE))
    extractor = FeatureExtractor.random(0)
    start = time.time()
    s_float = compute_statistics(resized / 255.0, extractor)[0]
    s_round = compute_statistics(rounded, extractor)[0]
    s_gen = compute_statistics(generated, extractor)[0]
    fid_float, fid_round = _fid(s_gen, s_float), _fid(s_gen, s_round)
    return {
        "n": n, "max_abs_error_255": float(np.abs(error).max()),
        "rms_error_255": float(np.sqrt(np.mean(error**2))),
        "fid_float_vs_rounded": _fid(s_float, s_round),
        "fid_gen_vs_float": fid_float, "fid_gen_vs_rounded": fid_round,
        "delta": fid_round - fid_float, "relative_delta": (fid_round - fid_float) / fid_float,
        "seconds": time.time() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256, help="images per set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(measure(args.n, args.seed), indent=2))


if __name__ == "__main__":
    main()

"""How the FID Inception's matmul precision moves FID (issue 24, item 1), emulated on a CPU.

XLA:CPU multiplies in float32 whatever precision it is asked for, so the accelerators' modes are
emulated here by rounding the operands of every Inception convolution the way the hardware does
(the roundings of `gancmp/emulation.py`, which emulates training's products the same way) and
accumulating in float32:

  float32        the product as is (the reference);
  bfloat16       one bf16 pass (TPU `auto`): both operands rounded to bf16 (8 significant bits);
  tensorfloat32  TF32 tensor cores (GPU `auto`): both operands rounded to 11 significant bits;
  bfloat16_3x    three bf16 passes: x = hi + lo with hi = bf16(x), lo = bf16(x − hi), and
                 hi·hi' + hi·lo' + lo·hi' (XLA's BF16_BF16_F32_X3 algorithm).

The images: three sets of `--n` images: A and B, two disjoint sets of real images, and F, B
degraded (shifted, blurred, noisy) to stand in for a generator's samples. Each set goes through
the same network once per mode; for each mode the script prints FID(A, B) and FID(A, F) at
n/4, n/2 and n images per side, their change from float32, and the features' relative RMS error.
Both sides of every FID are computed in the same mode, as in a sweep (the reference statistics are
cached per precision).

The weights: `--inception_weights` (pytorch-fid's .pth or a converted .npz) when given; without
it the random-weights network of the tests (`FeatureExtractor.random`: the real network's shapes
and depth, features that mean nothing), as the machine this was measured on cannot download the
trained weights. The images: `--images`, an .npz with `images` [N, H, W(, C)] (uint8 or [0, 1]),
or a PNG grid of 20×20 digits (OpenCV's `samples/data/digits.png`, 5,000 handwritten digits,
Debian's `opencv-doc`: /usr/share/doc/opencv-doc/examples/data/digits.png).

    PYTHONPATH=. .venv/bin/python experiments/lucic2018/metric_precision.py --n 300 \
        --images /usr/share/doc/opencv-doc/examples/data/digits.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator

import jax
import numpy as np

from gancmp.emulation import round_bf16, round_tf32, split_bf16
from gancmp.metrics.features import FeatureExtractor
from gancmp.metrics.fid import compute_statistics, frechet_distance

MODES = ("float32", "bfloat16", "tensorfloat32", "bfloat16_3x")


@contextlib.contextmanager
def emulated(mode: str) -> Iterator[None]:
    """Traces `jax.lax.conv_general_dilated` (every Inception convolution) as `mode` computes it."""
    original = jax.lax.conv_general_dilated

    def conv(lhs, rhs, *args, **kwargs):
        kwargs["precision"] = jax.lax.Precision.HIGHEST
        if mode == "bfloat16":
            return original(round_bf16(lhs), round_bf16(rhs), *args, **kwargs)
        if mode == "tensorfloat32":
            return original(round_tf32(lhs), round_tf32(rhs), *args, **kwargs)
        (hi_x, lo_x), (hi_w, lo_w) = split_bf16(lhs), split_bf16(rhs)
        return (original(hi_x, hi_w, *args, **kwargs) + original(hi_x, lo_w, *args, **kwargs)
                + original(lo_x, hi_w, *args, **kwargs))

    if mode != "float32":
        jax.lax.conv_general_dilated = conv
    try:
        yield
    finally:
        jax.lax.conv_general_dilated = original


def load_images(path: str) -> np.ndarray:
    """[N, H, W, 1 or 3] float32 in [0, 1] from an .npz (`images`) or a 20×20 digit grid PNG."""
    if path.endswith(".npz"):
        x = np.load(path)["images"]
        x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
        return x if x.ndim == 4 else x[..., None]
    from PIL import Image
    grid = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
    rows, cols = grid.shape[0] // 20, grid.shape[1] // 20
    cells = grid[:rows * 20, :cols * 20].reshape(rows, 20, cols, 20).transpose(0, 2, 1, 3)
    order = np.random.default_rng(0).permutation(rows * cols)  # the grid is sorted by digit
    return cells.reshape(-1, 20, 20, 1)[order]


def degrade(x: np.ndarray, seed: int) -> np.ndarray:
    """x shifted by up to 2 pixels, box-blurred and noisy: a stand-in generator's samples."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(x)
    for i, img in enumerate(x):
        img = np.roll(img, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
        img = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1) + np.roll(img, (1, 1), (0, 1))) / 4
        out[i] = np.clip(img + rng.normal(0, 0.1, img.shape), 0.0, 1.0)
    return out


def _fid(a: np.ndarray, b: np.ndarray) -> float:
    def stats(f):
        f = f.astype(np.float64)
        return f.mean(0), np.cov(f, rowvar=False)
    return float(frechet_distance(*stats(a), *stats(b)))


def measure(images: np.ndarray, n: int, weights: str | None, modes=MODES) -> dict:
    """Features of A, B, F in every mode, and the FIDs (see the module docstring)."""
    sets = {"A": images[:n], "B": images[n:2 * n]}
    sets["F"] = degrade(sets["B"], seed=1)
    feats: dict[str, dict[str, np.ndarray]] = {}
    seconds = {}
    for mode in modes:
        start = time.time()
        with emulated(mode):
            ex = (FeatureExtractor.from_file(weights, batch_size=20) if weights
                  else FeatureExtractor.random(0, batch_size=20))
            feats[mode] = {k: compute_statistics(v, ex, keep_features=True)[1]
                           for k, v in sets.items()}
        seconds[mode] = time.time() - start
    sizes = sorted({max(8, n // 4), max(8, n // 2), n})
    out = {"n": n, "weights": weights or "random_state_dict(seed=0)", "seconds": seconds,
           "modes": {}}
    ref = feats["float32"]
    for mode in modes:
        f = feats[mode]
        err = np.concatenate([f[k] - ref[k] for k in f])
        scale = np.sqrt(np.mean(np.concatenate([ref[k] for k in ref]) ** 2))
        row = {"feature_rel_rms_error": float(np.sqrt(np.mean(err**2)) / scale)}
        for m in sizes:
            for pair in ("AB", "AF"):
                value = _fid(f[pair[0]][:m], f[pair[1]][:m])
                row[f"fid_{pair}_{m}"] = value
                row[f"delta_{pair}_{m}"] = value - _fid(ref[pair[0]][:m], ref[pair[1]][:m])
        out["modes"][mode] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="images per set")
    parser.add_argument("--images", required=True, help=".npz with `images`, or a digit grid")
    parser.add_argument("--inception_weights", default=None)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    images = load_images(args.images)
    if len(images) < 2 * args.n:
        raise SystemExit(f"--n {args.n} needs {2 * args.n} images; {args.images} has "
                         f"{len(images)}")
    print(json.dumps(measure(images, args.n, args.inception_weights,
                             tuple(args.modes.split(","))), indent=1))


if __name__ == "__main__":
    main()

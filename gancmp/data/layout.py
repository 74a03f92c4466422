"""How the on-device datasets are laid out: image sets as uint8 `[N, H·W·C]`, one row per image,
reshaped to `[b, H, W, C]` after each step's gather (`source.DataSource.batch`).

Why: a TPU stores an array in tiles over its two minor dimensions, (32, 128) for 8-bit types
(v4/v5, per XLA's TPU layout), padding each to a multiple of the tile. `[N, H, W, C]` with C = 1
or 3 pads C to 128 and W to a multiple of 32: MNIST's 60,000 × 28 × 28 × 1 bytes (47 MB) would
take 60,000 × 28 × 32 × 128 = 6.9 GB of HBM, CelebA-64's 162,770 × 64 × 64 × 3 (2.0 GB) 85 GB.
`[N, H·W·C]` pads only the row to a multiple of 128 and N to one of 32: MNIST 60,000 × 896 =
54 MB, CIFAR-10 (3,072) and CelebA-64 (12,288) not at all (`tpu_tiled_bytes` does the sums).
CPU and GPU store arrays densely either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

TPU_TILE_8BIT = (32, 128)  # (second-minor, minor) tile of 8-bit arrays on TPU v4/v5


def device_layout(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """The arrays as they go onto the devices: every image array `[N, H, W, C]` as `[N, H·W·C]`
    (a view, no copy), anything else unchanged."""
    return {name: (np.reshape(a, (a.shape[0], -1)) if np.ndim(a) == 4 else a)
            for name, a in arrays.items()}


def tpu_tiled_bytes(shape: tuple[int, ...], itemsize: int = 1,
                    tile: tuple[int, int] = TPU_TILE_8BIT) -> int:
    """Bytes an array of `shape` takes on a TPU whose layout pads its two minor dimensions to
    multiples of `tile` (a paper estimate: XLA may choose another tiling for some shapes)."""
    if len(shape) < 2:
        return math.prod(shape) * itemsize
    *major, second, minor = shape
    padded = -(-second // tile[0]) * tile[0] * (-(-minor // tile[1]) * tile[1])
    return math.prod(major) * padded * itemsize

"""Offline datasets, deterministic from a seed: the paper's convex polygons and 2-D Gaussian
mixtures.

Polygons (Lucic et al. 2018, §5): a circle is split into `n_vertices` equal angular segments and
one vertex is drawn uniformly in each, redrawn until consecutive vertices are at least
`min_segment_angle` apart; the polygon is rotated by a uniform angle, scaled to `scale` of the
half-width, its centre of mass moved to the image centre, and rasterised at 28×28 with 8×8
sub-pixels per pixel (pixel value = covered fraction; white polygon on black). The generating
parameters of every image are kept. Images are float32 [N, 28, 28, 1] in [0, 1]; datasets store
them as uint8 (round(255·coverage)).

Mixtures: `ring8` (8 modes evenly on a circle of radius 2) and `grid25` (5×5 modes at
{−4, −2, 0, 2, 4}²), std 0.02, equal weights (the unrolled-GAN / VEEGAN setting).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gancmp import storage

IMAGE_SIZE = 28
SUPERSAMPLE = 8
FORMAT_VERSION = 1
SPLITS = {"train": 60_000, "test": 10_000, "heldout": 10_000}


@dataclasses.dataclass(frozen=True)
class PolygonSpec:
    """How a polygon dataset is generated."""

    n_vertices: int
    min_segment_angle: float  # degrees
    scale: float  # circumradius as a fraction of the image half-width


POLYGON_DATASETS: dict[str, PolygonSpec] = {
    "triangles": PolygonSpec(3, 20.0, 0.75),  # the paper's
    "quadrilaterals": PolygonSpec(4, 20.0, 0.75),
}


@dataclasses.dataclass(frozen=True)
class Mixture:
    """An equal-weight isotropic Gaussian mixture in 2-D: modes [M, 2], one std."""

    modes: np.ndarray
    std: float


def _ring(n: int, radius: float) -> np.ndarray:
    angles = 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1).astype(np.float32)


def _grid(k: int, spacing: float) -> np.ndarray:
    axis = spacing * (np.arange(k) - (k - 1) / 2)
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)


MIXTURES: dict[str, Mixture] = {
    "ring8": Mixture(_ring(8, 2.0), 0.02),
    "grid25": Mixture(_grid(5, 2.0), 0.02),
}


def sample_mixture(key: jax.Array, n: int, name: str) -> jax.Array:
    """n points [n, 2] float32 from mixture `name`; pure and jittable (`key`: a typed key)."""
    mix = MIXTURES[name]
    k_mode, k_noise = jax.random.split(key)
    idx = jax.random.randint(k_mode, (n,), 0, len(mix.modes))
    return jnp.asarray(mix.modes)[idx] + mix.std * jax.random.normal(k_noise, (n, 2))


def sample_polygon_params(seed: int | np.random.Generator, n: int, spec: PolygonSpec,
                          size: int = IMAGE_SIZE) -> dict[str, np.ndarray]:
    """Parameters of n polygons: `angles` [n, v] (radians, increasing, rotation included),
    `rotation` [n], `scale` [n], and `vertices` [n, v, 2] in pixel coordinates (x, y), centred so
    that the polygon's centre of mass is the image centre."""
    rng = np.random.default_rng(seed) if isinstance(seed, int) else seed
    v = spec.n_vertices
    seg = 2 * np.pi / v
    min_gap = np.deg2rad(spec.min_segment_angle)
    angles = np.empty((n, v))
    todo = np.arange(n)
    while todo.size:  # redraw the polygons whose consecutive vertices are too close
        draw = (np.arange(v) + rng.uniform(0, 1, (todo.size, v))) * seg
        gaps = np.diff(np.concatenate([draw, draw[:, :1] + 2 * np.pi], 1), axis=1)
        ok = gaps.min(1) >= min_gap
        angles[todo[ok]] = draw[ok]
        todo = todo[~ok]
    rotation = rng.uniform(0, 2 * np.pi, n)
    angles = angles + rotation[:, None]
    radius = spec.scale * size / 2
    pts = radius * np.stack([np.cos(angles), np.sin(angles)], -1)
    pts = pts - polygon_centroid(pts)[:, None, :] + size / 2
    return {"angles": angles.astype(np.float32), "rotation": rotation.astype(np.float32),
            "scale": np.full(n, spec.scale, np.float32), "vertices": pts.astype(np.float32)}


def polygon_centroid(vertices: np.ndarray) -> np.ndarray:
    """Centre of mass of the polygons' areas: vertices [n, v, 2] (counter-clockwise) → [n, 2]."""
    x, y = vertices[..., 0], vertices[..., 1]
    x1, y1 = np.roll(x, -1, -1), np.roll(y, -1, -1)
    cross = x * y1 - x1 * y
    area = cross.sum(-1) / 2
    cx = ((x + x1) * cross).sum(-1) / (6 * area)
    cy = ((y + y1) * cross).sum(-1) / (6 * area)
    return np.stack([cx, cy], -1)


def polygon_area(vertices: np.ndarray) -> np.ndarray:
    """Shoelace areas of polygons [n, v, 2] → [n] (positive for counter-clockwise order)."""
    x, y = vertices[..., 0], vertices[..., 1]
    return (x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y).sum(-1) / 2


@jax.jit
def _coverage(vertices: jax.Array, sub: jax.Array) -> jax.Array:
    """Covered fraction of each pixel: vertices [n, v, 2] (counter-clockwise, convex), sub-pixel
    sample points [H·W·S², 2] → [n, H·W·S²] bools."""
    a = vertices
    b = jnp.roll(vertices, -1, axis=1)
    edge = b - a  # [n, v, 2]
    rel = sub[None, None] - a[:, :, None]  # [n, v, P, 2]
    cross = edge[..., None, 0] * rel[..., 1] - edge[..., None, 1] * rel[..., 0]
    return jnp.all(cross >= 0, axis=1)


def render_polygons(vertices: np.ndarray, size: int = IMAGE_SIZE, supersample: int = SUPERSAMPLE,
                    chunk: int = 2_000) -> np.ndarray:
    """Rasterises convex polygons (vertices [n, v, 2], pixel coordinates (x, y), counter-clockwise)
    into float32 [n, size, size, 1] in [0, 1], each pixel the fraction of its `supersample`²
    sub-pixel centres inside the polygon."""
    s = supersample
    offsets = (np.arange(s) + 0.5) / s
    coords = (np.arange(size)[:, None] + offsets[None]).reshape(-1)  # [size·s]
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    sub = jnp.asarray(np.stack([xs.ravel(), ys.ravel()], -1), jnp.float32)
    out = np.empty((len(vertices), size, size, 1), np.float32)
    for start in range(0, len(vertices), chunk):
        inside = np.asarray(_coverage(jnp.asarray(vertices[start:start + chunk]), sub))
        inside = inside.reshape(-1, size, s, size, s)
        out[start:start + chunk, ..., 0] = inside.mean(axis=(2, 4))
    return out


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


def _cache_path(cache_dir: str, name: str, seed: int, sizes: dict[str, int]) -> str:
    spec = POLYGON_DATASETS[name]
    key = (f"{name}-{spec}-{seed}-{sorted(sizes.items())}-{IMAGE_SIZE}-{SUPERSAMPLE}"
           f"-v{FORMAT_VERSION}")
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return os.path.join(cache_dir, f"polygons-{name}-seed{seed}-v{FORMAT_VERSION}-{digest}.npz")


def polygon_dataset(name: str = "triangles", seed: int = 0, cache_dir: str | None = None,
                    sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """The fixed, seeded polygon set, split as compare_gan v1 (60k train, 10k test, 10k held out):
    {"train", "test", "heldout"}: uint8 [n, 28, 28, 1], and "<split>_params": parameter dicts.
    Generated once and cached as .npz in `cache_dir` (default ~/.cache/gancmp/datasets)."""
    sizes = dict(sizes or SPLITS)
    cache_dir = cache_dir or storage.cache_root("datasets")
    path = _cache_path(cache_dir, name, seed, sizes)
    if storage.exists(path):
        with storage.open_file(path, "rb") as raw, np.load(raw) as f:
            flat = {k: f[k] for k in f.files}
        return _unflatten(flat, sizes)
    params = sample_polygon_params(seed, sum(sizes.values()), POLYGON_DATASETS[name])
    images = to_uint8(render_polygons(params["vertices"]))
    flat, start = {}, 0
    for split, n in sizes.items():
        flat[split] = images[start:start + n]
        for k, v in params.items():
            flat[f"{split}_params.{k}"] = v[start:start + n]
        start += n
    with storage.open_atomic(path) as f:
        np.savez(f, **flat)
    return _unflatten(flat, sizes)


def _unflatten(flat: dict[str, np.ndarray], sizes: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in sizes:
        out[split] = flat[split]
        prefix = f"{split}_params."
        out[f"{split}_params"] = {k[len(prefix):]: v for k, v in flat.items()
                                  if k.startswith(prefix)}
    return out

"""Sample pictures of trained generators: an image grid, or a scatter of 2-D samples over the
true modes. A trial ends with one (`final_samples`, `write_samples`); TensorBoard gets one per
checkpoint (`picture`); `gancmp sample` draws one from any checkpoint (`save_samples`).
`generate_group` draws a group's sample arrays in chunks (bounded device memory)."""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

from gancmp import storage
from gancmp.data import synthetic
from gancmp.metrics import evaluators
from gancmp.train import step as step_lib
from gancmp.train.state import TrainState
from gancmp.trial import TrialSetup

NUM_SAMPLES = 64  # images in a trial's final grid (points for 2-D data: NUM_POINTS)
NUM_POINTS = 2000
SAMPLES_SEED = 1234  # the final pictures' fixed noise


def image_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """Tiles images [N, H, W, C] in [0, 1] into one uint8 array [rows·H, cols·W, C]."""
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, c), np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return (np.clip(np.nan_to_num(grid), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def save_samples(samples: np.ndarray, path: str, modes: np.ndarray | None = None,
                 title: str = "") -> str:
    """Writes a PNG: an image grid for [N, H, W, C] samples, a scatter plot for [N, 2] points
    (with the true `modes` [M, 2] marked when given). Returns `path`."""
    samples = np.asarray(samples)
    if samples.ndim == 4:
        from PIL import Image

        grid = image_grid(samples)
        with storage.open_atomic(path) as f:
            Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(f, format="PNG")
        return path
    fig = _scatter(samples, modes, title)
    import matplotlib.pyplot as plt

    with storage.open_atomic(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path


def _scatter(samples: np.ndarray, modes: np.ndarray | None, title: str):
    """A matplotlib figure of 2-D samples [N, 2] over the true `modes` [M, 2] (red crosses)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="samples")
    if modes is not None:
        ax.scatter(modes[:, 0], modes[:, 1], s=30, c="red", marker="x", label="modes")
        lim = 1.5 * float(np.abs(modes).max())
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    ax.legend(loc="upper right", fontsize=6)
    fig.tight_layout()
    return fig


def picture(setup: TrialSetup, samples: np.ndarray, size: int = 192) -> np.ndarray:
    """One trial's samples [n, *example_shape] as a picture in memory, uint8 [H, W, C], cheap
    enough for every checkpoint (TensorBoard): the image grid, or for 2-D samples a `size`²
    raster of the points (blue) over the true modes (red), on the axes of the saved scatter."""
    samples = np.asarray(samples)
    if samples.ndim == 4:
        return image_grid(samples)
    modes = _modes(setup)
    finite = samples[np.all(np.isfinite(samples), axis=1)]
    lim = (1.5 * float(np.abs(modes).max()) if modes is not None
           else max(float(np.abs(finite).max(initial=0.0)), 1e-6) * 1.05)
    image = np.full((size, size, 3), 255, np.uint8)

    def pixels(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ij = np.round((points + lim) / (2 * lim) * (size - 1)).astype(int)
        inside = np.all((ij >= 0) & (ij < size), axis=1)
        return size - 1 - ij[inside, 1], ij[inside, 0]  # rows (y up), columns

    image[pixels(finite)] = (31, 119, 180)
    if modes is not None:
        rows, cols = pixels(modes)
        for d in range(-3, 4):  # a cross on each mode
            image[np.clip(rows + d, 0, size - 1), cols] = (214, 39, 40)
            image[rows, np.clip(cols + d, 0, size - 1)] = (214, 39, 40)
    return image


def _modes(setup: TrialSetup) -> np.ndarray | None:
    mixture = synthetic.MIXTURES.get(setup.dataset)
    return None if mixture is None else np.asarray(mixture.modes)


def final_samples(setup: TrialSetup, states: TrainState) -> np.ndarray:
    """Every trial's samples from the fixed noise `SAMPLES_SEED`, in one jitted call:
    [K, n, *example_shape] (n = NUM_POINTS for 2-D data, else NUM_SAMPLES) from a stacked
    state [K]."""
    n = NUM_POINTS if len(setup.example_shape) == 1 else NUM_SAMPLES
    z = step_lib.eval_latents(SAMPLES_SEED, n, setup.z_dim, setup.method.prior)
    return np.asarray(generate_group(setup, states, z))


def write_samples(setup: TrialSetup, samples: np.ndarray, path: str) -> str:
    """Saves one trial's samples [n, *example_shape] (`final_samples`) as the PNG `path`, titled
    "<method> on <dataset>", a 2-D mixture's modes marked. Returns `path`."""
    return save_samples(samples, path, modes=_modes(setup),
                        title=f"{setup.method.name} on {setup.dataset}")


def generator_of(setup: TrialSetup) -> evaluators.Generator:
    """The setup's generator as evaluators and samplers take it (`step.generate_from`, in
    inference mode): hashable by the setup, so equal setups share their jitted programs."""
    return evaluators.Generator(setup, functools.partial(step_lib.generate_from, setup),
                                setup.z_dim, setup.method.prior)


def generate_group(setup: TrialSetup, states: TrainState, z: jax.Array) -> np.ndarray:
    """Samples of every trial of a stacked state from the same noise: z [n, z_dim] →
    [K, n, *example_shape] (numpy; `gancmp.metrics.evaluators.generate_group`)."""
    return evaluators.generate_group(generator_of(setup), states, z)

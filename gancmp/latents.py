"""The latent priors p(z) that generators are sampled from, by name.

- "uniform": z ~ U[−1, 1]^d, compare_gan v1's GANs (`AbstractGAN.z_generator`);
- "normal": z ~ N(0, I), v1's VAE (`VAE.z_generator = gaussian`), whose decoder is the generator.

A method names its prior (`gancmp.methods.Method.prior`); the evaluator, the sample grids and the
polygon recall (which inverts the generator) all draw from it, so a VAE is scored on the
distribution it was trained to decode.
"""

from __future__ import annotations

import jax

PRIORS = ("uniform", "normal")
# The box [−b, b]^d in which a generator's input is searched when it is inverted (polygon
# recall): the uniform's support; for the normal, ±3 holds 99.73% of each coordinate.
_BOUND = {"uniform": 1.0, "normal": 3.0}


def check(prior: str) -> str:
    """`prior` if it is a known prior; ValueError naming the known ones otherwise."""
    if prior not in PRIORS:
        raise ValueError(f"unknown latent prior {prior!r}; known: {', '.join(PRIORS)}")
    return prior


def sample(key: jax.Array, shape: tuple[int, ...], prior: str = "uniform") -> jax.Array:
    """float32 draws of `shape` (e.g. [n, z_dim]) from `prior`, from one typed key. The uniform
    draw is `jax.random.uniform(key, shape, minval=-1, maxval=1)` exactly."""
    if check(prior) == "uniform":
        return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    return jax.random.normal(key, shape)


def bound(prior: str) -> float:
    """b of the box [−b, b]^d where an inversion of the generator searches z (see `_BOUND`)."""
    return _BOUND[check(prior)]

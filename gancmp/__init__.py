"""gancmp: fixed-budget, many-seed comparisons of GAN losses in JAX/Flax."""

__version__ = "0.1.0"

"""gancmp: fixed-budget, many-seed comparisons of GAN losses in JAX/Flax."""

__version__ = "0.1.0"


def load_generator(workdir: str, trial_id: str | None = None, step: int | None = None):
    """A trained generator from a `gancmp train` or `gancmp sweep` workdir (see
    `gancmp.generator`)."""
    from gancmp.generator import load_generator as _load

    return _load(workdir, trial_id, step)

"""Real image datasets (mnist, fashion_mnist, cifar10, celeb_a) through tensorflow-datasets.

Placeholder until the TFDS pipeline lands: every call explains how to make the data available.
"""

from __future__ import annotations


class DatasetUnavailableError(RuntimeError):
    """The dataset is not prepared locally and cannot be downloaded here."""


def load(name: str, data_dir: str | None = None):
    raise DatasetUnavailableError(
        f"dataset {name!r} is not available offline. Prepare it once on a machine with network "
        f"access (`gancmp prepare-data {name} --data_dir DIR`, which needs `pip install "
        f"gancmp[prepare]`), then pass `--config.data_dir=DIR`. The offline datasets are "
        f"ring8, grid25 and the convex polygons."
    )

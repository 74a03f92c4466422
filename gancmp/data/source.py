"""The on-device data contract: a dataset is put on the devices once, and every train step
gathers its batch there from (trial key, step), so data order is a pure function of the seed and
the step (resume is exact) and many steps can run in one device call.

Batches are float32 `[B, H, W, C]` in [0, 1] for images (stored as uint8 `[N, H·W·C]` on device,
a quarter of the float32 memory and no TPU tile padding: `gancmp.data.layout`) and `[B, 2]` for
2-D data.

Datasets: the built-in `names()` (2-D mixtures, polygon sets, TFDS image sets), and anyone's own
images, `folder:PATH[@HxW]` or `npz:PATH[@HxW]` (`gancmp.data.user`: uint8 like the TFDS sets,
resized once at load time with `@HxW`, a fixed held-out 10 % as the test split).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from gancmp.data import registry, shuffle, synthetic, user

Array = jax.Array
USER_HELP = user.HELP  # how a user dataset is written


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A training distribution.

    Attributes:
      name: dataset name.
      example_shape: shape of one example, e.g. (28, 28, 1) or (2,).
      kind: "array" (a finite training set, shuffled once per epoch, without replacement) or
        "mixture" (a 2-D Gaussian mixture sampled afresh for every example).
      arrays: host arrays to place on the devices, e.g. {"train": uint8 [N, H, W, C]}.
      test: held-out real examples on the host (FID reference statistics), or None.
    """

    name: str
    example_shape: tuple[int, ...]
    kind: Literal["array", "mixture"]
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    test: np.ndarray | None = None

    @property
    def is_image(self) -> bool:
        return len(self.example_shape) == 3

    def batch(
        self, arrays: Mapping[str, Array], key: Array, step: Array, batch_size: int,
        positions: Array,
    ) -> Array:
        """Examples at `positions` (indices into the global batch, shape [b]) of global batch
        number `step`, as float32 [b, *example_shape]. Pure and jittable; `key` is a typed key.

        Every device of a data-parallel step passes its own positions, so the global batch is the
        same whatever the device count.
        """
        if self.kind == "mixture":
            keys = jax.vmap(lambda p: jax.random.fold_in(jax.random.fold_in(key, step), p))(
                positions)
            return jax.vmap(lambda k: synthetic.sample_mixture(k, 1, self.name)[0])(keys)
        data = arrays["train"]
        n = data.shape[0]
        per_epoch = n // batch_size
        epoch, within = step // per_epoch, step % per_epoch
        # The epoch's order, evaluated at this batch's positions only (no per-step sort).
        epoch_key = jax.random.fold_in(key, epoch)
        idx = shuffle.permuted_index(epoch_key, within * batch_size + positions, n)
        x = jnp.take(data, idx, axis=0)
        x = x.reshape(x.shape[0], *self.example_shape)  # [b, H·W·C] rows (`layout`) → images
        if x.dtype == jnp.uint8:
            return x.astype(jnp.float32) / 255.0
        return x.astype(jnp.float32)


@functools.lru_cache(maxsize=2)
def load(name: str, data_dir: str | None = None, seed: int = 0) -> DataSource:
    """The dataset called `name` (one of `names()`, or a user dataset), through its registry
    record's loader (`gancmp.data.registry`): a 2-D mixture (nothing to load), a synthetic
    polygon set (seeded by `seed`, cached in `data_dir`), a TFDS image set (`tfds.SPECS`,
    prepared in `data_dir`), or a user's folder / `.npz` (`gancmp.data.user`; its decoded images
    cached in `tfds.default_cache_dir(data_dir)`). Loaded once per process for the two datasets
    asked for last (a sweep's groups share it; treat its arrays as read-only). Raises KeyError
    for an unknown name, ImageSourceError for a user dataset that cannot be read."""
    ds = registry.get(name)
    if ds.loader is None:
        return DataSource(name, ds.shape, ds.data_kind)
    splits = ds.loader(data_dir, seed)
    return DataSource(name, ds.shape, ds.data_kind, {"train": splits["train"]}, splits["test"])


def names() -> list[str]:
    """Every registered dataset name (`registry.names()`): the mixtures, the polygon sets, the
    TFDS image sets, then any a module registered (user datasets, `is_user_dataset`, are
    written `folder:PATH` / `npz:PATH`)."""
    return registry.names()


def is_user_dataset(name: object) -> bool:
    """Whether `name` is written as a user dataset, `folder:…` or `npz:…` (valid or not)."""
    return registry.is_user_dataset(name)


def example_shape(name: str) -> tuple[int, ...]:
    """Shape of one example of dataset `name`, without loading the data (for config
    validation): (2,) for the mixtures, (H, W, C) for the image sets; for a user dataset from
    its headers (`user.header`). Raises KeyError naming the known datasets for any other name,
    ImageSourceError (a ValueError) for a user dataset that cannot be read."""
    return registry.get(name).shape


def train_size(name: str) -> int | None:
    """Examples a train step shuffles over (None for the mixtures, sampled afresh), without
    loading the data; for a user dataset its images less the held-out test split."""
    return registry.get(name).size("train")


def provenance(name: str) -> dict[str, Any] | None:
    """What identifies a user dataset's images beyond its name (`user.fingerprint`: source
    path, counts, held-out split rule, content sha256, cache `key`); None for a built-in
    dataset, which its name (and data seed) identifies. Reads every file of a user dataset."""
    ds = registry.get(name)
    return ds.provenance() if ds.provenance is not None else None

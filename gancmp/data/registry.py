"""The dataset registry: one frozen `Dataset` record per dataset, so that what a dataset is (its
example shape, its kind, its split sizes, how its arrays are loaded, how it is scored) is
written once, here, and every other module looks it up instead of testing names against the
tables of `synthetic` and `tfds`.

    ds = registry.get("cifar10")
    ds.shape, ds.kind, ds.size("train")        # (32, 32, 3), "images", 50000
    ds.metrics.family, ds.metrics.main         # "fid", "fid" (lower is better)
    splits = ds.loader(data_dir, seed)         # {"train": uint8 [N, 32, 32, 3], "test": …}

Built in (registration order, the order of `names()`): the 2-D Gaussian mixtures (`ring8`,
`grid25`; kind "mixture", no loader: sampled afresh on the devices), the polygon sets
(`triangles`, `quadrilaterals`; kind "polygons") and the TFDS image sets (`tfds.SPECS`; kind
"images"). A module may `register` its own. A user dataset, `folder:PATH[@HxW]` /
`npz:PATH[@HxW]` (`gancmp.data.user`), is never registered: `get` builds its record from the
files' headers each time it is asked (kind "images", scored by FID like the TFDS sets).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal

from gancmp.data import synthetic, tfds, user

Kind = Literal["mixture", "polygons", "images"]
KINDS = ("mixture", "polygons", "images")
# (data_dir, seed) -> {"train": uint8 [N, *shape], "test": uint8 [M, *shape], …other splits}
Loader = Callable[[str | None, int], Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """How a trial on the dataset is scored.

    Attributes:
      family: the evaluator family: "mixture" (modes covered, high-quality fraction, KL to
        uniform: `gancmp.metrics.mixtures`), "polygons" (precision, recall, F1:
        `gancmp.metrics.polygons`) or "fid" (FID, KID, precision/recall and IS on Inception
        features against the test split: `gancmp.metrics.fid`).
      main: the metric a trial is ranked by ("modes_covered", "f1", "fid").
      higher_is_better: the main metric's direction.
    """

    family: str
    main: str
    higher_is_better: bool

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


MIXTURE_METRICS = MetricSpec("mixture", "modes_covered", True)
POLYGON_METRICS = MetricSpec("polygons", "f1", True)
FID_METRICS = MetricSpec("fid", "fid", False)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset.

    Attributes:
      name: the name a config gives (`config.dataset`).
      shape: shape of one example: (2,) for 2-D points, (H, W, C) for images (batches are
        float32 [B, *shape], images in [0, 1]).
      kind: "mixture" (2-D points sampled afresh for every example), "polygons" (the synthetic
        polygon images) or "images" (any other image set: TFDS, a user's folder or `.npz`).
      sizes: (split, examples) pairs where known, e.g. (("train", 60000), ("test", 10000));
        empty for a mixture, which has no finite split.
      loader: `(data_dir, seed) -> splits` (see `Loader`: host arrays, uint8 for images); None
        for a mixture, which has no arrays. `seed` matters only for generated sets (polygons).
      metrics: how it is scored (`MetricSpec`).
      origin: where the data comes from, one line (for `gancmp list datasets`).
      provenance: `() -> dict`, what identifies the data beyond its name (a user dataset's
        `user.fingerprint`: reads every file), or None when the name does.

    A record compares and hashes by its data fields; the two functions are left out.
    """

    name: str
    shape: tuple[int, ...]
    kind: Kind
    sizes: tuple[tuple[str, int], ...]
    loader: Loader | None = dataclasses.field(compare=False)
    metrics: MetricSpec
    origin: str = ""
    provenance: Callable[[], dict[str, Any]] | None = dataclasses.field(default=None,
                                                                         compare=False)

    def size(self, split: str) -> int | None:
        """Examples in `split`, or None when not known (or the dataset has no such split)."""
        return dict(self.sizes).get(split)

    @property
    def data_kind(self) -> Literal["array", "mixture"]:
        """How train batches are drawn (`DataSource.kind`, `TrialSetup.data_kind`): "mixture"
        (sampled on the devices) when there is nothing to load, else "array"."""
        return "mixture" if self.loader is None else "array"


_REGISTRY: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
    """Adds a dataset; a different one under a registered name, a user-dataset name or an
    unknown kind is a ValueError."""
    if dataset.kind not in KINDS:
        raise ValueError(f"dataset {dataset.name!r}: kind {dataset.kind!r} is not one of "
                         f"{', '.join(KINDS)}")
    if user.is_user_dataset(dataset.name):
        raise ValueError(f"dataset {dataset.name!r}: folder:… and npz:… name user datasets")
    old = _REGISTRY.get(dataset.name)
    if old is not None and (old != dataset or old.loader != dataset.loader):
        raise ValueError(f"dataset {dataset.name!r} is already registered")
    _REGISTRY[dataset.name] = dataset
    return dataset


def names() -> list[str]:
    """Registered dataset names, in registration order (user datasets are not registered)."""
    return list(_REGISTRY)


def is_user_dataset(name: object) -> bool:
    """Whether `name` is written as a user dataset, `folder:…` or `npz:…` (valid or not)."""
    return user.is_user_dataset(name)


def get(name: str) -> Dataset:
    """The dataset `name`: a registered one, or a user dataset built from its headers
    (`user_dataset`). Raises KeyError naming the known datasets for any other name (one line),
    ImageSourceError (a ValueError) for a user dataset that cannot be read."""
    if user.is_user_dataset(name):
        return user_dataset(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(names())}; or your own "
                       f"images: {user.HELP}") from None


def user_dataset(name: str) -> Dataset:
    """The record of `folder:PATH[@HxW]` / `npz:PATH[@HxW]`, from headers only (`user.header`):
    kind "images", sizes train N − N // 10 and test N // 10 (`user.HELDOUT_DIVISOR`), loaded
    with its decoded images cached in `tfds.default_cache_dir(data_dir)`."""
    ds = user.parse(name)
    n, shape = user.header(ds)
    n_test = n // user.HELDOUT_DIVISOR
    return Dataset(name, shape, "images", (("train", n - n_test), ("test", n_test)),
                   functools.partial(_load_user, ds), FID_METRICS,
                   f"your own images ({ds.kind}), read once and cached",
                   functools.partial(user.fingerprint, ds))


def _load_user(ds: user.UserDataset, data_dir: str | None, seed: int) -> dict[str, Any]:
    splits = user.load(ds, tfds.default_cache_dir(data_dir))
    return {"train": splits.train, "test": splits.test}


def _load_polygons(name: str, data_dir: str | None, seed: int) -> dict[str, Any]:
    return synthetic.polygon_dataset(name, seed=seed, cache_dir=data_dir)


def _load_tfds(name: str, data_dir: str | None, seed: int) -> dict[str, Any]:
    return tfds.load(name, data_dir)


def _register_builtins() -> None:
    for name in synthetic.MIXTURES:
        register(Dataset(name, (2,), "mixture", (), None, MIXTURE_METRICS,
                         "2-D Gaussian mixture, sampled on the fly (offline)"))
    size = synthetic.IMAGE_SIZE
    for name in synthetic.POLYGON_DATASETS:
        register(Dataset(name, (size, size, 1), "polygons", tuple(synthetic.SPLITS.items()),
                         functools.partial(_load_polygons, name), POLYGON_METRICS,
                         "synthetic convex polygons, generated once and cached (offline)"))
    for name, spec in tfds.SPECS.items():
        register(Dataset(name, spec.shape, "images", (("train", spec.train_size),),
                         functools.partial(_load_tfds, name), FID_METRICS,
                         f"TFDS, prepared once: gancmp prepare-data {name} --data_dir DIR"))


_register_builtins()

"""Real image datasets (mnist, fashion_mnist, cifar10, celeb_a) through tensorflow-datasets.

Reading uses TFDS's TensorFlow-free random-access reader, `tfds.data_source` on a split prepared
in the `array_record` format; images are decoded by TFDS with Pillow. Only preparing a dataset the
first time needs TensorFlow (`gancmp prepare-data NAME --data_dir DIR`, extra `gancmp[prepare]`).
`SPECS` is the one table of image datasets (shapes, preprocessing, split sizes); `load` returns
host arrays, which `gancmp.data.source` turns into a DataSource. `tensorflow_datasets` itself is
imported inside the functions that read or prepare data (it adds about 0.25 s to every start).

Preprocessing (Lucic et al. 2018): pixels stay uint8 `[N, H, W, C]` on the host and on the
devices; `DataSource.batch` turns them into float32 in [0, 1] at batch time. MNIST and
Fashion-MNIST are 28x28x1, CIFAR-10 32x32x3, CelebA is centre-cropped to 160x160, resized
bilinearly to 64x64x3 and rounded to uint8 (`preprocess.celeb_a`; compare_gan v1 kept the resized
images as float: the rounding moves a pixel by at most 0.5/255, and its effect on FID is measured
in experiments/lucic2018/README.md). The train split is the training set; the TFDS test split
gives the real images for the FID reference statistics (v1 used its own dev split of CelebA:
`gan_lib.py` `load_dataset`, L144–150, `image_celeba_tune-dev`).

The preprocessed arrays are cached as `.npy` (under `DATA_DIR/gancmp_cache`, or
`~/.cache/gancmp/datasets` when the data dir is remote or not given), so only the first load
decodes the images.

Multi-host contract. The training set is cut into `process_count` contiguous blocks:
process `p` holds global examples `[p * N // P, (p + 1) * N // P)` (`process_block`), so example
`i` lives on process `host_of(i, N, P)` at local row `i - process_block(host_of(...))[0]`.
Batches are drawn by global index (`DataSource.batch` permutes `range(N)` with the trial key), so
a run whose training array is a global `jax.Array` laid out in these blocks (process-major, as
`jax.make_array_from_process_local_data` lays out row blocks when N is divisible by the device
count) gathers exactly the global batches of a single-process run. The trainer today replicates
the whole split on every device, so `load` defaults to the whole split (`process_count=1`).
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gancmp import storage
from gancmp.data import preprocess

PREPROCESS_VERSION = 1  # bump when the preprocessing changes, to invalidate caches
CHUNK = 512  # examples decoded and preprocessed at a time


class DatasetUnavailableError(RuntimeError):
    """The dataset is not prepared locally and cannot be downloaded here."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one TFDS dataset becomes a training set.

    Attributes:
      raw_shape: shape of one decoded TFDS image `(H, W, C)`.
      shape: shape of one preprocessed example `(H, W, C)`.
      preprocess: uint8 `[n, *raw_shape]` -> uint8 `[n, *shape]`.
      train_size: examples in the TFDS train split (what a train step shuffles over).
      test_split: the TFDS split used for the FID reference statistics.
    """

    raw_shape: tuple[int, int, int]
    shape: tuple[int, int, int]
    preprocess: Callable[[np.ndarray], np.ndarray]
    train_size: int
    test_split: str = "test"


SPECS: dict[str, Spec] = {
    "mnist": Spec((28, 28, 1), (28, 28, 1), preprocess.identity, 60_000),
    "fashion_mnist": Spec((28, 28, 1), (28, 28, 1), preprocess.identity, 60_000),
    "cifar10": Spec((32, 32, 3), (32, 32, 3), preprocess.identity, 50_000),
    "celeb_a": Spec((218, 178, 3), (preprocess.CELEB_A_SIZE, preprocess.CELEB_A_SIZE, 3),
                    preprocess.celeb_a, 162_770),
}

# (name, split, data_dir) -> random-access source: len() and [i] -> {"image": ...}.
Opener = Callable[[str, str, "str | None"], Sequence[Mapping[str, Any]]]


# ---------------------------------------------------------------- multi-host index mapping


def process_block(process_index: int, num_examples: int, process_count: int) -> tuple[int, int]:
    """Global example range `[start, stop)` held by process `process_index` of `process_count`:
    contiguous blocks of sizes differing by at most one, in process order."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return (process_index * num_examples // process_count,
            (process_index + 1) * num_examples // process_count)


def host_of(index: np.ndarray | int, num_examples: int, process_count: int) -> np.ndarray | int:
    """The process holding global example `index` (int or int array, any shape): the inverse of
    `process_block`, i.e. the largest `p` with `p * N // P <= index`."""
    return ((index + 1) * process_count - 1) // num_examples


# ---------------------------------------------------------------- reading


def _unavailable(name: str, data_dir: str | None, reason: str) -> DatasetUnavailableError:
    """The one-line error of a dataset not prepared in `data_dir` (None: config.data_dir not
    set), naming the command that prepares it."""
    where = data_dir or ("the default TFDS data dir (~/tensorflow_datasets; config.data_dir is "
                         "not set)")
    return DatasetUnavailableError(
        f"dataset {name!r} is not available in {where}: {reason}. Prepare it once on a machine "
        f"with network access (`gancmp prepare-data {name} --data_dir DIR`, which needs "
        f"`pip install 'gancmp[prepare]'`), copy DIR here if needed (or use a gs:// DIR), then "
        f"pass `--config.data_dir=DIR`. The offline datasets are ring8, grid25 and the convex "
        f"polygons."
    )


def prepared(name: str, data_dir: str | None) -> bool:
    """Whether a version of `name` is prepared under `data_dir` (None: TFDS's default data dir),
    from the files alone: its `dataset_info.json`. A TFDS builder asked the same about a dataset
    never prepared there looks for the dataset's metadata on GCS (a network call) and leaves an
    empty temporary directory behind."""
    from tensorflow_datasets.core import constants  # noqa: PLC0415 (slow import)

    base = storage.join(data_dir or constants.DATA_DIR, *name.split("/"))
    return any(storage.glob(storage.join(base, *["*"] * depth, "dataset_info.json"))
               for depth in (1, 2))  # NAME/VERSION or NAME/CONFIG/VERSION


def open_split(name: str, split: str, data_dir: str | None) -> Sequence[Mapping[str, Any]]:
    """TFDS's random-access reader for a prepared array_record split; never downloads.

    Raises DatasetUnavailableError when the split is not prepared in `data_dir`, or was prepared
    in a format without random access (TFRecord).
    """
    import tensorflow_datasets as tfds  # noqa: PLC0415 (slow import, only for real data)

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    # KeyError: TFDS's "`splits` is empty" of a dataset never prepared in its default data dir
    except (NotImplementedError, ValueError, FileNotFoundError, OSError, KeyError) as e:
        if not prepared(name, data_dir):
            raise _unavailable(name, data_dir, "it is not prepared there") from e
        if isinstance(e, NotImplementedError):
            raise _unavailable(name, data_dir, "it was prepared without random access "
                               "(TFRecord); prepare it again with gancmp prepare-data, which "
                               "writes array_record, into another DIR") from e
        raise


def _version(ds: Any) -> str:
    info = getattr(ds, "dataset_info", None)
    return str(getattr(info, "version", "unknown"))


def _read_raw(ds: Sequence[Mapping[str, Any]], indices: Sequence[int],
              channels: int) -> np.ndarray:
    """Decoded images of `ds` at `indices`, uint8 `[len(indices), H, W, channels]`."""
    records: Sequence[Mapping[str, Any]] | None = None
    getitems = getattr(ds, "__getitems__", None)
    if getitems is not None:
        try:  # batched read (parallel in array_record); the TFDS 4.9 mock does not support it
            records = getitems(list(indices))
        except TypeError:
            records = None
    if records is None:
        records = [ds[i] for i in indices]
    return np.stack([preprocess.decode_image(r["image"], channels) for r in records])


def read_examples(ds: Sequence[Mapping[str, Any]], spec: Spec, start: int = 0,
                  stop: int | None = None, chunk: int = CHUNK) -> np.ndarray:
    """Examples `[start, stop)` of the random-access source `ds`, decoded and preprocessed in
    chunks of `chunk`: uint8 `[stop - start, *spec.shape]`."""
    stop = len(ds) if stop is None else stop
    out = np.empty((stop - start, *spec.shape), np.uint8)
    for lo in range(start, stop, chunk):
        hi = min(lo + chunk, stop)
        raw = _read_raw(ds, range(lo, hi), spec.raw_shape[-1])
        if raw.shape[1:] != spec.raw_shape:
            raise ValueError(f"expected images {spec.raw_shape}, got {raw.shape[1:]}")
        out[lo - start:hi - start] = spec.preprocess(raw)
    return out


def default_cache_dir(data_dir: str | None) -> str:
    """`DATA_DIR/gancmp_cache` for a local data dir, else `~/.cache/gancmp/datasets`."""
    if data_dir and "://" not in data_dir:
        return os.path.join(data_dir, "gancmp_cache")
    return storage.cache_root("datasets")


def _cache_path(cache_dir: str, name: str, version: str, split: str, start: int, stop: int,
                n: int) -> str:
    return os.path.join(cache_dir, f"{name}-{version}-{split}-{start}-{stop}-of-{n}"
                                   f"-p{PREPROCESS_VERSION}.npy")


def _cached_read(ds: Sequence[Mapping[str, Any]], name: str, split: str, spec: Spec,
                 start: int, stop: int, cache_dir: str | None) -> np.ndarray:
    """`read_examples(ds, spec, start, stop)`, through the `.npy` cache when `cache_dir` is set.
    A cached whole split also serves any block of it."""
    if cache_dir is None:
        return read_examples(ds, spec, start, stop)
    n, version = len(ds), _version(ds)
    path = _cache_path(cache_dir, name, version, split, start, stop, n)
    whole = _cache_path(cache_dir, name, version, split, 0, n, n)
    if storage.exists(path):
        return np.load(io.BytesIO(storage.read_bytes(path)))
    if storage.exists(whole):
        if storage.is_remote(whole):
            return np.load(io.BytesIO(storage.read_bytes(whole)))[start:stop]
        return np.array(np.load(whole, mmap_mode="r")[start:stop])  # local: only the block
    x = read_examples(ds, spec, start, stop)
    try:
        with storage.open_atomic(path) as f:
            np.save(f, x)
    except OSError:
        pass  # a read-only data dir: work without the cache
    return x


def load(name: str, data_dir: str | None = None, *, process_index: int = 0,
         process_count: int = 1, cache: bool = True, cache_dir: str | None = None,
         opener: Opener = open_split) -> dict[str, np.ndarray]:
    """The TFDS dataset `name`, preprocessed, as host arrays (`gancmp.data.source.load` wraps
    them in a DataSource).

    Args:
      name: one of `SPECS` (mnist, fashion_mnist, cifar10, celeb_a).
      data_dir: TFDS data dir holding the prepared array_record data (local path or gs://);
        None for TFDS's default.
      process_index, process_count: load only this process's block of the training split (see
        the module docstring); the default is the whole split. The test split is always whole.
      cache: read/write the preprocessed arrays as `.npy` in `cache_dir`
        (default `default_cache_dir(data_dir)`).
      opener: `(name, split, data_dir) -> random-access source`; injectable for tests.

    Returns:
      {"train": uint8 `[n, H, W, C]` (`n` = this process's block), "test": uint8
      `[n_test, H, W, C]`}, with `(H, W, C)` = `SPECS[name].shape`.

    Raises:
      KeyError: unknown name. DatasetUnavailableError: not prepared in `data_dir`.
    """
    spec = _spec(name)
    cdir = (cache_dir or default_cache_dir(data_dir)) if cache else None
    train_ds = opener(name, "train", data_dir)
    start, stop = process_block(process_index, len(train_ds), process_count)
    train = _cached_read(train_ds, name, "train", spec, start, stop, cdir)
    test_ds = opener(name, spec.test_split, data_dir)
    test = _cached_read(test_ds, name, spec.test_split, spec, 0, len(test_ds), cdir)
    return {"train": train, "test": test}


def _spec(name: str) -> Spec:
    if name not in SPECS:
        raise KeyError(f"unknown TFDS dataset {name!r}; allowed: {', '.join(SPECS)}")
    return SPECS[name]


# ---------------------------------------------------------------- preparing (needs TensorFlow)


def prepare(name: str, data_dir: str | None = None) -> str:
    """Download and prepare `name` in the array_record format under `data_dir` (TFDS's default
    when None); returns the prepared dataset's directory. Needs network and TensorFlow
    (`pip install 'gancmp[prepare]'`); a no-op when already prepared."""
    _spec(name)
    try:
        import tensorflow  # noqa: F401, PLC0415 (TFDS's dataset builders need it)
    except ImportError as e:
        raise DatasetUnavailableError(
            f"preparing {name!r} needs TensorFlow, which is not installed: run "
            f"`pip install 'gancmp[prepare]'` (only this step needs it), then "
            f"`gancmp prepare-data {name} --data_dir DIR`") from e
    import tensorflow_datasets as tfds  # noqa: PLC0415

    builder = tfds.builder(name, data_dir=data_dir)
    try:
        builder.download_and_prepare(file_format="array_record")
    except OSError as e:  # includes ConnectionError: no network, or the host refused
        raise DatasetUnavailableError(
            f"could not download {name!r} ({e}). Run `gancmp prepare-data {name} --data_dir DIR`"
            f" on a machine with network access, then pass `--config.data_dir=DIR` here") from e
    return str(builder.data_dir)

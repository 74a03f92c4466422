"""Anyone's own images as training data: the dataset names `folder:PATH[@HxW]` and
`npz:PATH[@HxW]`.

`folder:/data/faces` trains on the image files directly in a folder (`images.list_images`: by
extension, in sorted name order); `npz:/data/x.npz` on the `images` array of an `.npz`
([N, H, W, C], C ∈ {1, 3}, uint8 or float in [0, 1]). A trailing `@HxW` (`folder:/data/faces@64x64`)
resizes every image to H×W once, at load time, on the host, with Pillow's bicubic `Image.resize`
(antialiased when shrinking: `images.resize_image`); the aspect ratio is not kept, so crop first if
it matters. Without `@HxW` all images must have one size.

Pixels are uint8 [N, H, W, C] on the host and on the devices, as for the TFDS sets
(`DataSource.batch` makes float32 in [0, 1] of them); float images are rounded to uint8
(round(255·x)) before any resize. Channels of a folder: 1 (`Image.convert("L")`) when every file
is grey (PIL modes 1, L, LA, I, F), else 3 (`Image.convert("RGB")`: grey repeated, alpha dropped,
palettes expanded); an `.npz` keeps its C.

Held-out split (the real side of FID, KID and precision/recall): `test` is the N // 10 images whose
position i in sorted order has the smallest sha256 of "gancmp-heldout:<i>" (`heldout_mask`): a fixed
pseudo-random 10 %, the same on every machine, that does not depend on how the files are named, so
a folder sorted by class still gives a test split of every class. `train` is the other images. Both
keep the sorted order. A set of fewer than 10 images has no test split (it trains, but cannot be
scored).

Identity (`fingerprint`): source path, counts, the split rule, and `content_sha256`, the sha256 of
the sorted file list with every file's bytes (for each file its name, a NUL, the sha256 of its
bytes; an `.npz`: the sha256 of the file), so two machines with the same folder agree. The
evaluator records it, and its `key` names the caches: the decoded arrays (`load`) and the FID
reference statistics.

Config validation reads headers only (`example_shape`, `num_images`): the first image's (every
image's, stopping at the first colour one, when the first is grey) or the `.npz`'s `.npy` header.
Every problem is an `ImageSourceError` whose one-line message names the dataset and what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re

import numpy as np

from gancmp import storage
from gancmp.data import images as image_io
from gancmp.data.images import ImageSourceError

KINDS = ("folder", "npz")
HELP = "folder:PATH or npz:PATH, optionally with @HxW to resize (folder:/data/faces@64x64)"
HELDOUT_DIVISOR = 10  # test = N // 10 images
SPLIT_RULE = ("test: the N // 10 images whose sorted position i has the smallest "
              "sha256('gancmp-heldout:<i>'); train: the rest")
RESIZE_RULE = "Pillow Image.resize BICUBIC (antialiased), once at load time"
FORMAT_VERSION = 1  # of the decoded arrays: bump when reading or resizing changes


@dataclasses.dataclass(frozen=True)
class UserDataset:
    """A parsed `folder:`/`npz:` dataset name.

    Attributes:
      name: the name as written (what records and logs show).
      kind: "folder" or "npz".
      path: the folder or file (`~` expanded).
      size: (H, W) to resize to, or None (keep the images' own size).
    """

    name: str
    kind: str
    path: str
    size: tuple[int, int] | None = None


def is_user_dataset(name: object) -> bool:
    """Whether `name` is written as a user dataset (`folder:…` or `npz:…`), valid or not."""
    return isinstance(name, str) and name.partition(":")[0] in KINDS and ":" in name


def parse(name: str) -> UserDataset:
    """`folder:PATH[@HxW]` / `npz:PATH[@HxW]` → UserDataset. ImageSourceError for another
    prefix, an empty path or a size that is not two positive integers."""
    kind, _, rest = name.partition(":")
    if not is_user_dataset(name):
        raise ImageSourceError(f"{name}: not a user dataset; write {HELP}")
    size = None
    match = re.fullmatch(r"(.*)@(\d+)x(\d+)", rest)
    if match:
        rest, size = match.group(1), (int(match.group(2)), int(match.group(3)))
        if min(size) < 1:
            raise ImageSourceError(f"{name}: size {size[0]}x{size[1]} must be positive")
    if not rest:
        raise ImageSourceError(f"{name}: no path; write {HELP}")
    return UserDataset(name, kind, os.path.expanduser(rest), size)


def _missing(ds: UserDataset) -> str:
    what = "folder" if ds.kind == "folder" else "file"
    problem = f"not a {what}" if storage.exists(ds.path) else f"no such {what}"
    hint = " (a size is written @HxW, e.g. @64x64)" if "@" in ds.path else ""
    return f"{ds.name}: {problem} {ds.path}{hint}"


def _named(ds: UserDataset, e: ImageSourceError) -> ImageSourceError:
    """`e` (which names `ds.path` or one of its files) as a problem of the dataset `ds.name`."""
    return ImageSourceError(f"{ds.name}: {str(e).removeprefix(f'{ds.path}: ')}")


def _paths(ds: UserDataset) -> list[str]:
    if not storage.isdir(ds.path):
        raise ImageSourceError(_missing(ds))
    try:
        return image_io.folder_images(ds.path)
    except ImageSourceError as e:
        raise _named(ds, e) from None


def _scan(ds: UserDataset) -> tuple[list[str] | None, int, tuple[int, int, int]]:
    """(the folder's image paths, or None for an `.npz`; the number of images; the example
    shape), from headers only."""
    if ds.kind == "npz":
        if not storage.isfile(ds.path):
            raise ImageSourceError(_missing(ds))
        try:
            shape, dtype = image_io.npz_images_header(ds.path)
            image_io.check_layout(shape, dtype, ds.path)
        except ImageSourceError as e:
            raise _named(ds, e) from None
        if shape[0] == 0:
            raise ImageSourceError(f"{ds.name}: no images")
        return None, shape[0], (*(ds.size or shape[1:3]), shape[3])
    paths = _paths(ds)
    try:
        height, width, grey = image_io.image_header(paths[0])
        grey = grey and all(image_io.image_header(p)[2] for p in paths[1:])
    except ImageSourceError as e:
        raise _named(ds, e) from None
    return paths, len(paths), (*(ds.size or (height, width)), 1 if grey else 3)


def num_images(ds: UserDataset) -> int:
    """Images in the set (train and test), from the file list or the `.npy` header."""
    return len(_paths(ds)) if ds.kind == "folder" else _scan(ds)[1]


def header(ds: UserDataset) -> tuple[int, tuple[int, int, int]]:
    """(images in the set, train and test; the (H, W, C) of one example), from one read of the
    headers (`num_images` and `example_shape` together)."""
    _, n, shape = _scan(ds)
    return n, shape


def example_shape(ds: UserDataset) -> tuple[int, int, int]:
    """(H, W, C) of one training example, from headers only (see the module docstring): `size`
    if given, else the first image's; C by the channel rule."""
    return _scan(ds)[2]


def heldout_mask(n: int) -> np.ndarray:
    """bool [n]: True at the n // 10 test positions (`SPLIT_RULE`); a function of n only."""
    keys = [hashlib.sha256(f"gancmp-heldout:{i}".encode()).digest() for i in range(n)]
    mask = np.zeros(n, bool)
    mask[sorted(range(n), key=keys.__getitem__)[:n // HELDOUT_DIVISOR]] = True
    return mask


def content_sha256(ds: UserDataset, paths: list[str] | None = None) -> str:
    """sha256 of the set's content (see the module docstring), hex; `paths`: the folder's image
    files when already listed."""
    if ds.kind == "npz":
        return storage.sha256_file(ds.path)
    h = hashlib.sha256()
    for path in paths or _paths(ds):
        h.update(os.path.basename(path).encode() + b"\0" + bytes.fromhex(storage.sha256_file(path)))
    return h.hexdigest()


def fingerprint(ds: UserDataset) -> dict[str, object]:
    """What identifies the set's data, JSON-able: source (absolute path), kind, example shape,
    resize, num_images / num_train / num_test, split rule, content_sha256 and `key`, a file-name
    safe id of the decoded arrays (kind, hash prefix, shape, format version)."""
    paths, n, shape = _scan(ds)
    sha = content_sha256(ds, paths)
    n_test = n // HELDOUT_DIVISOR
    return {"source": storage.absolute(ds.path), "kind": ds.kind, "shape": list(shape),
            "resize": f"{ds.size[0]}x{ds.size[1]} {RESIZE_RULE}" if ds.size else None,
            "num_images": n, "num_train": n - n_test, "num_test": n_test, "split": SPLIT_RULE,
            "content_sha256": sha,
            "key": f"{ds.kind}-{sha[:16]}-{'x'.join(map(str, shape))}-v{FORMAT_VERSION}"}


def _decode_folder(ds: UserDataset, shape: tuple[int, int, int]) -> np.ndarray:
    paths = _paths(ds)
    mode = "L" if shape[2] == 1 else "RGB"
    out = np.empty((len(paths), *shape), np.uint8)
    for i, path in enumerate(paths):
        try:
            image = image_io.read_image(path, mode, ds.size)
        except ImageSourceError as e:
            raise _named(ds, e) from None
        if image.shape != shape:
            raise ImageSourceError(
                f"{ds.name}: mixed image sizes: {os.path.basename(paths[0])} is "
                f"{shape[0]}x{shape[1]} but {os.path.basename(path)} is "
                f"{image.shape[0]}x{image.shape[1]}; add @HxW to the name to resize them all")
        out[i] = image
    return out


def _decode_npz(ds: UserDataset) -> np.ndarray:
    try:
        source = image_io.open_npz(ds.path)
    except ImageSourceError as e:
        raise _named(ds, e) from None
    x = source.read(0, source.num)
    if x.dtype != np.uint8:
        x = np.round(x.astype(np.float64) * 255).astype(np.uint8)
    if ds.size is None:
        return x
    return np.stack([image_io.resize_image(image, ds.size) for image in x])


@dataclasses.dataclass(frozen=True)
class Splits:
    """A loaded user dataset: `train` uint8 [N − N // 10, H, W, C], `test` uint8
    [N // 10, H, W, C] (the held-out images, `heldout_mask`), `info` = `fingerprint`."""

    train: np.ndarray
    test: np.ndarray
    info: dict[str, object]


def load(ds: UserDataset, cache_dir: str | None = None) -> Splits:
    """The set, decoded (and resized) once, split into train and test. With `cache_dir`, the
    decoded images are kept there as `.npy` named by the fingerprint's key, so a later load only
    hashes the files. Raises ImageSourceError (unreadable file, mixed sizes without `@HxW`, …)."""
    info = fingerprint(ds)
    shape = tuple(info["shape"])
    path = os.path.join(cache_dir, f"user-{info['key']}.npy") if cache_dir else None
    images = (np.load(io.BytesIO(storage.read_bytes(path))) if path and storage.exists(path)
              else None)
    if images is None or images.shape != (info["num_images"], *shape):
        images = _decode_folder(ds, shape) if ds.kind == "folder" else _decode_npz(ds)
        if path:
            try:
                with storage.open_atomic(path) as f:
                    np.save(f, images)
            except OSError:
                pass  # a read-only cache: work without it
    test = heldout_mask(len(images))
    return Splits(images[~test], images[test], info)

"""Users' own images: a folder of image files, an `.npz` holding an `images` array, or any array.

Each becomes an `ImageSet`: `num` images of one shape [H, W, C], read `batches(size)` at a time
as float32 in [0, 1] (uint8 pixels divided by 255, the convention of the FID feature extractor),
so a large folder never has to fit in memory.

Folders: the files directly in the folder (subfolders are not read) whose extension is one of
`IMAGE_EXTENSIONS` (any case), in sorted name order, decoded with Pillow and converted to RGB
(`Image.convert("RGB")`: grey is repeated over the 3 channels the FID network needs, alpha is
dropped, palettes are expanded), as pytorch-fid and clean-fid read them. Nothing here resizes, so
all images of a set must have one size; the FID network's preprocessing resizes each batch to
299×299.

`.npz`: an `images` array [N, H, W, C] (NHWC, C ∈ {1, 3}), uint8 (0–255) or float in [0, 1].

Every problem is an `ImageSourceError` (a ValueError) whose one-line message names the file and
what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

import numpy as np

IMAGE_EXTENSIONS = ("bmp", "jpeg", "jpg", "pgm", "png", "ppm", "tif", "tiff", "webp")


class ImageSourceError(ValueError):
    """A folder or file that cannot be read as a set of images; the message says why."""


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """`num` images of shape `shape` = (H, W, C) from `name` (a folder, a file, a dataset).

    `read(start, stop)` returns images [stop − start, H, W, C] as uint8 or float in [0, 1];
    use `batches`, which converts them to the extractor's float32 in [0, 1].
    """

    name: str
    kind: str  # "folder", "npz", "dataset" or "array"
    shape: tuple[int, int, int]
    num: int
    read: Callable[[int, int], np.ndarray] = dataclasses.field(repr=False)

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """Consecutive float32 batches [≤ size, H, W, C] in [0, 1], in order, `num` in all."""
        if size < 1:
            raise ValueError(f"batch size must be positive, got {size}")
        for start in range(0, self.num, size):
            yield as_unit_float(self.read(start, min(start + size, self.num)))


def as_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 [..] (0–255) → float32 / 255; float images → float32 unchanged."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    return images.astype(np.float32, copy=False)


def _take(num: int | None, available: int, name: str) -> int:
    if available == 0:
        raise ImageSourceError(f"{name}: no images")
    if num is None:
        return available
    if num < 1:
        raise ImageSourceError(f"num must be positive, got {num}")
    if num > available:
        raise ImageSourceError(f"{name}: {num} images asked for, but it has only {available}")
    return num


def from_array(images: np.ndarray, name: str, kind: str = "array",
               num: int | None = None) -> ImageSet:
    """The first `num` (default all) images of an array [N, H, W, C], C ∈ {1, 3}, uint8 or float
    in [0, 1]. Raises ImageSourceError naming `name` for any other shape, dtype or range."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        hint = " (channels first? the layout must be NHWC)" if x.ndim == 4 and \
            x.shape[1] in (1, 3) else ""
        raise ImageSourceError(f"{name}: images must be [N, H, W, C] with C 1 or 3, got shape "
                               f"{x.shape}{hint}")
    n = _take(num, x.shape[0], name)
    x = x[:n]
    if np.issubdtype(x.dtype, np.floating):
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
            raise ImageSourceError(f"{name}: float images must be in [0, 1], got values in "
                                   f"[{lo:.4g}, {hi:.4g}]")
    elif x.dtype != np.uint8:
        raise ImageSourceError(f"{name}: images must be uint8 (0-255) or float in [0, 1], got "
                               f"dtype {x.dtype}")
    return ImageSet(name, kind, tuple(int(s) for s in x.shape[1:]), n,
                    lambda start, stop: x[start:stop])


def open_npz(path: str, num: int | None = None) -> ImageSet:
    """The `images` array of an `.npz` file (see the module docstring), first `num` images."""
    with open_npz_file(path) as data:
        if "images" not in data.files:
            raise ImageSourceError(f"{path}: no 'images' array in this .npz (it holds: "
                                   f"{', '.join(data.files) or 'nothing'})")
        try:
            images = data["images"]
        except (OSError, ValueError) as e:
            raise ImageSourceError(f"{path}: cannot read its 'images' array ({e})") from None
    return from_array(images, path, "npz", num)


def open_npz_file(path: str) -> np.lib.npyio.NpzFile:
    """`np.load(path)` of an `.npz` (no pickles); ImageSourceError when it is not one."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ImageSourceError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ImageSourceError(f"{path}: a single .npy array, not an .npz archive")
    return data


def list_images(folder: str) -> list[str]:
    """Paths of the image files directly in `folder`, by extension, in sorted name order."""
    names = sorted(n for n in os.listdir(folder)
                   if n.rpartition(".")[2].lower() in IMAGE_EXTENSIONS
                   and os.path.isfile(os.path.join(folder, n)))
    return [os.path.join(folder, n) for n in names]


def _image_error(path: str, e: Exception) -> ImageSourceError:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ImageSourceError(f"{path}: not a readable image ({reason})")


def read_image(path: str) -> np.ndarray:
    """One image file as uint8 RGB [H, W, 3] (`Image.convert("RGB")`: grey → 3 equal channels)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _image_error(path, e) from None


def _image_size(path: str) -> tuple[int, int]:
    """(H, W) from the file's header only."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _image_error(path, e) from None
    return height, width


def open_folder(folder: str, num: int | None = None) -> ImageSet:
    """The first `num` (default all) images of `folder` (see the module docstring), as RGB.

    Every file's header is read first, so an unreadable file or a second image size is reported
    before any image is decoded. Raises ImageSourceError for an empty folder, a file that is not
    an image, or mixed sizes.
    """
    if not os.path.isdir(folder):
        raise ImageSourceError(f"{folder}: not a folder")
    paths = list_images(folder)
    if not paths:
        sub = [n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n))]
        note = f" (subfolders such as {sub[0]!r} are not read)" if sub else ""
        raise ImageSourceError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in "
                               f"this folder{note}")
    paths = paths[:_take(num, len(paths), folder)]
    first = _image_size(paths[0])
    for path in paths[1:]:
        size = _image_size(path)
        if size != first:
            raise ImageSourceError(
                f"{folder}: mixed image sizes: {os.path.basename(paths[0])} is "
                f"{first[0]}x{first[1]} but {os.path.basename(path)} is {size[0]}x{size[1]}; "
                "images are not resized before batching, so resize them to one size first")

    def read(start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *first, 3), np.uint8)
        for i, path in enumerate(paths[start:stop]):
            image = read_image(path)
            if image.shape[:2] != first:  # the file changed since its header was read
                raise ImageSourceError(f"{path}: size {image.shape[0]}x{image.shape[1]}, "
                                       f"expected {first[0]}x{first[1]}")
            out[i] = image
        return out

    return ImageSet(folder, "folder", (*first, 3), len(paths), read)

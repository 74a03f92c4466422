"""Users' own images: a folder of image files, an `.npz` holding an `images` array, or any array.

Each becomes an `ImageSet`: `num` images of one shape [H, W, C], read `batches(size)` at a time
as float32 in [0, 1] (uint8 pixels divided by 255, the convention of the FID feature extractor),
so a large folder never has to fit in memory.

Folders: the files directly in the folder (subfolders are not read) whose extension is one of
`IMAGE_EXTENSIONS` (any case), in sorted name order, decoded with Pillow and converted to RGB
(`Image.convert("RGB")`: grey is repeated over the 3 channels the FID network needs, alpha is
dropped, palettes are expanded), as pytorch-fid and clean-fid read them. An `ImageSet` is never
resized, so all images of a set must have one size; the FID network's preprocessing resizes each
batch to 299×299. (Training data, `gancmp.data.user`, may be resized once at load time with
`read_image(..., size=)` / `resize_image`: Pillow's antialiased bicubic.)

`.npz`: an `images` array [N, H, W, C] (NHWC, C ∈ {1, 3}), uint8 (0–255) or float in [0, 1].

Every problem is an `ImageSourceError` (a ValueError) whose one-line message names the file and
what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator

import numpy as np

from gancmp import storage

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
    check_layout(x.shape, x.dtype, name)
    n = _take(num, x.shape[0], name)
    x = x[:n]
    if np.issubdtype(x.dtype, np.floating):
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
            raise ImageSourceError(f"{name}: float images must be in [0, 1], got values in "
                                   f"[{lo:.4g}, {hi:.4g}]")
    return ImageSet(name, kind, tuple(int(s) for s in x.shape[1:]), n,
                    lambda start, stop: x[start:stop])


def check_layout(shape: tuple[int, ...], dtype: np.dtype, name: str) -> None:
    """ImageSourceError naming `name` unless images of this shape and dtype are [N, H, W, C],
    C ∈ {1, 3}, uint8 or float (the values of float images are checked by `from_array`)."""
    if len(shape) != 4 or shape[-1] not in (1, 3):
        hint = " (channels first? the layout must be NHWC)" if len(shape) == 4 and \
            shape[1] in (1, 3) else ""
        raise ImageSourceError(f"{name}: images must be [N, H, W, C] with C 1 or 3, got shape "
                               f"{tuple(shape)}{hint}")
    if not (np.issubdtype(dtype, np.floating) or dtype == np.uint8):
        raise ImageSourceError(f"{name}: images must be uint8 (0-255) or float in [0, 1], got "
                               f"dtype {dtype}")


def open_npz(path: str, num: int | None = None) -> ImageSet:
    """The `images` array of an `.npz` file (see the module docstring), first `num` images."""
    with open_npz_file(path) as data:
        if "images" not in data.files:
            raise ImageSourceError(f"{path}: no 'images' array in this .npz (it holds: "
                                   f"{', '.join(data.files) or 'nothing'})")
        try:
            images = data["images"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise ImageSourceError(f"{path}: cannot read its 'images' array ({e})") from None
    return from_array(images, path, "npz", num)


def open_npz_file(path: str) -> np.lib.npyio.NpzFile:
    """`np.load(path)` of an `.npz` (no pickles); ImageSourceError when it is not one."""
    try:
        data = np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated: BadZipFile
        raise ImageSourceError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ImageSourceError(f"{path}: a single .npy array, not an .npz archive")
    return data


def list_images(folder: str, recursive: bool = False) -> list[str]:
    """Paths of the image files directly in `folder` (`recursive`: in it and every folder below
    it), by extension, in sorted order of their path relative to `folder`."""
    found = []
    for n in storage.listdir(folder):
        path = os.path.join(folder, n)
        if n.rpartition(".")[2].lower() in IMAGE_EXTENSIONS and storage.isfile(path):
            found.append(path)
        elif recursive and storage.isdir(path):
            found += list_images(path, recursive=True)
    return sorted(found, key=lambda p: p[len(folder):].strip("/").split("/"))  # by relative path


def folder_images(folder: str, recursive: bool = False) -> list[str]:
    """`list_images(folder, recursive)`; ImageSourceError when `folder` is not a folder or holds
    no image file (naming a subfolder, which is read only with `recursive`, if there is one)."""
    if not storage.isdir(folder):
        what = "not a folder" if storage.exists(folder) else "no such folder"
        raise ImageSourceError(f"{folder}: {what}")
    try:
        paths = list_images(folder, recursive)
    except OSError as e:
        raise ImageSourceError(f"{folder}: cannot list this folder ({e.strerror or e})") from None
    if not paths:
        sub = [n for n in storage.listdir(folder) if storage.isdir(os.path.join(folder, n))]
        note = (f" (subfolders such as {sub[0]!r} are not read without --recursive)"
                if sub and not recursive else "")
        raise ImageSourceError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in "
                               f"this folder{note}")
    return paths


def _image_error(path: str, e: Exception) -> ImageSourceError:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ImageSourceError(f"{path}: not a readable image ({reason})")


def read_image(path: str, mode: str = "RGB", size: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as uint8 [H, W, 3] (`mode` "RGB": `Image.convert("RGB")`, grey → 3 equal
    channels) or [H, W, 1] (`mode` "L": `Image.convert("L")`, colour → luma); resized to
    `size` = (H, W) with `resize_image` when given."""
    from PIL import Image

    try:
        with storage.open_file(path, "rb") as f, Image.open(f) as im:
            im = im.convert(mode)
            image = np.asarray(im if size is None else _resize(im, size))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _image_error(path, e) from None
    return image[..., None] if image.ndim == 2 else image


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w, C] (C ∈ {1, 3}) → uint8 [H, W, C] for `size` = (H, W): Pillow's bicubic
    `Image.resize` (Keys a = −0.5; when shrinking, the kernel is widened by the scale factor, so
    the resize is antialiased), rounded to uint8 by Pillow. The identity when the size matches."""
    from PIL import Image

    if image.shape[:2] == tuple(size):
        return image
    out = np.asarray(_resize(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image),
                             size))
    return out[..., None] if out.ndim == 2 else out


def _resize(im, size: tuple[int, int]):
    """A PIL image resized to (H, W) = `size` by `resize_image`'s rule."""
    from PIL import Image

    if (im.height, im.width) == tuple(size):
        return im
    return im.resize((size[1], size[0]), Image.Resampling.BICUBIC)


# PIL's first band of a grey image: 1-bit, 8-bit, 32-bit int (also 16-bit), 32-bit float; with
# or without an alpha band. Palette images ("P") count as colour.
_GREY_BANDS = ("1", "L", "I", "F")


def image_header(path: str) -> tuple[int, int, bool]:
    """(H, W, is_grey) from the file's header only (no pixels are decoded)."""
    from PIL import Image

    try:
        with storage.open_file(path, "rb") as f, Image.open(f) as im:
            width, height = im.size
            grey = im.getbands()[0] in _GREY_BANDS
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _image_error(path, e) from None
    return height, width, grey


def _image_size(path: str) -> tuple[int, int]:
    """(H, W) from the file's header only."""
    return image_header(path)[:2]


def npz_images_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the `images` array of an `.npz`, from its `.npy` header only (the pixels
    are not read). Raises ImageSourceError when `path` is no `.npz` with an `images` array."""
    try:
        with storage.open_file(path, "rb") as raw, zipfile.ZipFile(raw) as archive:
            members = archive.namelist()
            header = None
            if "images.npy" in members:
                with archive.open("images.npy") as f:
                    fmt = np.lib.format
                    read = (fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0)
                            else fmt.read_array_header_2_0)
                    header = read(f)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ImageSourceError(f"{path}: not a readable .npz file ({e})") from None
    if header is None:
        held = ", ".join(m.removesuffix(".npy") for m in members) or "nothing"
        raise ImageSourceError(f"{path}: no 'images' array in this .npz (it holds: {held})")
    shape, _, dtype = header
    return tuple(int(s) for s in shape), np.dtype(dtype)


def open_folder(folder: str, num: int | None = None, recursive: bool = False) -> ImageSet:
    """The first `num` (default all) images of `folder` (see the module docstring), as RGB;
    `recursive`: those of its subfolders too, at any depth (sorted by relative path).

    Every file's header is read first, so an unreadable file or a second image size is reported
    before any image is decoded. Raises ImageSourceError for an empty folder, a file that is not
    an image, or mixed sizes.
    """
    paths = folder_images(folder, recursive)
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

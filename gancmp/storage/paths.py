"""Path operations that work the same on a local path and on a gs:// URL (gcsfs, through
`remote.filesystem`, which checks the bucket and the credentials once).

Object storage has no folders: `makedirs` of a gs:// URL does nothing (a key's prefix is its
folder), `isdir` is true when some key lies under the prefix, a rename is a copy then a delete.
A remote file opened for writing becomes the object only when it is closed without error, so a
reader never sees half of it.
"""

from __future__ import annotations

import builtins
import fnmatch
import glob as glob_lib
import hashlib
import os
import posixpath
import shutil
from typing import IO, Any

from gancmp.storage import remote
from gancmp.storage.remote import is_remote


def _fs(path: str) -> Any:
    return remote.filesystem(path)


def _url(key: str) -> str:
    return f"gs://{key}"


def join(path: str, *parts: str) -> str:
    """`os.path.join` for local paths, "/"-joined for URLs."""
    path = os.fspath(path)
    return posixpath.join(path, *parts) if is_remote(path) else os.path.join(path, *parts)


def absolute(path: str) -> str:
    """A local path made absolute; a URL as it is."""
    path = os.fspath(path)
    return path if is_remote(path) else os.path.abspath(path)


def exists(path: str) -> bool:
    """Whether a file or folder (remote: an object, or a prefix of one) is at `path`."""
    path = os.fspath(path)
    if is_remote(path):
        return _fs(path).exists(remote.strip(path))
    return os.path.exists(path)


def isfile(path: str) -> bool:
    """Whether a file (remote: an object) is at `path`."""
    path = os.fspath(path)
    if is_remote(path):
        return _fs(path).isfile(remote.strip(path))
    return os.path.isfile(path)


def isdir(path: str) -> bool:
    """Whether `path` is a folder (remote: a prefix some object lies under)."""
    path = os.fspath(path)
    if is_remote(path):
        return _fs(path).isdir(remote.strip(path))
    return os.path.isdir(path)


def listdir(path: str) -> list[str]:
    """The names in folder `path`, sorted. FileNotFoundError when there is none."""
    path = os.fspath(path)
    if not is_remote(path):
        return sorted(os.listdir(path))
    key = remote.strip(path)
    names = [posixpath.basename(p.rstrip("/")) for p in _fs(path).ls(key, detail=False)
             if p.rstrip("/") != key]
    return sorted(n for n in names if n)


def makedirs(path: str) -> None:
    """Creates folder `path` and its parents (remote: nothing to create; the bucket is checked)."""
    path = os.fspath(path)
    if is_remote(path):
        _fs(path)
        return
    os.makedirs(path, exist_ok=True)


def open(path: str, mode: str = "rb", **kwargs: Any) -> IO:
    """The file at `path` opened with `mode` ("rb", "r", "wb", "w", …; text modes take
    `encoding`). A remote file written appears as the object when closed."""
    path = os.fspath(path)
    if is_remote(path):
        return _fs(path).open(remote.strip(path), mode, **kwargs)
    return builtins.open(path, mode, **kwargs)


def read_bytes(path: str) -> bytes:
    """The bytes of the file `path`."""
    with open(path, "rb") as f:
        return f.read()


def sha256_file(path: str) -> str:
    """The hex sha256 of the bytes of the file `path`, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def read_text(path: str) -> str:
    """The UTF-8 text of `path` (undecodable bytes replaced)."""
    return read_bytes(path).decode("utf-8", errors="replace")


def remove(path: str) -> None:
    """Deletes the file `path`; FileNotFoundError when there is none."""
    path = os.fspath(path)
    if is_remote(path):
        _fs(path).rm_file(remote.strip(path))
        return
    os.remove(path)


def rmtree(path: str) -> None:
    """Deletes folder `path` and everything under it, if it is there."""
    path = os.fspath(path)
    if is_remote(path):
        fs = _fs(path)
        if fs.exists(remote.strip(path)):
            fs.rm(remote.strip(path), recursive=True)
        return
    shutil.rmtree(path, ignore_errors=True)


def rename(src: str, dst: str) -> None:
    """Moves a file or folder; remote: copied, then the source deleted (not atomic)."""
    src, dst = os.fspath(src), os.fspath(dst)
    if is_remote(src) != is_remote(dst):
        raise ValueError(f"cannot rename across storages: {src} -> {dst}")
    if is_remote(src):
        fs = _fs(src)
        fs.copy(remote.strip(src), remote.strip(dst), recursive=fs.isdir(remote.strip(src)))
        fs.rm(remote.strip(src), recursive=True)
        return
    os.rename(src, dst)


def copy(src: str, dst: str) -> None:
    """Copies the file `src` to `dst` (local or remote, either way). An OSError that names no
    file (a full disk while writing) is raised again naming `dst`."""
    src, dst = os.fspath(src), os.fspath(dst)
    try:
        if not is_remote(src) and not is_remote(dst):
            shutil.copyfile(src, dst)
            return
        with open(src, "rb") as r, open(dst, "wb") as w:
            shutil.copyfileobj(r, w)
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, dst) from e


def glob(pattern: str) -> list[str]:
    """The paths that match `pattern` (only the last part may hold wildcards remotely), sorted."""
    pattern = os.fspath(pattern)
    if not is_remote(pattern):
        return sorted(glob_lib.glob(pattern))
    folder, name = posixpath.split(pattern)
    if not exists(folder):
        return []
    return sorted(join(folder, n) for n in listdir(folder) if fnmatch.fnmatchcase(n, name))


def getsize(path: str) -> int:
    """The size of the file `path` in bytes."""
    path = os.fspath(path)
    if is_remote(path):
        return int(_fs(path).size(remote.strip(path)))
    return os.path.getsize(path)


def getmtime(path: str) -> float:
    """Seconds since the epoch of the last change of `path`."""
    path = os.fspath(path)
    if is_remote(path):
        modified = _fs(path).modified(remote.strip(path))
        return modified.timestamp()
    return os.path.getmtime(path)

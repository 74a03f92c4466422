"""Where files live: the cache root, atomic writes, and the one line for a place that cannot be
written (a full disk, a read-only file system, no permission).

Every function takes and returns path strings, so that remote paths (gs://) can be added here
without changing a caller. Today they handle local paths.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterator
from typing import BinaryIO


def cache_root(*parts: str) -> str:
    """`~/.cache/gancmp` (expanded), joined with `parts`: the default home of downloaded
    weights, reference statistics, dataset caches and compiled programs."""
    return os.path.join(os.path.expanduser("~"), ".cache", "gancmp", *parts)


@contextlib.contextmanager
def open_atomic(path: str) -> Iterator[BinaryIO]:
    """A binary file to write that appears at `path` only once the block exits without error.

    It is a temporary file in the directory of `path` (created if missing), flushed and fsync'd,
    then renamed over `path`, so a reader never sees a partial file and an interrupted writer
    leaves `path` as it was; on error the temporary file is removed. For large payloads written
    in pieces (`np.save(f, x)`); `write_atomic` writes bytes or text at once.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{os.path.abspath(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path: str, data: bytes | str) -> None:
    """Writes `data` (text is UTF-8 encoded) to `path` atomically (see `open_atomic`)."""
    with open_atomic(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


# Errors of the place a run writes to, not of the run, with what to do about each.
_SPACE = "free some space or choose another directory"
_ACCESS = "choose a directory this user can write"
WRITE_ERRORS = {errno.ENOSPC: _SPACE, errno.EDQUOT: _SPACE, errno.EROFS: _ACCESS,
                errno.EACCES: _ACCESS, errno.EPERM: _ACCESS,
                errno.ENOTDIR: "a part of the path is a file, not a directory"}


def write_error(error: BaseException, path: str | None = None) -> OSError | None:
    """`error` as an OSError whose errno is one of `WRITE_ERRORS` (with `path` when it names
    none), or None for any other error. Recognises OSError itself and the errors of libraries
    that carry the OS error only in their text (tensorstore, under orbax: "... No space left on
    device [os_error_code='28']")."""
    if isinstance(error, OSError) and error.errno in WRITE_ERRORS:
        if error.filename is None and path is not None:
            return OSError(error.errno, error.strerror, path)
        return error
    match = re.search(r"os_error_code='?(\d+)", str(error))
    if match and int(match.group(1)) in WRITE_ERRORS:
        code = int(match.group(1))
        return OSError(code, os.strerror(code), path)
    return None


def describe_write_error(error: OSError) -> str:
    """One line for an OSError of `WRITE_ERRORS`: "<path>: <reason> (errno ENOSPC); <what to
    do>"."""
    name = errno.errorcode.get(error.errno, str(error.errno))
    where = f"{error.filename}: " if error.filename else ""
    return (f"{where}{error.strerror or os.strerror(error.errno)} (errno {name}); "
            f"{WRITE_ERRORS.get(error.errno, 'check the path')}")

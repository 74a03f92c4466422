"""Where files live: the cache root and atomic writes.

Every function takes and returns path strings, so that remote paths (gs://) can be added here
without changing a caller. Today they handle local paths.
"""

from __future__ import annotations

import contextlib
import os
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

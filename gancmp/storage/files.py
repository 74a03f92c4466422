"""Files that must never be seen half-written: atomic writes, append-only JSON lines, setting
damaged files aside, and the one line for a place that cannot be written (a full disk, a
read-only file system, no permission). Each takes a local path or a gs:// URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from gancmp.storage import paths
from gancmp.storage.remote import is_remote


def cache_root(*parts: str) -> str:
    """`~/.cache/gancmp` (expanded), joined with `parts`: the default home of downloaded
    weights, reference statistics, dataset caches and compiled programs."""
    return os.path.join(os.path.expanduser("~"), ".cache", "gancmp", *parts)


@contextlib.contextmanager
def open_atomic(path: str) -> Iterator[BinaryIO]:
    """A binary file to write that appears at `path` only once the block exits without error.

    Local: a temporary file in the directory of `path` (created if missing), flushed and
    fsync'd, then renamed over `path`, so a reader never sees a partial file and an interrupted
    writer leaves `path` as it was; on error the temporary file is removed. gs://: the bytes are
    gathered in memory and uploaded as one object at the end (an object appears whole or not at
    all). For large payloads written in pieces (`np.save(f, x)`); `write_atomic` writes bytes or
    text at once.
    """
    if is_remote(path):
        buffer = io.BytesIO()
        yield buffer
        with naming(path), paths.open(path, "wb") as f:
            f.write(buffer.getvalue())
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{os.path.abspath(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with naming(path), open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def naming(path: str) -> Iterator[None]:
    """A write error (`WRITE_ERRORS`: a full disk, a quota) raised inside that names no file —
    what a write, flush or fsync of an open file raises — raised again naming `path`, so that
    its one line says where (`describe_write_error`)."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno in WRITE_ERRORS:
            raise OSError(e.errno, e.strerror, path) from e
        raise


def write_atomic(path: str, data: bytes | str) -> None:
    """Writes `data` (text is UTF-8 encoded) to `path` atomically (see `open_atomic`)."""
    with open_atomic(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def warning(message: str) -> None:
    """One warning line on stderr: `gancmp: warning: <message>`."""
    print(f"gancmp: warning: {message}", file=sys.stderr)


# --- append-only JSON lines ---------------------------------------------------------------------

def append_line(path: str, line: str) -> None:
    """Appends `line` (a newline is added unless it ends with one) to `path`, creating it and its
    folder. A writer killed mid-line leaves a torn last line without its newline; the append then
    first ends that line, so the new line never joins the fragment (readers skip the fragment:
    `read_jsonl`). Local files: one write, flushed and fsync'd before returning. gs:// paths
    : the object is rewritten whole, as object storage has no append."""
    line = line if line.endswith("\n") else line + "\n"
    if is_remote(path):
        text = paths.read_text(path) if paths.exists(path) else ""
        with naming(path), paths.open(path, "wb") as f:
            f.write((text + ("\n" if text and not text.endswith("\n") else "") + line).encode())
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with naming(path), open(path, "a+b") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


@dataclasses.dataclass(frozen=True)
class BadLine:
    """A line of a JSON-lines file that was skipped: its file, 1-based line number and why."""

    path: str
    line: int
    error: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: skipped a torn or corrupt line ({self.error})"


def read_jsonl(path: str, check: Callable[[Any], None] | None = None,
               warn: bool = True) -> tuple[list[Any], list[BadLine]]:
    """The JSON value of every line of `path` (local or gs://), in order; ([], []) when the file
    does not exist. Blank lines are ignored. A line that is not JSON (the torn last line of a
    killed writer) or that `check(value)` rejects with ValueError is skipped and returned as a
    `BadLine`, never taking the other lines with it; with `warn`, each is one warning line."""
    text = paths.read_text(path) if paths.exists(path) else ""
    values, bad = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            if check is not None:
                check(value)
        except ValueError as e:
            bad.append(BadLine(path, number, (str(e).splitlines() or [type(e).__name__])[0]))
            continue
        values.append(value)
    if warn:
        for b in bad:
            warning(str(b))
    return values, bad


# --- damaged files ------------------------------------------------------------------------------

def set_aside(path: str, folder: str) -> str:
    """Moves `path` (a file or folder) into `folder` (created if missing) as
    `<name>.damaged-<UTC time>` (with a suffix if taken), out of the way of whatever reads its
    old place, without deleting anything. Returns the new path (gs://: moved by copy, then
    delete)."""
    paths.makedirs(folder)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = os.path.basename(os.path.normpath(path)) if not is_remote(path) else (
        path.rstrip("/").rsplit("/", 1)[-1])
    base = paths.join(folder, f"{name}.damaged-{stamp}")
    target, n = base, 1
    while paths.exists(target):
        n += 1
        target = f"{base}-{n}"
    paths.rename(path, target)
    return target


# --- places that cannot be written ----------------------------------------------------------------

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

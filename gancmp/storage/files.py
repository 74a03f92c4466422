"""Files that must never be seen half-written: atomic writes, append-only JSON lines, setting
damaged files aside, and the one line for a place that cannot be written (a full disk, a
read-only file system, no permission). Each takes a local path or a gs:// URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fnmatch
import io
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

from gancmp.storage import paths, remote
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

PARTS = ".parts"  # `<file>.jsonl.parts/`: the objects appended to a gs:// JSON-lines file


def append_line(path: str, line: str) -> None:
    """Appends one line to the JSON-lines file `path` (`append_lines`)."""
    append_lines(path, [line])


def append_lines(path: str, lines: Sequence[str]) -> None:
    """Appends `lines` (a newline is added to each that lacks one) to the JSON-lines file `path`
    at once, creating it and its folder; never reads or rewrites what the file holds.

    Local files: one write, flushed and fsync'd before returning. A writer killed mid-line
    leaves a torn last line without its newline; the append then first ends that line, so the
    new lines never join the fragment (readers skip the fragment: `read_jsonl`). gs:// (object
    storage has no append): the lines become one new object `<path>.parts/<time>-<random>.jsonl`
    (an object appears whole or not at all), so appending costs the new lines' bytes, not the
    file's; `read_jsonl` reads `<path>` (a file written whole, as earlier versions of gancmp
    rewrote it) and then its parts in order of their names (the writer's clock, in nanoseconds)."""
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if not text:
        return
    if is_remote(path):
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.jsonl"
        with naming(path), paths.open(paths.join(path + PARTS, name), "wb") as f:
            f.write(text.encode("utf-8"))
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with naming(path), open(path, "a+b") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                text = "\n" + text
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def append_bytes(path: str, data: bytes) -> None:
    """Appends `data` to the local file `path` (created if missing), flushed. Local paths only
    (object storage has no append: write new objects instead, as `append_lines` does)."""
    if is_remote(path):
        raise ValueError(f"{path}: cannot append to an object; write a new one")
    with naming(path), open(path, "ab") as f:
        f.write(data)
        f.flush()


def jsonl_pieces(path: str) -> list[str]:
    """The files that make up the JSON-lines file `path`, in reading order: `path` itself if
    it exists, then its parts (`append_lines`; local ones too, as a bucket copied down has
    them)."""
    whole = [path] if paths.isfile(path) else []
    return whole + paths.glob(paths.join(path + PARTS, "*.jsonl"))


def jsonl_exists(path: str) -> bool:
    """Whether the JSON-lines file `path` holds anything: the file or a part of it."""
    return bool(jsonl_pieces(path))


def jsonl_files(folder: str, pattern: str) -> list[str]:
    """The JSON-lines files in `folder` whose names match `pattern` (fnmatch, e.g.
    "results-*.jsonl"), sorted: each written whole, appended to in parts, or both."""
    if not paths.isdir(folder):
        return []
    names = set()
    for name in paths.listdir(folder):
        base = name[:-len(PARTS)] if name.endswith(PARTS) else name
        if fnmatch.fnmatchcase(base, pattern):
            names.add(base)
    return [paths.join(folder, n) for n in sorted(names)]


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
    """The JSON value of every line of the JSON-lines file `path` (local or gs://; the file
    and its appended parts, `jsonl_pieces`), in order; ([], []) when there is none. Blank lines
    are ignored. A line that is not JSON (the torn last line of a killed writer) or that
    `check(value)` rejects with ValueError is skipped and returned as a `BadLine` (naming the
    piece it is in), never taking the other lines with it; with `warn`, each is one warning
    line."""
    values, bad = [], []
    for piece, text in _read_all(jsonl_pieces(path)):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
                if check is not None:
                    check(value)
            except ValueError as e:
                bad.append(BadLine(piece, number, (str(e).splitlines() or
                                                   [type(e).__name__])[0]))
                continue
            values.append(value)
    if warn:
        for b in bad:
            warning(str(b))
    return values, bad


def _read_all(pieces: list[str]) -> list[tuple[str, str]]:
    """(path, text) of each of `pieces`, in order; gs:// objects fetched concurrently (gcsfs
    `cat` of many: a sweep's results are one object per group)."""
    remote_keys = [remote.strip(p) for p in pieces if is_remote(p)]
    fetched = remote.filesystem(pieces[0]).cat(remote_keys) if remote_keys else {}
    return [(p, fetched[remote.strip(p)].decode("utf-8") if is_remote(p) else
             paths.read_text(p)) for p in pieces]


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

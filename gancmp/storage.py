"""Where files live: the cache root, atomic writes, append-only JSON lines, locks, setting
damaged files aside, and the one line for a place that cannot be written (a full disk, a
read-only file system, no permission).

Every function takes and returns path strings, so that remote paths (gs://) can be added here
without changing a caller. Appends and JSON-lines reads handle gs:// (etils.epath); the others
handle local paths today (`lock` says how its gs:// version slots in).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from etils import epath


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


def warning(message: str) -> None:
    """One warning line on stderr: `gancmp: warning: <message>`."""
    print(f"gancmp: warning: {message}", file=sys.stderr)


# --- append-only JSON lines ---------------------------------------------------------------------

def append_line(path: str, line: str) -> None:
    """Appends `line` (a newline is added unless it ends with one) to `path`, creating it and its
    folder. A writer killed mid-line leaves a torn last line without its newline; the append then
    first ends that line, so the new line never joins the fragment (readers skip the fragment:
    `read_jsonl`). Local files: one write, flushed and fsync'd before returning. gs:// paths
    (etils.epath): the object is rewritten whole, as object storage has no append."""
    line = line if line.endswith("\n") else line + "\n"
    if "://" in path:
        p = epath.Path(path)
        text = p.read_text() if p.exists() else ""
        p.write_text(text + ("\n" if text and not text.endswith("\n") else "") + line)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+b") as f:
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
    if "://" in path:
        p = epath.Path(path)
        text = p.read_text() if p.exists() else ""
    elif os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    else:
        text = ""
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


# --- locks --------------------------------------------------------------------------------------

class LockedError(RuntimeError):
    """A lock is held by another process; one line naming the holder (pid, host, start time)."""


@contextlib.contextmanager
def lock(path: str) -> Iterator[dict[str, Any]]:
    """Holds the lock file `path` for the block; yields its content, this process's
    {"pid", "host", "start" (UTC ISO 8601), "token"}.

    The lock is the file itself, created exclusively (`_create_exclusive`, which writes the whole
    JSON at once, so a lock file is never half-written). When it exists, the holder it names is
    asked: a process of this host that no longer runs (pid not alive: killed, crashed, the machine
    rebooted) left a stale lock, which is taken over with a warning; any other holder (alive here,
    or on another host, where liveness cannot be asked) makes this raise `LockedError` naming it.
    The block's end removes the file if it is still this process's.

    Local paths only. On object storage the same protocol holds with a generation-conditional
    create (gs://: write with `if_generation_match=0`) in place of `_create_exclusive`; until that
    is written, a "://" path is not locked, with a warning.
    """
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "token": secrets.token_hex(8)}
    if "://" in path:
        warning(f"{path}: not locked (locks on object storage are not implemented yet); run "
                "one process per workdir and shard")
        yield me
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _acquire(path, me)
    try:
        yield me
    finally:
        if _holder(path) == me:
            os.remove(path)


def _create_exclusive(path: str, text: str) -> bool:
    """Creates `path` holding `text` if no file is there (True), else leaves it (False), in one
    atomic step: the text goes to a private temporary file that is then hard-linked as `path`
    (a link fails if `path` exists). The one step a gs:// lock replaces (see `lock`)."""
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "x") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _holder(path: str) -> dict[str, Any] | None:
    """The content of the lock file `path`; None when it is gone."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
        if not isinstance(holder, dict) or not {"pid", "host", "start"} <= set(holder):
            raise ValueError("not a lock")
    except ValueError:
        raise LockedError(f"{path}: an unreadable lock file ({text[:60]!r}); if no gancmp "
                          "process uses this workdir, delete it") from None
    return holder


def _alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire(path: str, me: dict[str, Any]) -> None:
    for _ in range(5):
        if _create_exclusive(path, json.dumps(me)):
            return
        holder = _holder(path)
        if holder is None:  # released meanwhile
            continue
        said = f"pid {holder['pid']} on {holder['host']} since {holder['start']}"
        if holder["host"] != me["host"] or holder["pid"] == me["pid"] or _alive(holder["pid"]):
            raise LockedError(f"{path}: in use by {said}; wait for it to finish, or if that "
                              "process is gone, delete the lock file")
        if _take_over(path, holder):
            warning(f"{path}: took over the lock of {said}, no longer running")
    raise LockedError(f"{path}: could not take the lock (other processes keep taking it)")


def _take_over(path: str, stale: dict[str, Any]) -> bool:
    """Removes the stale lock `stale` from `path`: renamed first, so that a lock another process
    created meanwhile is never deleted (it is put back). Whether the stale one was removed."""
    aside = f"{path}.stale-{secrets.token_hex(4)}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    with open(aside) as f:
        moved = f.read()
    try:
        with contextlib.suppress(ValueError):
            if json.loads(moved) == stale:
                return True
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)  # someone else's fresh lock: put it back
        return False
    finally:
        os.remove(aside)


# --- damaged files ------------------------------------------------------------------------------

def set_aside(path: str, folder: str) -> str:
    """Moves `path` (a file or folder) into `folder` (created if missing) as
    `<name>.damaged-<UTC time>` (with a suffix if taken), out of the way of whatever reads its
    old place, without deleting anything. Returns the new path. Local paths."""
    os.makedirs(folder, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = os.path.join(folder, f"{os.path.basename(os.path.normpath(path))}.damaged-{stamp}")
    target, n = base, 1
    while os.path.exists(target):
        n += 1
        target = f"{base}-{n}"
    os.rename(path, target)
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

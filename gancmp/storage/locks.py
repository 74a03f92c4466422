"""Locks: one process at a time uses a workdir (or a sweep shard). The lock is a file holding its
holder's pid, host and start time, on the same storage as the workdir (local or gs://).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

from gancmp.storage import paths, remote
from gancmp.storage.files import warning
from gancmp.storage.remote import is_remote


class LockedError(RuntimeError):
    """A lock is held by another process; one line naming the holder (pid, host, start time)."""


# the tokens of the locks this process holds now: a lock naming this host and this very pid whose
# token is not here was taken by an earlier process that had the same pid (a container restarted
# with the same hostname gives its processes the same small pids), so it is stale
_held: set[str] = set()


@contextlib.contextmanager
def lock(path: str) -> Iterator[dict[str, Any]]:
    """Holds the lock file `path` for the block; yields its content, this process's
    {"pid", "host", "start" (UTC ISO 8601), "token"}.

    The lock is the file itself, created exclusively (`_create_exclusive`, which writes the whole
    JSON at once, so a lock file is never half-written). When it exists, the holder it names is
    asked: a process of this host that no longer runs (pid not alive: killed, crashed, the machine
    rebooted) left a stale lock, which is taken over with a warning; so did a holder naming this
    host and this process's own pid that this process does not hold (`_held`: an earlier process
    that had the same pid, as a restarted container gives). Any other holder (alive here, this
    process itself, or on another host, where liveness cannot be asked) makes this raise
    `LockedError` naming it. The block's end removes the file if it is still this process's.

    On gs:// the exclusive create is an upload conditional on no object being there
    (`ifGenerationMatch=0`), which GCS applies atomically.
    """
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "token": secrets.token_hex(8)}
    if not is_remote(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _acquire(path, me)
    _held.add(me["token"])
    try:
        yield me
    finally:
        _held.discard(me["token"])
        if _holder(path) == me:
            paths.remove(path)


def _create_exclusive(path: str, text: str) -> bool:
    """Creates `path` holding `text` if no file is there (True), else leaves it (False), in one
    atomic step: the text goes to a private temporary file that is then hard-linked as `path`
    (a link fails if `path` exists). gs://: an upload that GCS refuses when the object exists."""
    if is_remote(path):
        try:
            remote.filesystem(path).pipe_file(remote.strip(path), text.encode(), mode="create")
            return True
        except FileExistsError:
            return False
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
        text = paths.read_text(path)
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
        gone = _gone(holder, me)
        if gone is None:
            raise LockedError(f"{path}: in use by {said}; wait for it to finish, or if that "
                              "process is gone, delete the lock file")
        if _take_over(path, holder):
            warning(f"{path}: took over the lock of {said}, no longer running{gone}")
    raise LockedError(f"{path}: could not take the lock (other processes keep taking it)")


def _gone(holder: dict[str, Any], me: dict[str, Any]) -> str | None:
    """Whether the lock `holder` is stale for this process (`me`): None when its holder may
    still hold it (a live process of this host, this process itself, any process of another
    host); else what to add to the warning ("" for a process no longer running, a note for an
    earlier process with this process's pid)."""
    if holder["host"] != me["host"]:
        return None
    if holder["pid"] == me["pid"]:
        if holder.get("token") in _held:
            return None
        return " (this process has its pid: the host, e.g. a container, restarted)"
    return None if _alive(holder["pid"]) else ""


def _take_over(path: str, stale: dict[str, Any]) -> bool:
    """Removes the stale lock `stale` from `path`: renamed first, so that a lock another process
    created meanwhile is never deleted (it is put back). Whether the stale one was removed.
    gs://: deleted if it still holds `stale` when read again (objects cannot be renamed; a lock
    created by another process between that read and the delete, one request apart, would be
    lost)."""
    if is_remote(path):
        return _take_over_remote(path, stale)
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


def _take_over_remote(path: str, stale: dict[str, Any]) -> bool:
    fs = remote.filesystem(path)
    key = remote.strip(path)
    try:
        if json.loads(fs.cat_file(key)) != stale:
            return False
        fs.rm_file(key)
        return True
    except (FileNotFoundError, ValueError):
        return False

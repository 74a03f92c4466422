"""Locks: one process at a time uses a workdir (or a sweep shard). The lock is a file holding its
holder's pid, host, start time, a random token and a lease (`renewed`, `lease_s`), on the same
storage as the workdir (local or gs://).

The lease makes a lock left by a process that was killed hard (a preempted Spot VM gets no
notice it can count on) free again whatever host takes it next: the holder rewrites `renewed`
every `lease_s / 4` seconds from a background thread while it runs, and a lock of another host
whose lease has run out — `renewed` more than `lease_s` ago by this host's clock (hosts' clocks
must agree to well within a lease, as NTP-synced Cloud VMs' do), or unchanged while this process
watched it for `lease_s` of its own clock — is taken over with a warning. A lock whose lease is
fresh is never taken: a process that finds one of another host waits for it (`_wait_out`), and
takes it when it expires, or refuses (`LockedError`) as soon as the holder renews it (it is
alive).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from gancmp.storage import paths, remote
from gancmp.storage.files import warning, write_atomic
from gancmp.storage.remote import is_remote

LEASE_ENV = "GANCMP_LOCK_LEASE_S"
DEFAULT_LEASE_S = 300.0  # a replacement VM waits at most about this long for a dead one's lock


class LockedError(RuntimeError):
    """A lock is held by another process; one line naming the holder (pid, host, start time)."""


# the tokens of the locks this process holds now: a lock naming this host and this very pid whose
# token is not here was taken by an earlier process that had the same pid (a container restarted
# with the same hostname gives its processes the same small pids), so it is stale
_held: set[str] = set()


def lease_seconds() -> float:
    """The lease of the locks this process takes: $GANCMP_LOCK_LEASE_S, else 300 s."""
    text = os.environ.get(LEASE_ENV)
    try:
        value = float(text) if text else DEFAULT_LEASE_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"${LEASE_ENV}: seconds of a lock's lease, a positive number; "
                         f"got {text!r}")
    return value


@contextlib.contextmanager
def lock(path: str, lease_s: float | None = None) -> Iterator[dict[str, Any]]:
    """Holds the lock file `path` for the block, renewing its lease (`lease_s`, default
    `lease_seconds()`) every quarter of it; yields its content, this process's {"pid", "host",
    "start" (UTC ISO 8601), "token", "renewed" (Unix time), "lease_s"}, kept up to date.

    The lock is the file itself, created exclusively (`_create_exclusive`, which writes the whole
    JSON at once, so a lock file is never half-written). When it exists, its holder is judged
    (`_gone`): a process of this host that no longer runs, an earlier process with this
    process's own pid (`_held`: a restarted container) or an expired lease left a stale lock,
    which is taken over with a warning (a live process of this host keeps its lock whatever its
lease); a fresh lease of another host is waited out
    (`_wait_out`); any other holder (alive here, this process itself, a lock of an earlier
    gancmp without a lease on another host) makes this raise `LockedError` naming it. The
    block's end stops the renewal and removes the file if it is still this process's.

    On gs:// the exclusive create is an upload conditional on no object being there
    (`ifGenerationMatch=0`), which GCS applies atomically.
    """
    lease = float(lease_s) if lease_s is not None else lease_seconds()
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "token": secrets.token_hex(8), "renewed": round(time.time(), 3), "lease_s": lease}
    if not is_remote(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _acquire(path, me)
    _held.add(me["token"])
    renewal = _Renewal(path, me)
    try:
        yield me
    finally:
        renewal.stop()
        _held.discard(me["token"])
        holder = _holder(path, quiet=True)
        if holder is not None and holder.get("token") == me["token"]:
            paths.remove(path)


class _Renewal:
    """The thread that renews the lease of the lock `me` at `path` every quarter lease: it
    rewrites the file with a new `renewed` while the file still holds `me`'s token; a lock
    found taken by another process (this one stalled past its lease) is left alone, said once,
    and no longer renewed."""

    def __init__(self, path: str, me: dict[str, Any]):
        self.path, self.me = path, me
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gancmp-lock-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.me["lease_s"] / 4):
            try:
                holder = _holder(self.path, quiet=True)
                if holder is None or holder.get("token") != self.me["token"]:
                    said = "removed" if holder is None else (
                        f"taken by pid {holder.get('pid')} on {holder.get('host')}")
                    warning(f"{self.path}: this process's lock was {said} (its lease ran "
                            "out while it stalled); another process may use the workdir")
                    return
                renewed = {**self.me, "renewed": round(time.time(), 3)}
                write_atomic(self.path, json.dumps(renewed))
                self.me.update(renewed)
            except Exception as e:  # a storage hiccup: tried again next time
                warning(f"{self.path}: could not renew the lock's lease ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:120]}); trying again")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


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


def _holder(path: str, quiet: bool = False) -> dict[str, Any] | None:
    """The content of the lock file `path`; None when it is gone (or, `quiet`, unreadable)."""
    try:
        text = paths.read_text(path)
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
        if not isinstance(holder, dict) or not {"pid", "host", "start"} <= set(holder):
            raise ValueError("not a lock")
    except ValueError:
        if quiet:
            return None
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
        if gone is None and _leased(holder) and holder["host"] != me["host"]:
            gone = _wait_out(path, holder, said)
        if gone is None:
            raise LockedError(f"{path}: in use by {said}; wait for it to finish, or if that "
                              "process is gone, delete the lock file")
        if _take_over(path, holder):
            warning(f"{path}: took over the lock of {said}, no longer running{gone}")
    raise LockedError(f"{path}: could not take the lock (other processes keep taking it)")


def _leased(holder: dict[str, Any]) -> bool:
    """Whether the lock `holder` carries a lease (locks of earlier gancmp versions do not)."""
    return isinstance(holder.get("renewed"), int | float) and isinstance(
        holder.get("lease_s"), int | float)


def _expired(holder: dict[str, Any]) -> str | None:
    """The warning's note when the lease of `holder` ran out by the clocks (`renewed` more
    than `lease_s` ago), else None."""
    if not _leased(holder):
        return None
    age = time.time() - holder["renewed"]
    return f" (its lease of {holder['lease_s']:g} s expired {age - holder['lease_s']:.0f} s " \
           "ago)" if age > holder["lease_s"] else None


def _gone(holder: dict[str, Any], me: dict[str, Any]) -> str | None:
    """Whether the lock `holder` is stale for this process (`me`): None when its holder may
    still hold it (a live process of this host, whatever its lease: a laptop woken from sleep
    renews late; this process itself; a fresh lease, or none, of another host); else what to
    add to the warning ("" for a process of this host no longer running, a note for an expired
    lease of another host or an earlier process with this process's pid)."""
    if holder["host"] == me["host"] and holder["pid"] == me["pid"]:
        if holder.get("token") in _held:
            return None
        return " (this process has its pid: the host, e.g. a container, restarted)"
    if holder["host"] == me["host"]:
        return None if _alive(holder["pid"]) else ""
    return _expired(holder)


def _wait_out(path: str, holder: dict[str, Any], said: str) -> str | None:
    """Waits on the fresh lease of `holder` (another host's): the warning's note once it has
    expired — by the clocks, or unchanged for `lease_s` of this process's clock — or None as
    soon as the lock changes (renewed by a live holder, or taken by a third process), or when
    it is gone (free: the caller tries again)."""
    lease = float(holder["lease_s"])
    warning(f"{path}: held by {said} under a lease of {lease:g} s; waiting up to {lease:g} s "
            "for it to be renewed (the holder runs) or to expire (it is gone)")
    deadline = time.monotonic() + lease
    while True:
        time.sleep(min(lease / 8, 5.0))
        now = _holder(path, quiet=True)
        if now is None:
            return " (released while waiting)"
        if now != holder:
            return None
        expired = _expired(holder)
        if expired is not None:
            return expired
        if time.monotonic() > deadline:
            return f" (its lease of {lease:g} s was not renewed while this process waited)"


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

"""Where files live: every user path (a workdir, a report folder, weights, statistics, data
caches) is opened through this package, and may be local or gs://.

`paths` has the operations (exists, listdir, open, glob, copy, …) for both kinds of path,
`files` atomic writes, append-only JSON lines (on gs://, each append one new object, never a
rewrite) and the one line for a place that cannot be written, `locks` one process per workdir
(leased, renewed while held), `remote` the gs:// filesystem (gcsfs), the emulator setup and the
one line for a remote path that cannot be used. Importing the package points every
GCS client at the emulator `STORAGE_EMULATOR_HOST` names, if any (`remote.configure_emulator`).
Orbax checkpoints reach gs:// through tensorstore by themselves; `gancmp.train.checkpoint` hands
them the URL.
"""

from __future__ import annotations

from gancmp.storage import paths, remote
from gancmp.storage.files import (
    WRITE_ERRORS,
    BadLine,
    append_bytes,
    append_line,
    append_lines,
    cache_root,
    describe_write_error,
    jsonl_exists,
    jsonl_files,
    open_atomic,
    read_jsonl,
    set_aside,
    warning,
    write_atomic,
    write_error,
)
from gancmp.storage.locks import LockedError, lock
from gancmp.storage.paths import (
    absolute,
    copy,
    exists,
    getmtime,
    getsize,
    glob,
    isdir,
    isfile,
    join,
    listdir,
    makedirs,
    read_bytes,
    read_text,
    remove,
    rename,
    rmtree,
    sha256_file,
)
from gancmp.storage.paths import open as open_file
from gancmp.storage.remote import RemoteStorageError, configure_emulator, is_remote

__all__ = [
    "WRITE_ERRORS", "BadLine", "LockedError", "RemoteStorageError", "absolute", "append_line",
    "append_bytes", "append_lines", "jsonl_exists", "jsonl_files",
    "cache_root", "configure_emulator", "copy", "describe_write_error", "exists", "getmtime",
    "getsize", "glob", "is_remote", "isdir", "isfile", "join", "listdir", "lock", "makedirs",
    "open_atomic", "open_file", "paths", "read_bytes", "read_jsonl", "read_text", "remote",
    "remove", "rename", "rmtree", "set_aside", "sha256_file", "warning", "write_atomic",
    "write_error",
]


configure_emulator()

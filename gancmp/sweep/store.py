"""Results keyed by trial id: one JSON line per recorded trial, one file per shard
(`results-<i>.jsonl`), append-only.

A record is appended whole and fsync'd, starting on a fresh line (`storage.append_line`), so a
killed sweep loses at most the trial it was recording; a torn or corrupt line is reported with its
file and line number and skipped, never taking the other records with it. A trial id has one
record: when a file holds several (a trial recorded again), the reader keeps the last, and the
runner never appends a trial that is already recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from gancmp import storage

BadLine = storage.BadLine


def results_path(workdir: str, shard: int) -> str:
    return os.path.join(str(workdir), f"results-{shard}.jsonl")


def lock_path(workdir: str, shard: int) -> str:
    """The lock of shard `shard` of the sweep in `workdir` (`storage.lock`): one process at a
    time trains and records that shard."""
    return os.path.join(str(workdir), f"results-{shard}.lock")


def append(path: str, record: Mapping[str, Any]) -> None:
    """Appends one record as one line (local files: fsync'd; gs://: the object rewritten)."""
    storage.append_line(path, json.dumps(record, sort_keys=True, default=_plain))


def read(paths: Iterable[str], warn: bool = True) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """The records of the given files, one per trial id — the last one read (files in the order
    given) at the place of the first — and the corrupt lines that were skipped (with `warn`,
    each one warning line on stderr)."""
    by_id: dict[str, dict[str, Any]] = {}
    bad: list[BadLine] = []
    for path in paths:
        records, skipped = storage.read_jsonl(path, check=_check, warn=warn)
        bad.extend(skipped)
        for record in records:
            by_id[record["trial_id"]] = record
    return list(by_id.values()), bad


def _check(record: Any) -> None:
    if not isinstance(record, dict) or "trial_id" not in record:
        raise ValueError("not a trial record")


def result_files(workdir: str) -> list[str]:
    """Every shard's results file under `workdir`."""
    return storage.glob(os.path.join(str(workdir), "results-*.jsonl"))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)

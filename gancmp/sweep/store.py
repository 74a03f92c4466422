"""Append-only results: one JSON line per finished trial, one file per shard (`results-<i>.jsonl`).

A record is written whole with one `write` + flush + fsync, so a killed sweep loses at most the
trial it was recording; a torn or corrupt line is reported with its file and line number and
skipped, never taking the other records with it.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from etils import epath


@dataclasses.dataclass(frozen=True)
class BadLine:
    path: str
    line: int
    error: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: skipped a corrupt record ({self.error})"


def results_path(workdir: str, shard: int) -> str:
    return os.path.join(str(workdir), f"results-{shard}.jsonl")


def append(path: str, record: Mapping[str, Any]) -> None:
    """Appends one record as one line (local files: fsync'd; gs:// paths via etils)."""
    line = json.dumps(record, sort_keys=True, default=_plain) + "\n"
    if "://" in path:
        p = epath.Path(path)
        p.write_text((p.read_text() if p.exists() else "") + line)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read(paths: Iterable[str], warn: bool = True) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """All records of the given files, and the corrupt lines that were skipped."""
    records, bad = [], []
    for path in paths:
        text = epath.Path(path).read_text() if "://" in path else open(path).read()
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "trial_id" not in record:
                    raise ValueError("not a trial record")
            except ValueError as e:
                bad.append(BadLine(path, number, str(e).splitlines()[0]))
                continue
            records.append(record)
    if warn:
        for b in bad:
            print(f"gancmp: warning: {b}", file=sys.stderr)
    return records, bad


def result_files(workdir: str) -> list[str]:
    """Every shard's results file under `workdir`."""
    workdir = str(workdir)
    if "://" in workdir:
        return sorted(str(p) for p in epath.Path(workdir).glob("results-*.jsonl"))
    return sorted(glob.glob(os.path.join(workdir, "results-*.jsonl")))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)

"""Training progress on stderr: a tqdm bar on a terminal; otherwise (a log file, a pipe) a plain
line every `GANCMP_PROGRESS_EVERY` seconds (default 30), since a bar's carriage-return updates
would fill a log file with one frozen line per step.

A plain line reads
    NS_GAN ring8: 1200/15625 D steps (7.7 %), 45.2 D steps/s, ETA 5 min 19 s, d_loss 1.31, …
with the rate measured over this run so far.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from gancmp.config import ConfigError

EVERY_ENV = "GANCMP_PROGRESS_EVERY"
DEFAULT_EVERY_S = 30.0


def every_seconds() -> float:
    """Seconds between plain progress lines: $GANCMP_PROGRESS_EVERY, else 30. ConfigError for a
    value that is not a positive number."""
    text = os.environ.get(EVERY_ENV)
    if not text:
        return DEFAULT_EVERY_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"${EVERY_ENV}: seconds between progress lines, a positive number; "
                          f"got {text!r}")
    return value


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class PlainProgress:
    """tqdm's `update`, `set_postfix` and `close`, printing one line per `every` seconds (and a
    last one on `close` if steps were done since the previous line) to `stream`."""

    def __init__(self, total: int, initial: int, desc: str, every: float,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.n, self.desc, self.every = total, initial, desc, every
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self._start, self._start_n = clock(), initial
        self._last_line, self._printed_n = self._start, initial
        self._postfix: dict[str, Any] = {}

    def update(self, n: int) -> None:
        """`n` more steps done; prints a line if `every` seconds passed since the last one."""
        self.n += n
        if self.clock() - self._last_line >= self.every:
            self._print()

    def set_postfix(self, values: Mapping[str, Any], refresh: bool = False) -> None:
        """The values shown after the rate (the latest losses); `refresh` as tqdm's (unused:
        lines come at their own pace)."""
        self._postfix = dict(values)

    def line(self) -> str:
        """The current progress line."""
        elapsed = self.clock() - self._start
        done = self.n - self._start_n
        pct = 100.0 * self.n / self.total if self.total else 100.0
        text = f"{self.desc}: {self.n}/{self.total} D steps ({pct:.1f} %)"
        if elapsed > 0 and done > 0:
            rate = done / elapsed
            text += f", {rate:.1f} D steps/s, ETA {_duration((self.total - self.n) / rate)}"
        return ", ".join([text, *(f"{k} {v}" for k, v in self._postfix.items())])

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line, self._printed_n = self.clock(), self.n

    def close(self) -> None:
        """Prints the last line, unless no step was done since the previous one."""
        if self.n != self._printed_n:
            self._print()


def progress(total: int, initial: int, desc: str):
    """A progress display of `total` D steps starting at `initial`: a tqdm bar when stderr is a
    terminal, else a `PlainProgress` every `every_seconds()`."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="D step", dynamic_ncols=True,
                    mininterval=2.0, leave=False)
    return PlainProgress(total, initial, desc, every_seconds())

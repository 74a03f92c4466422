"""The error of a bad config field, and the check that refuses unknown field names (re-exported
by `gancmp.train.config`, where every config check lives)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A config field has a value the program cannot use."""


def check_fields(given: Iterable[str], allowed: Iterable[str], where: str,
                 what: str = "field") -> None:
    """Refuses the first name of `given` that is not in `allowed`: ConfigError
    "<where>.<name>: unknown <what>; did you mean <the closest match>? (allowed: ...)"
    (`difflib`), so a typo never passes as a new, dead field."""
    allowed = list(allowed)
    for name in given:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{where}.{name}: unknown {what}{hint} (allowed: "
                              f"{', '.join(allowed)})")

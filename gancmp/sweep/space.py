"""The hyperparameter search space, as data: the ranges of compare_gan v1 (`src/params.py`).

"log [a, b]" means 10^U[a, b]. Two ranges, `wide` (phase 1) and `narrow` (phase 2):

| parameter       | wide          | narrow                                   |
|-----------------|---------------|------------------------------------------|
| lr              | log [−5, −2]  | log [−4, −3]                             |
| beta1           | U[0, 1]       | {0.5}                                    |
| disc_iters      | {1, 5}        | {1}                                      |
| d_batch_norm    | {T, F}        | {T, F}; only F for WGAN_GP and DRAGAN    |
| clip (WGAN)     | log [−3, 0]   | log [−2, 0]                              |
| penalty_weight  | log [−1, 2]   | log [−1, 1]                              |
| lambda_k        | log [−4, −2]  | {1e-3}                                   |
| gamma           | U[0, 1]       | U[0.6, 0.9]                              |

Each range is declared, as data, by the owner of its hyperparameter (`gancmp.methods`: the
shared ones, the penalty weight, the clip bound; `gancmp.losses.register`: a loss's own, BEGAN's
γ and λ_k; `Method.search`: a method's own, which takes precedence, e.g. no D batch norm for
WGAN_GP and DRAGAN). A method's space is the ranges of the hyperparameters it has
(`Method.ranges`), so a loss or method registered by a user module brings its ranges along. Sample
0 of every method is its authors' default setting, which may lie outside the narrow ranges and is
exempt from range checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gancmp import methods

RANGES = ("wide", "narrow")


def _check_bounds(low: float, high: float) -> None:
    if not low <= high:
        raise ValueError(f"a range needs low <= high, got [{low}, {high}]")


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """10^U[low, high]."""

    low: float
    high: float

    def __post_init__(self):
        _check_bounds(self.low, self.high)

    def sample(self, rng: np.random.Generator) -> float:
        return float(10 ** rng.uniform(self.low, self.high))

    def contains(self, value: Any) -> bool:
        return value > 0 and self.low - 1e-9 <= math.log10(value) <= self.high + 1e-9


@dataclasses.dataclass(frozen=True)
class Uniform:
    """U[low, high]."""

    low: float
    high: float

    def __post_init__(self):
        _check_bounds(self.low, self.high)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def contains(self, value: Any) -> bool:
        return self.low <= value <= self.high


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `values`, uniformly."""

    values: tuple[Any, ...]

    def sample(self, rng: np.random.Generator) -> Any:
        v = self.values[int(rng.integers(len(self.values)))]
        return v.item() if hasattr(v, "item") else v

    def contains(self, value: Any) -> bool:
        return value in self.values


Distribution = LogUniform | Uniform | Choice

def parse(spec: Any) -> Distribution:
    """A distribution from data: ("log", a, b) = 10^U[a, b], ("uniform", a, b), or
    ("choice", v1, v2, ...). Bad specs raise ValueError naming the allowed kinds."""
    kind, *args = spec
    if kind == "log" and len(args) == 2:
        return LogUniform(float(args[0]), float(args[1]))
    if kind == "uniform" and len(args) == 2:
        return Uniform(float(args[0]), float(args[1]))
    if kind == "choice" and args:
        return Choice(tuple(args))
    raise ValueError(f"range spec {spec!r}: expected ('log', a, b), ('uniform', a, b) or "
                     "('choice', v, ...)")


def as_distribution(spec: Any) -> Distribution:
    """A distribution as it is declared: already one, or a spec for `parse`."""
    return spec if isinstance(spec, Distribution) else parse(spec)


def space(method: methods.Method, range_name: str,
          overrides: Mapping[str, Any] | None = None) -> dict[str, Distribution]:
    """The distributions a method's settings are drawn from in `range_name` (`Method.ranges`);
    `overrides` maps parameter names to specs for `parse` (a study's own ranges): they replace
    the method's ranges and add ranges for method-specific parameters that have none; any other
    declared name is ignored (a parameter the method does not use)."""
    if range_name not in RANGES:
        raise ValueError(f"range: unknown {range_name!r}; allowed: {', '.join(RANGES)}")
    out = {name: as_distribution(spec) for name, spec in method.ranges(range_name).items()}
    known = methods.hparam_defaults()
    for name, spec in (overrides or {}).items():
        if name not in out and name not in known:
            raise ValueError(f"range override: unknown parameter {name!r}; allowed: "
                             f"{', '.join(known)}")
        if name in out or name in method.uses:
            out[name] = parse(spec)
    return out


def pinned(method: methods.Method, range_name: str) -> dict[str, Any]:
    """The shared parameters that the method's own ranges (`Method.search`) fix to one value in
    `range_name`, e.g. no D batch norm for WGAN_GP and DRAGAN in the narrow range; settings
    shared by every method (a study's `shared` mode) take these values for this method."""
    own = {k: as_distribution(v) for k, v in method.search.get(range_name, {}).items()
           if k in methods.SHARED.defaults}
    return {k: d.values[0] for k, d in own.items() if isinstance(d, Choice) and len(d.values) == 1}


def _rng(seed: int, method: str, range_name: str) -> np.random.Generator:
    """A generator that depends only on (seed, method name, range), so adding a method to a
    study does not change the settings drawn for the others."""
    digest = hashlib.sha256(f"{method}/{range_name}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def sample_settings(method: methods.Method, range_name: str, n: int, seed: int,
                    include_default: bool = True,
                    overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """`n` settings (dicts of hyperparameters) for `method`: the authors' default first (when
    `include_default`), then draws from `space(method, range_name, overrides)`. Deterministic in
    `seed`."""
    dists = space(method, range_name, overrides)
    rng = _rng(seed, method.name, range_name)
    settings = []
    if include_default and n > 0:
        settings.append(method.default_setting(range_name))
    while len(settings) < n:
        drawn = {name: d.sample(rng) for name, d in sorted(dists.items())}
        settings.append(method.hparams(drawn))
    return settings


def check_range(method: methods.Method, range_name: str, setting: Mapping[str, Any]) -> list[str]:
    """Names of the parameters of `setting` that lie outside the method's ranges."""
    return [name for name, d in space(method, range_name).items()
            if name in setting and not d.contains(setting[name])]

"""The image metrics a study can choose (`config.eval.metrics`), by name, on any registered
feature network (`gancmp.metrics.networks`): what each records and in which direction.

A name is a kind on its default network, or `KIND_NETWORK` on another:

    fid          Fréchet distance on Inception pool3 features, with KID, improved precision and
                 recall (k = 3) and the Inception Score: the paper's metric and the default
    fd_NETWORK   Fréchet distance with KID on another network (fd_dinov2, fd_clip)
    prdc         density and coverage (Naeem et al. 2020, k = 5) on Inception features
    prd          PRD's max F₈ and F₁/₈ (compare_gan v3: 20 clusters, 10 runs) on Inception
    fd_inf       FD∞ (Chong & Forsyth 2020) on Inception
    cmmd         CMMD (Jayasumana et al. 2024) on CLIP features
and prdc_NETWORK, prd_NETWORK, fd_inf_NETWORK, cmmd_NETWORK on another network. The values a
metric records are its `keys`; on a network other than the kind's default each key carries
the network's name as a suffix (fd_dinov2, kid_dinov2, density_clip, ...), so two networks'
values never share a name. `parse("fid,prdc,fd_dinov2")` reads a config's choice.
"""

from __future__ import annotations

import dataclasses

from gancmp.metrics import networks

# kind → (default network, ((key, higher_is_better or None: no direction), ...), about)
KINDS: dict[str, tuple[str, tuple[tuple[str, bool | None], ...], str]] = {
    "fd": ("inception", (("fd", False), ("kid", False), ("kid_std", None),
                         ("precision", True), ("recall", True)),
           "Fréchet distance, KID (100 subsets of 1,000), improved precision/recall (k = 3)"),
    "prdc": ("inception", (("density", True), ("coverage", True)),
             "density and coverage (Naeem et al. 2020, k = 5; prdc's)"),
    "prd": ("inception", (("prd_f8", True), ("prd_f1_8", True)),
            "PRD max F8 (recall) and F1/8 (precision), compare_gan v3: 20 clusters, 10 runs"),
    "fd_inf": ("inception", (("fd_inf", False),),
               "FD extrapolated to infinitely many samples (Chong & Forsyth 2020)"),
    "cmmd": ("clip", (("cmmd", False),),
             "CMMD: RBF-kernel MMD, sigma 10, scale 1000 (Jayasumana et al. 2024)"),
}
FID_KEYS = (("fid", False), ("kid", False), ("kid_std", None), ("precision", True),
            ("recall", True), ("inception_score", True), ("inception_score_std", None))
DEFAULT = "fid"


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric of a study. `name`: as a config names it; `kind`: a key of `KINDS`; `network`:
    the feature network's registry name; `keys`: ((recorded name, higher_is_better or None),
    ...), the first the metric's main value; `about`: one line."""

    name: str
    kind: str
    network: str
    keys: tuple[tuple[str, bool | None], ...]
    about: str

    @property
    def main(self) -> str:
        return self.keys[0][0]


def _make(kind: str, network: str) -> Metric:
    default, keys, about = KINDS[kind]
    if kind == "fd" and network == "inception":
        return Metric("fid", kind, network, FID_KEYS, about + ", Inception Score")
    if network == default:
        return Metric(kind, kind, network, keys, about)
    name = f"{kind}_{network}"
    return Metric(name, kind, network, tuple((f"{k}_{network}", d) for k, d in keys), about)


def all_metrics() -> tuple[Metric, ...]:
    """Every metric on every registered network ("fid" first)."""
    out = []
    for kind in KINDS:
        out += [_make(kind, n) for n in networks.names()]
    defaults = [m for m in out if m.network == KINDS[m.kind][0]]
    return tuple(defaults + [m for m in out if m not in defaults])


def names() -> tuple[str, ...]:
    return tuple(m.name for m in all_metrics())


def get(name: str) -> Metric:
    """The metric called `name`; ValueError naming the allowed ones otherwise (a kind whose
    default network is not registered, e.g. cmmd without CLIP, says so)."""
    for m in all_metrics():
        if m.name == name:
            return m
    if name in KINDS and KINDS[name][0] not in networks.names():
        raise ValueError(f"metric {name!r} runs on the {KINDS[name][0]} network, which is not "
                         f"registered (feature networks: {', '.join(networks.names())})")
    raise ValueError(f"unknown metric {name!r}; allowed: {', '.join(names())}")


def parse(text: str | None) -> tuple[Metric, ...]:
    """The metrics of a comma-separated list (None or empty: `DEFAULT`), in the given order,
    each once. ValueError for an unknown name."""
    chosen = [s.strip() for s in (text or DEFAULT).split(",") if s.strip()] or [DEFAULT]
    out: list[Metric] = []
    for name in chosen:
        m = get(name)
        if m not in out:
            out.append(m)
    return tuple(out)


def directions(metrics: tuple[Metric, ...]) -> dict[str, bool]:
    """{recorded key: higher_is_better} of every key of `metrics` that has a direction."""
    return {k: d for m in metrics for k, d in m.keys if d is not None}

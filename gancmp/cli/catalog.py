"""What can be named in a config, one line each, for `gancmp list methods|losses|penalties|datasets|
archs|metrics`: every name as the registries hold it now (a module named by `--imports` adds its
own), with a short description.

    methods    the loss, penalty or constraint, D kind, and the authors' defaults
    losses     what D outputs, its state, its own hyperparameters, the formula's first line
    penalties  the first line of its docstring
    datasets   the example shape, kind, split sizes, main metric, where the data comes from
    archs      the example shapes it takes, and whether it has BEGAN's auto-encoder D
    metrics    what a trial is scored by, on which datasets, and in which direction
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gancmp import losses, methods, nets, penalties
from gancmp.data import registry

# (name, datasets, direction, what it measures): the metrics of `gancmp.train.evaluation`'s
# evaluators, the main one of each dataset kind first.
METRICS = (
    ("modes_covered", "2-D mixtures (main)", "higher is better",
     "modes with at least 1 % of the samples within 3 std"),
    ("high_quality", "2-D mixtures", "higher is better", "fraction of samples within 3 std of a "
     "mode"),
    ("kl_to_uniform", "2-D mixtures", "lower is better", "KL of the mode histogram to uniform"),
    ("f1", "polygons (main)", "higher is better", "F1 of polygon precision and recall"),
    ("precision", "polygons, images", "higher is better", "polygons: samples near a true "
     "polygon; images: improved precision (k = 3) on Inception features"),
    ("recall", "polygons, images", "higher is better", "polygons: held-out polygons the "
     "generator reaches; images: improved recall (k = 3)"),
    ("fid", "images (main)", "lower is better", "Frechet Inception distance to the test set"),
    ("kid", "images", "lower is better", "kernel Inception distance (mean over 100 subsets)"),
)
SUITE_HEADER = ("image metrics a study chooses (config.eval.metrics=NAME,NAME; "
                "config.eval.main_metric=KEY; default fid):")


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _first_line(fn: Callable, width: int = 100) -> str:
    """The docstring's first paragraph on one line, cut to `width` characters."""
    paragraph = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
    return paragraph if len(paragraph) <= width else paragraph[:width - 1].rstrip() + "…"


def _hparams(values: Mapping[str, object]) -> str:
    return ", ".join(f"{k} {_number(v)}" for k, v in values.items())


def method_lines() -> list[str]:
    """One line per registered method: loss, penalty/constraint, D kind, authors' defaults."""
    out = []
    for name in methods.names():
        m = methods.get(name)
        parts = [f"loss {m.loss}"]
        if m.penalty:
            parts.append(f"penalty {m.penalty}")
        if m.clip_weights:
            parts.append("weight clipping")
        if m.discriminator == "autoencoder":
            parts.append("auto-encoder D")
        hp = m.hparams()
        used = [*methods.SHARED.defaults, *m.uses]
        out.append(f"{name}: {', '.join(parts)}; defaults: {_hparams({k: hp[k] for k in used})}")
    return out


def loss_lines() -> list[str]:
    """One line per registered loss: D's output kind, state, own hyperparameters, formula."""
    out = []
    for name in losses.names():
        s = losses.spec(name)
        parts = [f"on {s.output}"]
        if s.stateful:
            parts.append(f"stateful (initial state {s.init_state!r})")
        if s.hparams:
            parts.append(f"hyperparameters {_hparams(s.hparams)}")
        out.append(f"{name}: {', '.join(parts)}; {_first_line(s.fn)}")
    return out


def penalty_lines() -> list[str]:
    """One line per registered penalty: its docstring's first line."""
    return [f"{name}: {_first_line(penalties.get(name))}" for name in penalties.names()]


def dataset_lines() -> list[str]:
    """One line per registered dataset (`gancmp.data.registry`): example shape, kind, split
    sizes, main metric and its direction, where the data comes from."""
    out = []
    for name in registry.names():
        ds = registry.get(name)
        sizes = ", ".join(f"{split} {n}" for split, n in ds.sizes) or "sampled afresh"
        where = f"; {ds.origin}" if ds.origin else ""
        out.append(f"{name}: {ds.shape}; {ds.kind}; {sizes}; main metric {ds.metrics.main} "
                   f"({ds.metrics.direction}){where}")
    return out


def arch_lines() -> list[str]:
    """One line per architecture: what it takes, whether BEGAN can use it."""
    out = []
    for name in nets.names():
        a = nets.get(name)
        extra = "; auto-encoder D (BEGAN)" if a.has_autoencoder else ""
        out.append(f"{name}: {a.data}{extra}")
    return out


def metric_lines() -> list[str]:
    """One line per evaluation metric: datasets, direction, what it measures; then the image
    metrics a study can choose (`gancmp.metrics.suite`): name, network, what it records (↓
    lower is better, ↑ higher), what it is; then the feature networks."""
    from gancmp.metrics import networks, suite  # noqa: PLC0415 (light: no JAX)

    out = [f"{name}: {where}, {direction}; {what}" for name, where, direction, what in METRICS]
    out += ["", SUITE_HEADER]
    for m in suite.all_metrics():
        keys = ", ".join(k + {True: " ↑", False: " ↓", None: ""}[d] for k, d in m.keys)
        out.append(f"  {m.name}: on {m.network} features; records {keys}; {m.about}")
    out += ["", "feature networks (--features NAME; gancmp fid|kid|pr|prdc|prd|cmmd|fdinf|stats):"]
    out += [f"  {n}: {networks.get(n).dim}-d; {networks.get(n).about}"
            for n in networks.names()]
    return out


LISTS: dict[str, Callable[[], list[str]]] = {
    "methods": method_lines, "losses": loss_lines, "penalties": penalty_lines,
    "datasets": dataset_lines, "archs": arch_lines, "metrics": metric_lines,
}

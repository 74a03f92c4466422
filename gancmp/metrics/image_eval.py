"""The metrics a study chose (`config.eval.metrics`, names of `gancmp.metrics.suite`) of a group
of generators, one feature network at a time, on the device.

Each network the chosen metrics need makes one `NetworkPass`: its extractor, its reference
statistics of the real test images (with their features; cached on disk per network, weights
and preprocessing, `fid.reference_statistics`) and the chunked generate → features program of
`device_eval` (the generators run again for each network: a network pass costs far more than
the generator's). The features [K, N, d] of one network exist only while its metrics are
computed, so the memory bound of a pass is the one network's, as with the Inception alone.

Per network, from its features:
  fid / fd_NETWORK  mean and covariance, KID's subsets, improved precision/recall on the device
                    (`device_eval.group_metrics`), the Fréchet distance in float64 on the host;
                    "fid" adds the Inception Score from the same pass's logits;
  prdc              `prdc.prdc_counts` against the real features (k = 5);
  prd               `prd.prd` on the first min(N, M) of each set (PRD needs equal counts);
  fd_inf            `fd_infinity.fd_infinity` from min(5,000, N/2) to N samples, 15 counts;
  cmmd              `cmmd.cmmd` against the real features (unit-normalised, σ 10, scale 1000).
A trial whose samples were not all finite gets None (the evaluator's "nonfinite" row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from gancmp.metrics import cmmd, device_eval, fd_infinity, fid, prd, prdc, suite

KID_ARGS = {"num_subsets": 100, "subset_size": 1000}
PR_K = 3
FD_NAMES = ("fid", "kid", "kid_std", "precision", "recall")  # `device_eval.finish`'s, in order


@dataclasses.dataclass(frozen=True)
class NetworkPass:
    """One feature network's part of an evaluation. `run`: (states [K], samples per trial per
    chunk) → the `device_eval.GroupFeatures` carry; `chunk`: images per network pass;
    `logits`: the Inception Score's sums are taken (the "fid" metric on Inception weights
    with a classifier); `seed`: of KID's subsets, PRD's clusterings and FD∞'s shuffles;
    `resources`: the run's `resources.EvalResources` (the real sides are kept there)."""

    network: str
    extractor: Any
    reference: fid.ReferenceStats
    metrics: tuple[suite.Metric, ...]
    logits: bool
    run: Callable[[Any, int], dict[str, Any]]
    chunk: int
    seed: int
    resources: Any = dataclasses.field(compare=False, repr=False)


def fd_inf_min_n(n: int) -> int:
    """FD∞'s smallest sample count for n generated samples: the paper's 5,000, at most n/2."""
    return min(fd_infinity.MIN_N, n // 2)


def check_counts(metrics: Sequence[suite.Metric], n: int, dim: int, network: str) -> None:
    """ValueError naming eval.num_samples when `n` samples are too few for a metric on
    `dim`-d features."""
    if n < dim:
        raise ValueError(f"eval.num_samples={n} is below the feature dimension {dim} of "
                         f"{network}: the generated covariance would be singular; use at least "
                         f"{dim}")
    for m in metrics:
        if m.kind == "fd_inf" and fd_inf_min_n(n) <= dim:
            raise ValueError(f"eval.num_samples={n}: {m.name} measures FD from "
                             f"{fd_inf_min_n(n)} samples, which must exceed the feature "
                             f"dimension {dim}; use at least {2 * (dim + 1)}")


def _fd_rows(p: NetworkPass, carry, count: int, metric: suite.Metric, splits: int
             ) -> list[dict[str, Any] | None]:
    """FD, KID and precision/recall (and IS for "fid") of every trial, under `metric`'s
    keys."""
    kid_args = {**KID_ARGS, "seed": p.seed}
    real = p.resources.real_side(p.reference, count, PR_K, kid_args)  # once per run
    device = device_eval.group_metrics(real, carry["features"], count)
    rows = device_eval.finish(carry, device, p.reference, count, splits)
    if metric.name == "fid":
        return rows
    names = dict(zip(FD_NAMES, (k for k, _ in metric.keys), strict=True))
    return [None if r is None else {names[k]: v for k, v in r.items() if k in names}
            for r in rows]


def _one(p: NetworkPass, metric: suite.Metric, feats: jax.Array, count: int) -> dict[str, Any]:
    """The values of a non-FD metric of one trial's features [count, d] (on the device)."""
    ref = p.reference
    keys = [k for k, _ in metric.keys]
    if metric.kind == "prdc":
        real, real_r2 = p.resources.prdc_real(ref)
        got = jax.device_get(prdc.prdc_counts(real, feats, prdc.K, real_r2=real_r2))
        return {keys[0]: float(got["density"]) / (prdc.K * count),
                keys[1]: float(got["coverage"]) / ref.num}
    host = np.asarray(feats)
    if metric.kind == "prd":
        m = min(count, ref.num)
        got = prd.prd(ref.features[:m], host[:m], seed=p.seed)
        return {keys[0]: got.f_beta, keys[1]: got.f_beta_inv}
    if metric.kind == "fd_inf":
        got = fd_infinity.fd_infinity(ref.mu, ref.sigma, host, min_n=fd_inf_min_n(count),
                                      seed=p.seed)
        return {keys[0]: got.value}
    if metric.kind == "cmmd":
        return {keys[0]: cmmd.cmmd(ref.features, host)}
    raise ValueError(f"no computation for metric kind {metric.kind!r}")


def pass_rows(p: NetworkPass, carry: dict[str, Any], count: int, splits: int
              ) -> list[dict[str, Any] | None]:
    """Every chosen metric of network pass `p` for each trial of `carry` (the first `count`
    samples count): one dict per trial, None for a trial with nonfinite samples."""
    finite = np.asarray(jax.device_get(carry["finite"]))
    rows: list[dict[str, Any] | None] = [{} if ok else None for ok in finite]
    for metric in p.metrics:
        if metric.kind == "fd":
            got = _fd_rows(p, carry, count, metric, splits)
            rows = [None if r is None or g is None else {**r, **g} for r, g in zip(rows, got,
                                                                                   strict=True)]
            continue
        for i, row in enumerate(rows):
            if row is not None:
                feats = carry["features"][i].reshape(-1, carry["features"].shape[-1])[:count]
                row.update(_one(p, metric, feats, count))
    return rows


def merge(parts: Sequence[list[dict[str, Any] | None]]) -> list[dict[str, Any] | None]:
    """Per trial, the union of the passes' dicts; None where any pass has None."""
    out = []
    for row in zip(*parts, strict=True):
        out.append(None if any(r is None for r in row) else
                   {k: v for r in row for k, v in r.items()})
    return out


def metric_setup(p: NetworkPass, n: int) -> dict[str, Any]:
    """What the metrics of pass `p` were measured with (recorded in the evaluator's setup):
    the network's provenance, the reference, the sample counts and each metric's own
    parameters."""
    out = {"features": p.network, **fid.fid_provenance(p.extractor.provenance, p.reference, n)}
    for m in p.metrics:
        if m.kind == "fd":
            out[m.name] = {"kid": {**KID_ARGS, "seed": p.seed},
                           "precision_recall_k": PR_K}
        elif m.kind == "prdc":
            out[m.name] = {"k": prdc.K}
        elif m.kind == "prd":
            out[m.name] = {"num_clusters": prd.NUM_CLUSTERS, "num_runs": prd.NUM_RUNS,
                           "num_angles": prd.NUM_ANGLES, "beta": prd.BETA,
                           "n_init": prd.N_INIT, "iterations": prd.ITERATIONS,
                           "num": min(n, p.reference.num)}
        elif m.kind == "fd_inf":
            out[m.name] = {"min_n": fd_inf_min_n(n), "num_points": fd_infinity.NUM_POINTS}
        elif m.kind == "cmmd":
            out[m.name] = {"sigma": cmmd.SIGMA, "scale": cmmd.SCALE, "unit_norm": True}
    return out

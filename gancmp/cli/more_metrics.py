"""The scoring commands of issue 25 beside fid | kid | pr: prdc | prd | cmmd | fdinf REAL FAKE.

    gancmp prdc cifar10:test samples/                     # density and coverage, k = 5
    gancmp prd cifar10:test samples/ --num 10000          # PRD's F8 and F1/8 (equal counts)
    gancmp cmmd cifar10:test samples/ --features clip     # CMMD on CLIP (the default network)
    gancmp fdinf cifar10_test_stats.npz samples/          # FD∞ (needs ≥ 5,000 generated)

As `gancmp pr`, the real set comes first and the generated second. Sources, --features,
--feature_weights, --recursive and the output (text or --json) are `gancmp.cli.score`'s.
"""

from __future__ import annotations

from absl import flags

from gancmp.cli import score as common

FLAGS = flags.FLAGS


def define_prdc() -> None:
    """Flags of `gancmp prdc REAL FAKE`."""
    common._define_common()
    flags.DEFINE_integer("prdc_k", 5, "The k of the k-nearest-neighbour radii (the paper's 5).")


def define_prd() -> None:
    """Flags of `gancmp prd REAL FAKE`."""
    common._define_common()
    flags.DEFINE_integer("prd_clusters", 20, "k-means clusters (compare_gan's 20).")
    flags.DEFINE_integer("prd_runs", 10, "Clusterings the curve is averaged over (10).")
    flags.DEFINE_integer("seed", 0, "Seed of the clusterings.")


def define_cmmd() -> None:
    """Flags of `gancmp cmmd A B`."""
    common._define_common(features="clip")


def define_fdinf() -> None:
    """Flags of `gancmp fdinf REAL FAKE`."""
    common._define_common()
    flags.DEFINE_integer("fdinf_min_n", 5000, "The smallest sample count FD is measured at "
                         "(the paper's 5,000); it must exceed the feature dimension.")
    flags.DEFINE_integer("fdinf_points", 15, "Sample counts, min_n to all (the paper's 15).")
    flags.DEFINE_integer("seed", 0, "Seed of the shuffles.")


def _two(command: str, args: list[str], keep_features: bool = True):
    sources = common._sources(command, args)
    return sources, common._statistics(sources, common._extractor(sources), keep_features)


def run_prdc(args: list[str]) -> int:
    """Density, coverage (and prdc's precision/recall) of FAKE (`args[1]`) against REAL."""
    common._positive("prdc_k")
    sources, stats = _two("prdc", args)
    got = common._score().prdc(*stats, k=FLAGS.prdc_k)
    common._report("prdc", got._asdict(), sources, stats, {"prdc_k": FLAGS.prdc_k},
                   f"density {got.density:.4f}, coverage {got.coverage:.4f} (precision "
                   f"{got.precision:.4f}, recall {got.recall:.4f}; prdc's, k={FLAGS.prdc_k})")
    return 0


def run_prd(args: list[str]) -> int:
    """PRD (max F8 and F1/8) of FAKE (`args[1]`) against REAL (`args[0]`)."""
    common._positive("prd_clusters", 2)
    common._positive("prd_runs")
    sources, stats = _two("prd", args)
    got = common._score().prd(*stats, FLAGS.prd_clusters, FLAGS.prd_runs, FLAGS.seed)
    params = {"prd_clusters": FLAGS.prd_clusters, "prd_runs": FLAGS.prd_runs,
              "seed": FLAGS.seed}
    common._report("prd", {"f8": got.f_beta, "f1_8": got.f_beta_inv}, sources, stats, params,
                   f"PRD F8 (recall) {got.f_beta:.4f}, F1/8 (precision) {got.f_beta_inv:.4f}")
    return 0


def run_cmmd(args: list[str]) -> int:
    """CMMD of the two sources (default network: clip)."""
    sources, stats = _two("cmmd", args)
    value = common._score().cmmd(*stats)
    common._report("cmmd", {"cmmd": value}, sources, stats, {}, f"CMMD {value:.4f}")
    return 0


def run_fdinf(args: list[str]) -> int:
    """FD∞ of FAKE (`args[1]`, its features) against REAL (`args[0]`, its μ and Σ)."""
    common._positive("fdinf_points", 2)
    sources, stats = _two("fdinf", args)
    got = common._score().fd_infinity(*stats, FLAGS.fdinf_min_n, FLAGS.fdinf_points, FLAGS.seed)
    params = {"fdinf_min_n": FLAGS.fdinf_min_n, "fdinf_points": FLAGS.fdinf_points,
              "seed": FLAGS.seed}
    common._report("fdinf", {"fd_inf": got.value, "slope": got.slope,
                             "counts": [int(c) for c in got.counts],
                             "fds": [float(v) for v in got.fds]}, sources, stats, params,
                   f"FD∞ {got.value:.4f} (FD at {got.counts[-1]} samples {got.fds[-1]:.4f}; "
                   f"FD_N ≈ FD∞ + {got.slope:.4g}/N)")
    return 0

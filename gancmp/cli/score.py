"""The scoring commands of `gancmp`: fid | kid | pr | is SOURCE... and stats SOURCE --out FILE
(prdc | prd | cmmd | fdinf: `gancmp.cli.more_metrics`).

    gancmp fid samples/ cifar10:test --data_dir ~/tfds --preprocess clean
    gancmp stats cifar10:train --data_dir ~/tfds --out cifar10_train.npz
    gancmp kid samples.npz cifar10_train.npz --json
    gancmp fid samples/ cifar10:test --features dinov2 --feature_weights dinov2_vitl14.pth

`--features` names the feature network (`gancmp.metrics.networks`: inception, the default, or
another registered one such as dinov2 or clip), `--feature_weights` its weights file (default:
its published weights from the cache); --preprocess, --dims and --inception_weights are the
Inception's own. `--recursive` reads a folder's subfolders too.

A SOURCE is a folder of images, an `.npz` with an `images` array, a statistics file written by
`gancmp stats`, or a dataset NAME:SPLIT (see `gancmp.metrics.score`). `pr REAL FAKE` gives the
precision of FAKE against REAL and the recall of REAL by FAKE. Flag definitions and runners only;
`gancmp.cli.main` dispatches to them and reports their errors in one line with exit code 2. JAX
(and so the network module) is imported only once a scoring command runs, so that `gancmp`
itself starts fast.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from absl import flags

from gancmp.metrics.stats_file import ScoreError, Statistics, check_consistent, check_setup

FLAGS = flags.FLAGS
SOURCES = {"fid": 2, "kid": 2, "pr": 2, "is": 1, "stats": 1, "prdc": 2, "prd": 2, "cmmd": 2,
           "fdinf": 2}
INCEPTION_ONLY = ("preprocess", "dims", "inception_weights")


def _score():
    from gancmp.metrics import score  # noqa: PLC0415 (loads JAX: only when a command runs)

    return score


def _define_common(features: str = "inception") -> None:
    from gancmp.nets.inception import BLOCK_DIMS, FEATURE_DIM, PREPROCESS_MODES  # noqa: PLC0415

    flags.DEFINE_string("features", features,
                        "The feature network (gancmp list metrics): inception (FID's), or "
                        "another registered one (dinov2, clip).")
    flags.DEFINE_string("feature_weights", None,
                        "The feature network's weights file (default: its published weights, "
                        "downloaded once to the cache); for inception as --inception_weights.")
    flags.DEFINE_bool("recursive", False, "Read image folders' subfolders too (any depth).")
    flags.DEFINE_enum("preprocess", "tf1_legacy", list(PREPROCESS_MODES),
                      "Resize and scaling in front of the network: tf1_legacy (the TF1 FID "
                      "graph of the published numbers), pytorch_fid, or clean (clean-fid's "
                      "antialiased bicubic resize).")
    flags.DEFINE_string("inception_weights", None,
                        "FID weights: a converted .npz or pytorch-fid's .pth (default: the "
                        "cached download). `is` needs the classifier layer: the .pth, or a "
                        ".npz converted since gancmp keeps it (format version 2).")
    flags.DEFINE_enum("dims", str(FEATURE_DIM), [str(d) for d in BLOCK_DIMS],
                      "Feature size, as pytorch-fid's --dims: 2048 (pool3) or the spatial mean "
                      "of an earlier block (64, 192, 768), for sets smaller than 2048 images.")
    flags.DEFINE_integer("num", None, "Use the first NUM images of each image source (default: "
                         "all; statistics files are used whole).")
    flags.DEFINE_integer("batch_size", 50, "Images per feature-extractor call.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory of dataset sources (NAME:SPLIT);"
                        " the polygon sets' cache directory.")
    flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
    flags.DEFINE_bool("progress", True, "A progress bar on stderr (only when it is a terminal).")


def define_fid() -> None:
    """Flags of `gancmp fid A B`."""
    _define_common()


def define_kid() -> None:
    """Flags of `gancmp kid A B`."""
    _define_common()
    flags.DEFINE_integer("kid_subsets", 100, "Random subsets the KID is averaged over.")
    flags.DEFINE_integer("kid_subset_size", 1000, "Images per subset (at most each set's size).")
    flags.DEFINE_integer("seed", 0, "Seed of the subset draws.")


def define_pr() -> None:
    """Flags of `gancmp pr REAL FAKE`."""
    _define_common()
    flags.DEFINE_integer("pr_k", 3, "The k of the k-nearest-neighbour radii.")


def define_is() -> None:
    """Flags of `gancmp is SOURCE`."""
    _define_common()
    flags.DEFINE_integer("splits", 10, "Splits the Inception Score is averaged over.")


def define_stats() -> None:
    """Flags of `gancmp stats SOURCE --out FILE`."""
    _define_common()
    flags.DEFINE_string("out", None, "The statistics file to write (.npz).")
    flags.DEFINE_bool("keep_features", True, "Keep the features in the file (KID, precision/"
                      "recall, density/coverage, PRD, CMMD, FD∞ and IS need them; "
                      "--nokeep_features keeps only mu and sigma).")


def _sources(command: str, args: list[str]) -> list:
    """The sources named on the command line (ImageSets and Statistics)."""
    score = _score()
    want = SOURCES[command]
    if len(args) != want:
        shape = "SOURCE" if want == 1 else "A B"
        raise ScoreError(f"give {want} source{'s' if want > 1 else ''}: gancmp {command} {shape}"
                         f" (got {len(args)}); a source is {score.SOURCE_HELP}")
    _positive("batch_size")
    network()
    return [score.resolve(a, num=FLAGS.num, data_dir=FLAGS.data_dir, recursive=FLAGS.recursive)
            for a in args]


def network() -> str:
    """The --features network's name, checked: ScoreError naming the registered ones, or an
    Inception-only flag given with another network."""
    from gancmp.metrics import networks  # noqa: PLC0415 (light: no JAX)

    name = FLAGS.features
    if name not in networks.names():
        raise ScoreError(f"--features: unknown feature network {name!r}; allowed: "
                         f"{', '.join(networks.names())}")
    given = [f for f in INCEPTION_ONLY if FLAGS[f].present]
    if name != "inception" and given:
        raise ScoreError(f"--{given[0]}: only for --features inception (this run uses {name}; "
                         "its weights: --feature_weights)")
    return name


def _weights(name: str) -> str | None:
    return FLAGS.feature_weights or (FLAGS.inception_weights if name == "inception" else None)


def _extractor(sources: list):
    """The feature extractor, when an image source or explicit weights need one; else None."""
    name = network()
    if all(isinstance(s, Statistics) for s in sources) and not _weights(name):
        return None
    from gancmp.metrics import networks  # noqa: PLC0415

    options = {"batch_size": FLAGS.batch_size}
    if name == "inception":
        options.update(preprocess=FLAGS.preprocess, dims=int(FLAGS.dims))
    return networks.make_extractor(name, _weights(name), **options)


def _expected(name: str, extractor) -> dict[str, Any]:
    """The setup every source's statistics must have been measured with."""
    if extractor is not None:
        return {**extractor.provenance, "features": name}
    if name == "inception":
        return {"features": name, "preprocess": FLAGS.preprocess, "feature_dim": int(FLAGS.dims)}
    from gancmp.metrics import networks  # noqa: PLC0415

    return {"features": name, "feature_dim": networks.get(name).dim}


def _statistics(sources: list, extractor, keep_features: bool) -> list[Statistics]:
    """Every source's statistics, checked against the run's setup and each other."""
    from tqdm import tqdm  # noqa: PLC0415

    name = network()
    expected = _expected(name, extractor)
    out = []
    for source in sources:
        if isinstance(source, Statistics):
            check_setup(source, expected)
            out.append(source)
            continue
        show = FLAGS.progress and sys.stderr.isatty()
        with tqdm(total=source.num, desc=source.name, unit="img", file=sys.stderr,
                  disable=not show, leave=False) as bar:
            out.append(_score().compute_statistics(source, extractor, keep_features=keep_features,
                                                   progress=bar.update, features=name))
    check_consistent(out)
    return out


def _setup(stats: Statistics) -> dict[str, Any]:
    p = stats.provenance
    return {"features": p.get("features") or "inception",
            **{k: p.get(k) for k in ("preprocess", "feature_dim", "weights_sha256",
                                     "weights_source", "network")}}


def _weights_label(setup: dict[str, Any]) -> str:
    sha = setup.get("weights_sha256")
    return f"sha256 {sha[:12]}" if sha else str(setup.get("weights_source"))


def _report(command: str, values: dict[str, Any], sources, stats: list[Statistics],
            params: dict[str, Any], text: str) -> None:
    score, setup = _score(), _setup(stats[0])
    if FLAGS.json:
        print(json.dumps({"metric": command, **values, "sources": [score.describe(s)
                                                                   for s in sources],
                          "setup": setup, **params}, sort_keys=True))
        return
    names = "; ".join(f"{d['source']} ({d['kind']}, {d['num']} images)"
                      for d in map(score.describe, sources))
    weights = _weights_label(setup)
    print(f"{text}   [{names}; {setup['features']} features ({setup['feature_dim']}-d), "
          f"preprocess {setup['preprocess']}, weights {weights}]")


def run_fid(args: list[str]) -> int:
    """FID of the two sources in `args`; prints it (text or --json), returns 0."""
    sources = _sources("fid", args)
    stats = _statistics(sources, _extractor(sources), keep_features=False)
    value = _score().fid(*stats)
    _report("fid", {"fid": value}, sources, stats, {}, f"FID {value:.4f}")
    return 0


def _positive(name: str, minimum: int = 1) -> None:
    if FLAGS[name].value < minimum:
        raise ScoreError(f"--{name}: must be an integer ≥ {minimum}, got {FLAGS[name].value}")


def run_kid(args: list[str]) -> int:
    """KID (mean ± std over subsets) of the two sources in `args`; returns 0."""
    _positive("kid_subsets")
    _positive("kid_subset_size", 2)
    sources = _sources("kid", args)
    stats = _statistics(sources, _extractor(sources), keep_features=True)
    params = {"kid_subsets": FLAGS.kid_subsets, "kid_subset_size": FLAGS.kid_subset_size,
              "seed": FLAGS.seed}
    k = _score().kid(*stats, FLAGS.kid_subsets, FLAGS.kid_subset_size, FLAGS.seed)
    _report("kid", {"kid": k.mean, "kid_std": k.std}, sources, stats, params,
            f"KID {k.mean:.6f} ± {k.std:.6f}")
    return 0


def run_pr(args: list[str]) -> int:
    """Improved precision and recall of FAKE (`args[1]`) against REAL (`args[0]`); returns 0."""
    _positive("pr_k")
    sources = _sources("pr", args)
    stats = _statistics(sources, _extractor(sources), keep_features=True)
    pr = _score().precision_recall(*stats, k=FLAGS.pr_k)
    _report("pr", {"precision": pr.precision, "recall": pr.recall}, sources, stats,
            {"pr_k": FLAGS.pr_k}, f"precision {pr.precision:.4f}, recall {pr.recall:.4f}")
    return 0


def run_is(args: list[str]) -> int:
    """Inception Score of the one source in `args` (needs the classifier layer: pytorch-fid's
    .pth or a version-2 converted .npz); returns 0."""
    _positive("splits")
    if FLAGS.features != "inception":
        raise ScoreError(f"--features {FLAGS.features}: the Inception Score is the Inception's "
                         "classifier; only --features inception")
    sources = _sources("is", args)
    from gancmp.nets.inception import FEATURE_DIM  # noqa: PLC0415

    if int(FLAGS.dims) != FEATURE_DIM:
        raise ScoreError(f"--dims {FLAGS.dims}: the Inception Score needs the {FEATURE_DIM}-d "
                         "pool3 features")
    fc_weight = _score().classifier_weights(FLAGS.inception_weights)  # before any long work
    stats = _statistics(sources, _extractor(sources), keep_features=True)
    result = _score().inception_score(stats[0], fc_weight, FLAGS.splits)
    _report("is", {"is": result.mean, "is_std": result.std}, sources, stats,
            {"splits": FLAGS.splits}, f"IS {result.mean:.4f} ± {result.std:.4f}")
    return 0


def run_stats(args: list[str]) -> int:
    """Writes the statistics of the one image source in `args` to --out; returns 0."""
    if not FLAGS.out:
        raise ScoreError("--out: required (the statistics file to write, .npz)")
    sources = _sources("stats", args)
    if isinstance(sources[0], Statistics):
        raise ScoreError(f"{args[0]}: already a statistics file")
    from gancmp.metrics.stats_file import save_statistics  # noqa: PLC0415

    stats = _statistics(sources, _extractor(sources), keep_features=FLAGS.keep_features)[0]
    save_statistics(FLAGS.out, stats)
    setup = _setup(stats)
    if FLAGS.json:
        print(json.dumps({"out": FLAGS.out, "num": stats.num, "features": FLAGS.keep_features,
                          "source": _score().describe(sources[0]), "setup": setup},
                         sort_keys=True))
    else:
        print(f"wrote {FLAGS.out}: {stats.num} images of {stats.source}, {stats.dim}-d features"
              f"{'' if FLAGS.keep_features else ' (mu and sigma only)'}, network "
              f"{setup['features']}, preprocess "
              f"{setup['preprocess']}, weights {_weights_label(setup)}")
    return 0

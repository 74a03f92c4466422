"""Scores of anyone's images: a source (a folder, an `.npz` of images, a statistics file, a
dataset) → its feature statistics → FID, KID, precision/recall or the Inception Score.

    a = resolve("samples/")                            # an ImageSet
    b = resolve("cifar10:test", data_dir="~/tfds")     # an ImageSet of the real test images
    extractor = FeatureExtractor.from_file(weights, preprocess="clean")
    value = fid(compute_statistics(a, extractor), compute_statistics(b, extractor))

A source string is, in this order: an existing folder (its image files); an existing `.npz`
file, either written by `gancmp stats` (statistics) or holding an `images` array; else a dataset
`NAME:SPLIT`: an image dataset of `gancmp.data.tfds` (mnist, fashion_mnist, cifar10, celeb_a;
any TFDS split, read from `data_dir`) or a polygon set of `gancmp.data.synthetic` (triangles,
quadrilaterals; split train, test or heldout of the fixed set of data seed 0), preprocessed as
for training. Every problem is a ScoreError or an ImageSourceError (both ValueErrors) with a
one-line message.

Features do not depend on how images are batched: each image's features are its own (the
extractor pads the last batch and drops the padding), so the statistics depend only on the
images and the extractor.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from gancmp import storage
from gancmp.data import images as image_io
from gancmp.data import registry, tfds
from gancmp.data.images import ImageSet
from gancmp.metrics import inception_score as IS
from gancmp.metrics import kid as kid_lib
from gancmp.metrics import precision_recall as pr_lib
from gancmp.metrics.fid import FeatureStats, frechet_distance
from gancmp.metrics.inception import CONVERTED_NAME, FID_WEIGHTS_NAME, is_converted
from gancmp.metrics.pth import UnsafePickleError
from gancmp.metrics.stats_file import (
    ScoreError,
    Statistics,
    is_statistics,
    load_statistics,
    need_features,
    network_of,
)
from gancmp.nets.inception import BLOCK_DIMS

__all__ = ["ImageSet", "ScoreError", "Statistics", "classifier_weights", "compute_statistics",
           "dataset_images", "describe", "fid", "inception_score", "kid", "precision_recall",
           "resolve"]

SOURCE_HELP = ("a folder of images, an .npz with an 'images' array, a statistics file from "
               "`gancmp stats`, or a dataset NAME:SPLIT such as cifar10:test or triangles:test")

Source = ImageSet | Statistics


def image_datasets() -> list[str]:
    """The registered datasets of images (`gancmp.data.registry`): kind "images" (the TFDS
    sets, first) then kind "polygons"; the mixtures are 2-D points."""
    by_kind = [registry.get(n) for n in registry.names()]
    return [ds.name for kind in ("images", "polygons") for ds in by_kind if ds.kind == kind]


def dataset_images(name: str, split: str, *, num: int | None = None,
                   data_dir: str | None = None, opener: Callable | None = None) -> ImageSet:
    """The first `num` (default all) images of split `split` of dataset `name`, uint8
    [N, H, W, C] as for training (see the module docstring): a TFDS set read from any TFDS
    split, another registered image set from its loader's splits (data seed 0). `opener`:
    TFDS's reader `(name, split, data_dir) → records`, injectable for tests."""
    label = f"{name}:{split}"
    ds = registry.get(name) if name in registry.names() else None
    if ds is None:
        raise ScoreError(f"{label}: unknown dataset {name!r}; image datasets: "
                         f"{', '.join(image_datasets())}")
    if ds.kind == "mixture":
        raise ScoreError(f"{label}: {name} is a set of 2-D points, not images")
    if name in tfds.SPECS:
        try:
            records = (opener or tfds.open_split)(name, split, data_dir)
        except tfds.DatasetUnavailableError as e:  # its advice names the trainer's flag
            raise tfds.DatasetUnavailableError(f"{e} (Scoring commands: --data_dir DIR.)"
                                               ) from None
        stop = len(records) if num is None else min(num, len(records))
        return image_io.from_array(tfds.read_examples(records, tfds.SPECS[name], 0, stop),
                                   label, "dataset", num)
    if split not in dict(ds.sizes):
        raise ScoreError(f"{label}: unknown split {split!r}; allowed: "
                         f"{', '.join(s for s, _ in ds.sizes)}")
    return image_io.from_array(ds.loader(data_dir, 0)[split], label, "dataset", num)


def resolve(text: str, *, num: int | None = None, data_dir: str | None = None,
            opener: Callable | None = None, recursive: bool = False) -> Source:
    """The source named by `text` (see the module docstring): an ImageSet of its first `num`
    images (default all), or the Statistics of a statistics file (used whole). `recursive`: a
    folder's subfolders are read too (`gancmp.data.images.open_folder`)."""
    path = os.path.expanduser(text)
    if storage.isdir(path):
        return image_io.open_folder(path, num, recursive=recursive)
    if storage.isfile(path):
        if not path.lower().endswith(".npz"):
            raise ScoreError(f"{text}: a file, but not an .npz; a source is {SOURCE_HELP}")
        with image_io.open_npz_file(path) as data:
            if is_statistics(data.files) or {"mu", "sigma"} <= set(data.files):
                return load_statistics(path, data)  # refuses another tool's mu/sigma files
        return image_io.open_npz(path, num)
    name, colon, split = text.partition(":")
    if colon and split and "/" not in text:
        return dataset_images(name, split, num=num, data_dir=data_dir, opener=opener)
    if name in image_datasets() and not colon:
        raise ScoreError(f"{text}: say which split, e.g. {text}:test or {text}:train")
    raise ScoreError(f"{text}: no such file or folder; a source is {SOURCE_HELP}")


def compute_statistics(images: ImageSet, extractor: Callable[[np.ndarray], np.ndarray], *,
                       keep_features: bool = True,
                       progress: Callable[[int], Any] | None = None,
                       features: str = "inception") -> Statistics:
    """Statistics of all images of `images` through `extractor` (a FeatureExtractor: float32
    [b, H, W, C] in [0, 1] → [b, d]), read `extractor.batch_size` images at a time; `progress`
    is called with each batch's size. `features`: the network's registry name
    (`gancmp.metrics.networks`), recorded in the provenance. Needs at least 2 images."""
    if images.num < 2:
        raise ScoreError(f"{images.name}: {images.num} image; statistics need at least 2")
    stats, kept = FeatureStats(), []
    for batch in images.batches(int(getattr(extractor, "batch_size", 50))):
        feats = np.asarray(extractor(batch), np.float32)
        stats.update(feats)
        if keep_features:
            kept.append(feats)
        if progress is not None:
            progress(len(batch))
    provenance = {**(getattr(extractor, "provenance", {}) or {}), "features": features}
    return Statistics(stats.mean, stats.covariance(), np.concatenate(kept) if kept else None,
                      stats.n, provenance, images.name)


def describe(source: Source) -> dict[str, Any]:
    """What a source is, for reports: its name, kind and number of images."""
    if isinstance(source, Statistics):
        return {"source": source.source, "kind": "statistics", "num": source.num,
                "from": source.provenance.get("source")}
    return {"source": source.name, "kind": source.kind, "num": source.num,
            "shape": list(source.shape)}


def fid(a: Statistics, b: Statistics) -> float:
    """FID between two sets' statistics (`gancmp.metrics.fid.frechet_distance`, eigh form).
    Raises ScoreError when a set has d or fewer images for d-d features: the covariance of n
    images has rank at most n − 1, so it would be singular and the FID meaningless."""
    for s in (a, b):
        if s.num <= s.dim:
            smaller = [str(d) for d in BLOCK_DIMS if d < s.dim
                       and network_of(s.provenance) == "inception"]
            hint = f", or smaller features: dims {' or '.join(smaller)}" if smaller else ""
            raise ScoreError(f"{s.source}: {s.num} images for {s.dim}-d features; FID needs "
                             f"more than {s.dim} (more images{hint})")
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def kid(a: Statistics, b: Statistics, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> kid_lib.KID:
    """KID (mean and std over subsets, `gancmp.metrics.kid`) of the two sets' features."""
    return kid_lib.kernel_inception_distance(need_features(a, "KID"), need_features(b, "KID"),
                                             num_subsets, subset_size, seed)


def precision_recall(real: Statistics, fake: Statistics, k: int = 3) -> pr_lib.PrecisionRecall:
    """Improved precision (of `fake` against `real`) and recall, k-NN radii (k = 3)."""
    for s in (real, fake):
        if s.num <= k:
            raise ScoreError(f"{s.source}: {s.num} images; precision/recall with k={k} needs "
                             f"more than {k}")
    return pr_lib.precision_recall(need_features(real, "precision/recall"),
                                   need_features(fake, "precision/recall"), k=k)


def _more_than(stats: Statistics, k: int, what: str) -> None:
    if stats.num <= k:
        raise ScoreError(f"{stats.source}: {stats.num} images; {what} needs more than {k}")


def prdc(real: Statistics, fake: Statistics, k: int = 5):
    """prdc's precision and recall, density and coverage of `fake` against `real`, k-NN radii
    (k = 5; `gancmp.metrics.prdc`)."""
    from gancmp.metrics import prdc as prdc_lib  # noqa: PLC0415

    for s in (real, fake):
        _more_than(s, k, f"density/coverage with k={k}")
    return prdc_lib.prdc(need_features(real, "density/coverage"),
                         need_features(fake, "density/coverage"), k=k)


def prd(real: Statistics, fake: Statistics, num_clusters: int = 20, num_runs: int = 10,
        seed: int = 0):
    """PRD of `fake` against `real` (`gancmp.metrics.prd`, compare_gan v3's settings): equal
    counts needed, as compare_gan (use --num to take as many of each)."""
    from gancmp.metrics import prd as prd_lib  # noqa: PLC0415

    if real.num != fake.num:
        raise ScoreError(f"PRD needs as many images in each set (compare_gan's balance), got "
                         f"{real.num} in {real.source} and {fake.num} in {fake.source}; "
                         "take the same number of each with --num")
    _more_than(real, num_clusters - 1, f"PRD with {num_clusters} clusters")
    return prd_lib.prd(need_features(real, "PRD"), need_features(fake, "PRD"),
                       num_clusters=num_clusters, num_runs=num_runs, seed=seed)


def cmmd(a: Statistics, b: Statistics) -> float:
    """CMMD of the two sets' features (`gancmp.metrics.cmmd`: σ 10, scale 1000, unit-norm)."""
    from gancmp.metrics import cmmd as cmmd_lib  # noqa: PLC0415

    return cmmd_lib.cmmd(need_features(a, "CMMD"), need_features(b, "CMMD"))


def fd_infinity(real: Statistics, fake: Statistics, min_n: int = 5000, num_points: int = 15,
                seed: int = 0):
    """FD∞ of `fake`'s features against `real`'s μ, Σ (`gancmp.metrics.fd_infinity`)."""
    from gancmp.metrics import fd_infinity as fdi  # noqa: PLC0415

    if real.num <= real.dim:
        raise ScoreError(f"{real.source}: {real.num} images for {real.dim}-d features; FD∞'s "
                         f"real statistics need more than {real.dim}")
    if not real.dim < min_n < fake.num:
        raise ScoreError(f"FD∞ measures FD on {num_points} sample counts from --fdinf_min_n "
                         f"({min_n}) to all {fake.num} images of {fake.source}; min_n must be "
                         f"above the feature dimension {real.dim} and below {fake.num}")
    return fdi.fd_infinity(real.mu, real.sigma, need_features(fake, "FD∞"), min_n=min_n,
                           num_points=num_points, seed=seed)


def classifier_weights(weights_path: str | None = None) -> np.ndarray:
    """The 1008-way classifier `fc.weight` [1008, 2048] of the FID Inception, which the Inception
    Score needs. Read from pytorch-fid's `.pth` or from a converted `.npz` that keeps it (format
    version 2, `gancmp convert-inception`; version 1 dropped it) at `weights_path`, default the
    cached download (the `.pth`, else its converted `.npz`)."""
    cached = [os.path.join(storage.cache_root(), n) for n in (FID_WEIGHTS_NAME, CONVERTED_NAME)]
    path = weights_path or next((p for p in cached if storage.isfile(p)), cached[0])
    if not storage.isfile(path):
        raise ScoreError(f"the Inception Score needs the classifier layer (fc.weight) of "
                         f"pytorch-fid's {FID_WEIGHTS_NAME}, not found at {path}; pass that "
                         "file (or its conversion by `gancmp convert-inception`) as "
                         "inception_weights")
    if is_converted(path):
        with storage.open_file(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            if "params/fc/kernel" in data.files:
                return np.asarray(data["params/fc/kernel"], np.float32).T
        raise ScoreError(f"{path}: no classifier layer; the Inception Score needs fc.weight "
                         f"[1008, 2048], which pytorch-fid's {FID_WEIGHTS_NAME} carries and a "
                         "converted .npz drops when it was converted before gancmp kept it: "
                         "convert the .pth again with `gancmp convert-inception`, or pass it")
    try:
        weight, _ = IS.fc_from_pth(path)
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError, ValueError):
        raise ScoreError(f"{path}: no classifier layer; the Inception Score needs fc.weight "
                         f"[1008, 2048], which pytorch-fid's {FID_WEIGHTS_NAME} carries and a "
                         "converted .npz drops: pass the .pth as inception_weights") from None
    return np.asarray(weight, np.float32)


def inception_score(stats: Statistics, fc_weight: np.ndarray,
                    num_splits: int = 10) -> IS.InceptionScore:
    """Inception Score of a set from its pool3 features [n, 2048] and the classifier `fc_weight`
    [classes, 2048] (softmax of features · fc_weightᵀ without the bias, as the original script;
    `gancmp.metrics.inception_score`), over `num_splits` splits."""
    features = need_features(stats, "the Inception Score")
    if stats.dim != fc_weight.shape[1]:
        raise ScoreError(f"{stats.source}: {stats.dim}-d features; the Inception Score needs "
                         f"the {fc_weight.shape[1]}-d pool3 features (dims 2048)")
    if stats.num < num_splits:
        raise ScoreError(f"{stats.source}: {stats.num} images for {num_splits} splits; use "
                         "fewer splits or more images")
    return IS.inception_score_from_logits(IS.logits_from_pool3(features, fc_weight), num_splits)

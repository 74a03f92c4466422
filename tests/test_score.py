"""Scoring anyone's images: the readers (folders, .npz), statistics files and their provenance
checks, the sources and metrics of `gancmp.metrics.score`, parity with pytorch-fid's
`calculate_fid_given_paths`, batch independence, and the command line. (clean-fid's
preprocessing: tests/test_clean_preprocess.py.)

The pytorch-fid reference is tests/fixtures/score/expected.json, written by make_fixture.py
beside it (with torch) from two folders of PNGs that the test regenerates bit for bit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import jax
import numpy as np
import pytest
from PIL import Image

from gancmp.data import images as image_io
from gancmp.data import synthetic, tfds
from gancmp.metrics import inception as mi
from gancmp.metrics import kid as kid_lib
from gancmp.metrics import score
from gancmp.metrics import stats_file as sf
from gancmp.metrics.features import FeatureExtractor
from gancmp.nets import inception as net
from tests.helpers import CPU_COMPILE_FLAGS, ROOT, gancmp_command

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "score")


def _fixture_module():
    spec = importlib.util.spec_from_file_location(
        "make_score_fixture", os.path.join(FIXTURES, "make_fixture.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # numpy only at import time; torch is imported in main()
    return module


class StatsExtractor:
    """Stand-in for FeatureExtractor: per-channel mean and std of each image (6-d features)."""

    batch_size = 4

    def __init__(self, preprocess="tf1_legacy", weights="0" * 64):
        self.provenance = {"weights_sha256": weights, "weights_source": "test",
                           "preprocess": preprocess, "network": "channel moments",
                           "feature_dim": 6}
        self.calls = []

    def __call__(self, images):
        x = np.asarray(images)
        assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
        self.calls.append(len(x))
        x = np.broadcast_to(x, (*x.shape[:3], 3))
        return np.concatenate([x.mean((1, 2)), x.std((1, 2))], axis=1)


def _png(path, pixels, **kw):
    Image.fromarray(np.asarray(pixels, np.uint8)).save(path, **kw)


def _random_u8(n, shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Readers: folders and .npz files
# ---------------------------------------------------------------------------------------------


def test_folder_reads_grey_and_rgb_in_name_order(tmp_path):
    rgb, grey = _random_u8(3, (5, 7, 3)), _random_u8(2, (5, 7), seed=1)
    for i, im in enumerate(rgb):
        _png(tmp_path / f"b{i}.png", im)
    for i, im in enumerate(grey):
        _png(tmp_path / f"a{i}.PNG", im)  # upper-case extension, grey ("L") PNGs
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    _png(tmp_path / "sub" / "skipped.png", rgb[0])  # subfolders are not read
    images = image_io.open_folder(str(tmp_path))
    assert (images.num, images.shape, images.kind) == (5, (5, 7, 3), "folder")
    (batch,) = list(images.batches(10))
    expected = np.concatenate([np.repeat(grey[..., None], 3, -1), rgb]).astype(np.float32) / 255
    np.testing.assert_array_equal(batch, expected)  # a0, a1 (grey → 3 channels), b0, b1, b2
    assert [len(b) for b in images.batches(2)] == [2, 2, 1]
    first = image_io.open_folder(str(tmp_path), num=2)
    assert first.num == 2 and np.array_equal(next(first.batches(5)), expected[:2])


def test_folder_reads_jpeg_of_any_size(tmp_path):
    _png(tmp_path / "x.jpg", _random_u8(1, (40, 30, 3))[0], quality=95)
    images = image_io.open_folder(str(tmp_path))
    assert images.shape == (40, 30, 3) and next(images.batches(1)).shape == (1, 40, 30, 3)


def test_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty" / "classes").mkdir(parents=True)
    with pytest.raises(image_io.ImageSourceError, match="no image files.*'classes' are not read"):
        image_io.open_folder(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    bad.mkdir()
    _png(bad / "0.png", _random_u8(1, (4, 4, 3))[0])
    (bad / "1.png").write_bytes(b"garbage, not a png")
    with pytest.raises(image_io.ImageSourceError, match=r"1\.png: not a readable image"):
        image_io.open_folder(str(bad))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _png(mixed / "0.png", _random_u8(1, (4, 4, 3))[0])
    _png(mixed / "1.png", _random_u8(1, (4, 6, 3))[0])
    with pytest.raises(image_io.ImageSourceError, match="mixed image sizes: 0.png is 4x4 but "
                                                        "1.png is 4x6"):
        image_io.open_folder(str(mixed))
    with pytest.raises(image_io.ImageSourceError, match="3 images asked for, but it has only 2"):
        image_io.open_folder(str(bad), num=3)


def test_npz_images_and_their_errors(tmp_path):
    u8 = _random_u8(4, (6, 5, 1))
    np.savez(tmp_path / "u8.npz", images=u8)
    np.savez(tmp_path / "f.npz", images=u8.astype(np.float64) / 255)
    a, b = image_io.open_npz(str(tmp_path / "u8.npz")), image_io.open_npz(str(tmp_path / "f.npz"))
    assert a.shape == b.shape == (6, 5, 1) and a.num == 4
    np.testing.assert_allclose(next(a.batches(4)), next(b.batches(4)), rtol=0, atol=1e-7)
    cases = {"nokey": (dict(pixels=u8), "no 'images' array.*holds: pixels"),
             "nchw": (dict(images=u8.transpose(0, 3, 1, 2)), "channels first"),
             "range": (dict(images=np.full((2, 3, 3, 3), 1.5)),
                       r"must be in \[0, 1\], got values in \[1.5, 1.5\]"),
             "int": (dict(images=u8.astype(np.int64)), "got dtype int64"),
             "empty": (dict(images=u8[:0]), "no images")}
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(image_io.ImageSourceError, match=message):
            image_io.open_npz(str(tmp_path / f"{name}.npz"))
    np.save(tmp_path / "single.npy", u8)
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    with pytest.raises(image_io.ImageSourceError, match="not an .npz archive"):
        image_io.open_npz(str(tmp_path / "single.npz"))


# ---------------------------------------------------------------------------------------------
# Sources, statistics files, provenance
# ---------------------------------------------------------------------------------------------


def test_sources_resolve_to_the_same_statistics(tmp_path):
    """A folder of PNGs, an .npz of the same uint8 pixels and one of float pixels give identical
    statistics; statistics files come back as written, with their provenance."""
    pixels = _random_u8(9, (8, 8, 3), seed=3)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, im in enumerate(pixels):
        _png(folder / f"{i}.png", im)
    np.savez(tmp_path / "u8.npz", images=pixels)
    np.savez(tmp_path / "f32.npz", images=pixels.astype(np.float32) / 255)
    extractor, sizes = StatsExtractor(), []
    stats = [score.compute_statistics(score.resolve(str(p)), extractor, progress=sizes.append)
             for p in (folder, tmp_path / "u8.npz", tmp_path / "f32.npz")]
    assert extractor.calls == [4, 4, 1] * 3 and sizes == [4, 4, 1] * 3
    feats = extractor(pixels.astype(np.float32) / 255)
    for s in stats:
        np.testing.assert_array_equal(s.features, feats)
        np.testing.assert_allclose(s.mu, feats.mean(0), rtol=1e-6)
        np.testing.assert_allclose(s.sigma, np.cov(feats.astype(np.float64), rowvar=False),
                                   rtol=1e-5, atol=1e-12)
    assert score.describe(score.resolve(str(folder))) == {
        "source": str(folder), "kind": "folder", "num": 9, "shape": [8, 8, 3]}

    sf.save_statistics(str(tmp_path / "stats.npz"), stats[0])
    back = score.resolve(str(tmp_path / "stats.npz"))
    assert isinstance(back, sf.Statistics) and back.num == 9 and back.source.endswith("stats.npz")
    np.testing.assert_array_equal(back.sigma, stats[0].sigma)
    np.testing.assert_array_equal(back.features, stats[0].features)
    assert back.provenance["source"] == str(folder) and back.provenance["preprocess"] == \
        "tf1_legacy" and back.provenance["format"] == sf.STATS_FORMAT
    with np.load(tmp_path / "stats.npz") as data:  # what pytorch-fid reads
        assert data["mu"].shape == (6,) and data["sigma"].shape == (6, 6)
    assert (os.stat(tmp_path / "stats.npz").st_mode & 0o044) == 0o044  # readable by others


def test_statistics_made_differently_are_refused(tmp_path):
    pixels = _random_u8(8, (4, 4, 3))
    images = image_io.from_array(pixels, "x")
    base = score.compute_statistics(images, StatsExtractor())
    other_prep = score.compute_statistics(images, StatsExtractor(preprocess="clean"))
    other_weights = score.compute_statistics(images, StatsExtractor(weights="f" * 64))
    sf.check_setup(base, StatsExtractor().provenance)  # same setup: fine
    with pytest.raises(sf.ScoreError, match="made with preprocess 'clean', but this run uses "
                                            "'tf1_legacy'"):
        sf.check_setup(other_prep, StatsExtractor().provenance)
    with pytest.raises(sf.ScoreError, match=r"feature size \(dims\) 6, but this run uses 2048"):
        sf.check_setup(base, {"preprocess": "tf1_legacy", "feature_dim": 2048})
    with pytest.raises(sf.ScoreError, match="other Inception weights"):
        sf.check_consistent([base, other_weights])
    np.savez(tmp_path / "foreign.npz", mu=base.mu, sigma=base.sigma)  # pytorch-fid's format
    with pytest.raises(sf.ScoreError, match="without gancmp provenance"):
        score.resolve(str(tmp_path / "foreign.npz"))
    mu_only = sf.Statistics(base.mu, base.sigma, None, 8, base.provenance, "mu_only.npz")
    with pytest.raises(sf.ScoreError, match="mu_only.npz: these statistics hold no features.*"
                                            "KID needs the features"):
        score.kid(mu_only, base)
    with pytest.raises(sf.ScoreError, match="precision/recall needs"):
        score.precision_recall(base, mu_only)
    assert score.fid(base, base) == pytest.approx(0, abs=1e-9)  # 8 images ≥ 6 dims
    few = score.compute_statistics(image_io.from_array(pixels[:5], "five"), StatsExtractor())
    with pytest.raises(sf.ScoreError, match="five: 5 images for 6-d features; FID needs "
                                            "more than 6"):
        score.fid(few, base)
    with pytest.raises(sf.ScoreError, match="statistics need at least 2"):
        score.compute_statistics(image_io.from_array(pixels[:1], "one"), StatsExtractor())


def test_source_strings_and_datasets(tmp_path, monkeypatch):
    with pytest.raises(sf.ScoreError, match="cifar10: say which split, e.g. cifar10:test"):
        score.resolve("cifar10")
    with pytest.raises(sf.ScoreError, match="unknown dataset 'nope'; image datasets: mnist"):
        score.resolve("nope:test")
    with pytest.raises(sf.ScoreError, match="ring8 is a set of 2-D points, not images"):
        score.resolve("ring8:test")
    with pytest.raises(sf.ScoreError, match="no such file or folder"):
        score.resolve(str(tmp_path / "missing"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(sf.ScoreError, match="a file, but not an .npz"):
        score.resolve(str(tmp_path / "x.txt"))
    # TFDS datasets: read through the (injected) random-access reader, first `num` only
    test = _random_u8(5, (32, 32, 3))
    opened = []

    def opener(name, split, data_dir):
        opened.append((name, split, data_dir))
        return [{"image": im} for im in test]

    got = score.resolve("cifar10:test", num=3, data_dir="/d", opener=opener)
    assert opened == [("cifar10", "test", "/d")] and (got.num, got.kind) == (3, "dataset")
    np.testing.assert_array_equal(next(got.batches(3)), test[:3].astype(np.float32) / 255)
    with pytest.raises(image_io.ImageSourceError, match="9 images asked for, but it has only 5"):
        score.resolve("cifar10:test", num=9, opener=opener)

    def unprepared(name, split, data_dir):
        raise tfds.DatasetUnavailableError(f"dataset {name!r} is not prepared")

    with pytest.raises(tfds.DatasetUnavailableError, match="not prepared.*--data_dir DIR"):
        score.resolve("mnist:train", opener=unprepared)
    # polygons: the fixed set of data seed 0 (stubbed here: generating it takes a while)
    calls = []

    def polygon_dataset(name, seed=0, cache_dir=None, sizes=None):
        calls.append((name, seed, cache_dir))
        return {"train": test[:2, :28, :28, :1], "test": test[:4, :28, :28, :1],
                "heldout": test[:1, :28, :28, :1]}

    monkeypatch.setattr(synthetic, "polygon_dataset", polygon_dataset)
    tri = score.resolve("triangles:test", data_dir="/cache")
    assert calls == [("triangles", 0, "/cache")] and tri.num == 4 and tri.shape == (28, 28, 1)
    with pytest.raises(sf.ScoreError, match="unknown split 'val'; allowed: train, test, heldout"):
        score.resolve("triangles:val")


def test_kid_pr_is_on_statistics():
    rng = np.random.default_rng(0)
    prov = {"preprocess": "clean", "feature_dim": 2, "weights_sha256": "0"}

    def stats(features, name):
        f = np.asarray(features, np.float32)
        return sf.Statistics(f.mean(0), np.cov(f.astype(np.float64), rowvar=False), f, len(f),
                             prov, name)

    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    real = stats(centres[rng.integers(2, size=400)] + 0.1 * rng.standard_normal((400, 2)), "r")
    fake = stats(centres[:1] + 0.1 * rng.standard_normal((400, 2)), "f")  # one of two modes
    pr = score.precision_recall(real, fake)
    assert pr.precision > 0.97 and 0.4 < pr.recall < 0.6
    k = score.kid(real, fake, num_subsets=5, subset_size=50, seed=3)
    assert k == kid_lib.kernel_inception_distance(real.features, fake.features, 5, 50, 3)
    assert k.mean > 0.1
    with pytest.raises(sf.ScoreError, match="r: 3 images; precision/recall with k=3"):
        score.precision_recall(stats(real.features[:3], "r"), fake)
    # Inception Score from pool3 features: with a classifier that picks feature i for class i,
    # 100 features cycling through 10 one-hot classes score 10 (each split sees every class)
    features = np.zeros((100, 2048), np.float32)
    features[np.arange(100), np.arange(100) % 10] = 50.0
    fc = np.eye(1008, 2048, dtype=np.float32)
    onehot = sf.Statistics(features.mean(0), np.eye(2048), features, 100, prov, "onehot")
    assert score.inception_score(onehot, fc).mean == pytest.approx(10.0, rel=1e-6)
    with pytest.raises(sf.ScoreError, match="needs the 2048-d pool3 features"):
        score.inception_score(real, fc)
    with pytest.raises(sf.ScoreError, match="onehot: 100 images for 200 splits"):
        score.inception_score(onehot, fc, num_splits=200)


def test_classifier_weights_need_the_pth(tmp_path):
    with pytest.raises(sf.ScoreError, match="not found at"):
        score.classifier_weights(str(tmp_path / "missing.pth"))
    converted = tmp_path / "converted.npz"
    mi.save_variables({"params": {"a": np.zeros(2)}}, str(converted), {"source_sha256": "x"})
    with pytest.raises(sf.ScoreError, match="no classifier layer.*converted .npz drops"):
        score.classifier_weights(str(converted))


# ---------------------------------------------------------------------------------------------
# The network: parity with pytorch-fid on folders, batch independence
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    make = _fixture_module()
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        expected = json.load(f)
    assert make.images_sha256() == expected["images_sha256"], \
        "the fixture images no longer regenerate bit-identically"
    root = tmp_path_factory.mktemp("parity")
    folders = make.write_folders(str(root))
    variables = mi.convert_state_dict(mi.random_state_dict(make.SEED))
    # FeatureExtractor.random(SEED, ...) but keeping the variables for other extractors
    extractor = FeatureExtractor(variables, preprocess="pytorch_fid", batch_size=24,
                                 dims=expected["dims"], weights_source=f"seed {make.SEED}")
    stats = {k: score.compute_statistics(score.resolve(folders[k]), extractor) for k in "ab"}
    return {"expected": expected, "folders": folders, "stats": stats, "root": root,
            "variables": variables}


def test_fid_of_folders_equals_pytorch_fid(parity):
    a, b = parity["stats"]["a"], parity["stats"]["b"]
    assert a.num == b.num == parity["expected"]["num"] == 72 and a.dim == b.dim == 64
    assert a.provenance["feature_dim"] == 64 and "block 0" in a.provenance["network"]
    value = score.fid(a, b)
    assert value == pytest.approx(parity["expected"]["fid"], rel=1e-3)
    assert value > 0.1  # the two folders differ: not a trivially small number


def test_features_do_not_depend_on_the_batch(parity):
    """An image's features are the same alone (batch 1), in batches of 7 (the last one padded)
    and all at once (one device, so that batches are not rounded up to the device count; the
    parity test runs sharded over 4): through the new entry points (a folder source,
    `compute_statistics`), with the new clean preprocessing."""
    images = image_io.open_folder(parity["folders"]["a"], num=9)
    feats = []
    for batch_size in (1, 7, 9):
        extractor = FeatureExtractor(parity["variables"], preprocess="clean",
                                     batch_size=batch_size, dims=64,
                                     devices=jax.local_devices()[:1])
        assert extractor.batch_size == batch_size
        feats.append(score.compute_statistics(images, extractor).features)
    for other in feats[1:]:
        np.testing.assert_allclose(other, feats[0], rtol=0, atol=1e-5 * np.abs(feats[0]).max())
    assert np.abs(feats[0][0] - feats[0][1]).max() > 1e-3 * np.abs(feats[0]).max()


def test_output_blocks_and_dims():
    """pytorch-fid's blocks: the spatial means after the first and second max pool, after
    Mixed_6e, and pool3 (the default network, unchanged)."""
    x = jax.ShapeDtypeStruct((2, 299, 299, 3), np.float32)
    for block, dim in enumerate(net.BLOCK_DIMS):
        out = jax.eval_shape(net.FIDInceptionV3(output_block=block).apply, net.variable_shapes(),
                             x)
        assert out.shape == (2, dim)
    assert net.BLOCK_DIMS[-1] == net.FEATURE_DIM
    with pytest.raises(ValueError, match="dims must be one of 64, 192, 768, 2048"):
        FeatureExtractor({}, dims=100)


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def _gancmp(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": CPU_COMPILE_FLAGS}
    return subprocess.run(gancmp_command(*args), cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_fid_of_statistics_files_and_a_refusal(parity):
    root = parity["root"]
    for k in "ab":
        sf.save_statistics(str(root / f"{k}.npz"), parity["stats"][k])
    out = _gancmp("fid", str(root / "a.npz"), str(root / "b.npz"), "--preprocess",
                  "pytorch_fid", "--dims", "64", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["fid"] == pytest.approx(parity["expected"]["fid"], rel=1e-3)
    assert result["fid"] == score.fid(parity["stats"]["a"], parity["stats"]["b"])
    assert result["setup"]["preprocess"] == "pytorch_fid" and result["setup"]["feature_dim"] == 64
    assert [s["kind"] for s in result["sources"]] == ["statistics", "statistics"]
    # the default preprocessing (tf1_legacy) is not what the files were made with
    out = _gancmp("kid", str(root / "a.npz"), str(root / "b.npz"), "--dims", "64")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "made with preprocess 'pytorch_fid', but this run uses 'tf1_legacy'" in out.stderr

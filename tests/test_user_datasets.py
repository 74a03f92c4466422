"""Training on anyone's own images: `--config.dataset=folder:PATH[@HxW]` / `npz:PATH[@HxW]`
(gancmp.data.user through gancmp.data.source), validated by make_setup, trained by the loop and
scored by the evaluator against the held-out 10 %."""

from __future__ import annotations

import hashlib
import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from gancmp.config import ConfigError
from gancmp.data import images as image_io
from gancmp.data import source, user
from gancmp.data.images import ImageSourceError
from gancmp.trial import make_trial
from tests.helpers import load_config


def _write_pngs(folder, n, shape, seed=0):
    """n random uint8 PNGs of `shape` ([H, W] grey or [H, W, 3]) named 000.png, 001.png, …"""
    os.makedirs(folder, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(os.path.join(folder, f"{i:03d}.png"))
    return pixels


# ---------------------------------------------------------------------------- names, split


def test_names_parse_and_bad_names_say_why(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "0.png").write_bytes(b"not a png")
    ds = user.parse("folder:/data/faces@64x48")
    assert (ds.kind, ds.path, ds.size) == ("folder", "/data/faces", (64, 48))
    assert user.parse("npz:~/x.npz").path == os.path.expanduser("~/x.npz")
    assert user.parse("npz:a@b.npz").size is None  # an @ that is no size stays in the path
    assert source.is_user_dataset("folder:x") and not source.is_user_dataset("mnist")
    assert not source.is_user_dataset("cifar10:test")
    for name, message in [
        ("folder:", "folder:: no path; write folder:PATH"),
        ("folder:@8x8", "no path"),
        ("folder:x@0x8", "folder:x@0x8: size 0x8 must be positive"),
        (f"folder:{tmp_path}/nope", f"folder:{tmp_path}/nope: no such folder"),
        (f"npz:{tmp_path}/a.npz@16", "no such file .*a.npz@16 \\(a size is written @HxW"),
        (f"npz:{tmp_path}", f"npz:{tmp_path}: not a file"),
        (f"folder:{tmp_path}", f"folder:{tmp_path}: no image files"),
        (f"folder:{tmp_path / 'junk'}", f"folder:{tmp_path / 'junk'}: .*0.png: not a readable "
                                        "image"),
    ]:
        with pytest.raises(ImageSourceError, match=message) as info:
            source.example_shape(name)
        assert "\n" not in str(info.value)


def test_heldout_split_is_a_fixed_tenth():
    for n in (9, 10, 40, 1234):
        mask = user.heldout_mask(n)
        assert mask.shape == (n,) and mask.sum() == n // 10
        np.testing.assert_array_equal(mask, user.heldout_mask(n))  # a function of n only
    # the rule, written out: the n // 10 positions of smallest sha256("gancmp-heldout:<i>")
    rank = sorted(range(40), key=lambda i: hashlib.sha256(f"gancmp-heldout:{i}".encode()).digest())
    assert sorted(rank[:4]) == list(np.flatnonzero(user.heldout_mask(40)))
    assert not np.array_equal(np.flatnonzero(user.heldout_mask(40)), [36, 37, 38, 39])


def test_folder_splits_channels_and_identity(tmp_path):
    pixels = _write_pngs(tmp_path / "grey", 20, (8, 12))
    name = f"folder:{tmp_path / 'grey'}"
    assert source.example_shape(name) == (8, 12, 1) and source.train_size(name) == 18
    data = source.load(name, data_dir=str(tmp_path))
    mask = user.heldout_mask(20)
    assert data.example_shape == (8, 12, 1) and data.arrays["train"].dtype == np.uint8
    np.testing.assert_array_equal(data.arrays["train"][..., 0], pixels[~mask])
    np.testing.assert_array_equal(data.test[..., 0], pixels[mask])
    info = source.provenance(name)
    assert (info["num_images"], info["num_train"], info["num_test"]) == (20, 18, 2)
    assert info["source"] == str(tmp_path / "grey")
    assert info["key"] == f"folder-{info['content_sha256'][:16]}-8x12x1-v1"
    # the decoded images were cached under the content key, and are read back from there
    cached = tmp_path / "gancmp_cache" / f"user-{info['key']}.npy"
    np.testing.assert_array_equal(np.load(cached)[..., 0], pixels)
    # the same files elsewhere: the same hash; one changed byte or name: another
    shutil.copytree(tmp_path / "grey", tmp_path / "copy")
    assert source.provenance(f"folder:{tmp_path / 'copy'}")["content_sha256"] == \
        info["content_sha256"]
    os.rename(tmp_path / "copy" / "019.png", tmp_path / "copy" / "020.png")
    assert source.provenance(f"folder:{tmp_path / 'copy'}")["content_sha256"] != \
        info["content_sha256"]
    # one colour image among grey ones makes the whole set RGB (grey repeated over 3 channels)
    Image.fromarray(np.full((8, 12, 3), 7, np.uint8)).save(tmp_path / "copy" / "999.png")
    mixed = source.load(f"folder:{tmp_path / 'copy'}", data_dir=str(tmp_path))
    assert mixed.example_shape == (8, 12, 3) == source.example_shape(f"folder:{tmp_path}/copy")
    both = np.concatenate([mixed.arrays["train"], mixed.test])
    assert (both[..., 0] == both[..., 2]).all() and (both == 7).all(-1).any()


def test_resize_is_antialiased_bicubic_and_mixed_sizes_need_it(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    check = (np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    Image.fromarray(check).save(folder / "a.png")
    Image.fromarray(np.full((4, 6), 200, np.uint8)).save(folder / "b.png")
    with pytest.raises(ImageSourceError, match="mixed image sizes: a.png is 16x16 but b.png is "
                                               "4x6; add @HxW"):
        source.load(f"folder:{folder}", data_dir=str(tmp_path))
    data = source.load(f"folder:{folder}@4x4", data_dir=str(tmp_path))
    images = data.arrays["train"]  # 2 images, no test split below 10 images
    assert images.shape == (2, 4, 4, 1) and data.test.shape == (0, 4, 4, 1)
    # shrinking a checkerboard 4x averages it (a point sample would give 0 or 255)
    assert np.abs(images[0].astype(int) - 128).max() <= 1
    assert (images[1] == 200).all()  # a constant image stays constant
    np.testing.assert_array_equal(images[0], image_io.resize_image(check[..., None], (4, 4)))


def test_npz_float_images_are_rounded_to_uint8(tmp_path):
    x = np.zeros((10, 4, 4, 3), np.float32)
    x[:, 0, 0] = [0.5, 1.0, 0.1]
    np.savez(tmp_path / "x.npz", images=x, labels=np.arange(10))
    data = source.load(f"npz:{tmp_path / 'x.npz'}", data_dir=str(tmp_path))
    assert data.example_shape == (4, 4, 3) and data.test.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(data.arrays["train"][:, 0, 0], [[128, 255, 26]] * 9)
    np.savez(tmp_path / "chw.npz", images=np.zeros((10, 3, 4, 4), np.uint8))
    with pytest.raises(ImageSourceError, match="chw.npz: images must be .*channels first"):
        source.example_shape(f"npz:{tmp_path / 'chw.npz'}")
    np.savez(tmp_path / "none.npz", x=np.zeros(3))
    with pytest.raises(ImageSourceError, match="no 'images' array in this .npz \\(it holds: x\\)"):
        source.example_shape(f"npz:{tmp_path / 'none.npz'}")


def test_make_setup_checks_the_dataset(tmp_path):
    _write_pngs(tmp_path / "rgb", 12, (16, 16, 3))
    config = load_config("mnist_infogan", width_multiplier=0.125, batch_size=8)
    config.dataset = f"folder:{tmp_path / 'rgb'}@32x32"
    setup = make_trial(config).setup
    assert setup.example_shape == (32, 32, 3) and setup.data_kind == "array"
    for dataset, message in [
        (f"folder:{tmp_path}/missing", "config.dataset: folder:.*/missing: no such folder"),
        ("imagenet", "config.dataset: unknown 'imagenet'; allowed: .*or your own images: "
                     "folder:PATH"),
    ]:
        config.dataset = dataset
        with pytest.raises(ConfigError, match=message):
            make_trial(config)
    config.dataset, config.batch_size = f"folder:{tmp_path / 'rgb'}", 16
    with pytest.raises(ConfigError, match="config.batch_size: 16 is more than the 11 training "
                                          "images"):
        make_trial(config)


def test_cli_names_a_bad_dataset_in_one_line(tmp_path):
    from tests.test_cli import run

    name = f"folder:{tmp_path}/nope@64x64"
    out = run("train", "--config", "configs/mnist_infogan.py", f"--config.dataset={name}",
              "--workdir", str(tmp_path / "trial"), timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"gancmp train: error: config.dataset: {name}: no such folder {tmp_path}/nope"]


# ---------------------------------------------------------------------------- train and score


class _Pool16:
    """A 16-d stand-in for the Inception (4×4 mean pooling of the grey level), so that FID
    statistics of 16 held-out images are not singular; it records the shapes it is fed. The
    real network needs ≥ 2048 real images and samples at 299×299, minutes on a CPU."""

    shapes: list = []

    @classmethod
    def from_file(cls, path=None, preprocess="tf1_legacy", batch_size=50, cache_dir=None, **kw):
        return cls()

    dims = 16
    batch_size = 50
    provenance = {"weights_sha256": "0" * 64, "weights_source": "test", "network": "4x4 pool",
                  "preprocess": "tf1_legacy", "feature_dim": 16}

    def __call__(self, images):
        x = np.asarray(images, np.float32)
        _Pool16.shapes.append(x.shape[1:])
        n, h, w, _ = x.shape
        return x.mean(-1).reshape(n, 4, h // 4, 4, w // 4).mean((2, 4)).reshape(n, 16)


def _train_and_score(tmp_path, monkeypatch, dataset, *, while_training=False):
    """Trains a tiny InfoGAN trial on `dataset` (4 D steps, one checkpoint) and scores it
    afterwards as `gancmp eval` does (`evaluation.evaluate_trial`), or, `while_training`, at its
    checkpoint as `gancmp train --config.eval_every` does. Returns (result.json, its setup)."""
    from gancmp.metrics import fid
    from gancmp.train import evaluation, loop, workdir

    monkeypatch.setattr(fid, "FeatureExtractor", _Pool16)
    _Pool16.shapes = []
    config = load_config("mnist_infogan", dataset=dataset, width_multiplier=0.125, batch_size=8,
                         num_d_steps=4, checkpoint_every=4, data_dir=str(tmp_path / "data"),
                         eval_every=4 if while_training else 0)
    config.eval.num_samples = 32
    config.fid.cache_dir = str(tmp_path / "fid")
    trial = str(tmp_path / "trial")
    record = loop.train_trial(make_trial(config), trial, progress=False)[0]
    assert record.status == "finished" and record.dataset == dataset
    if not while_training:
        evaluation.evaluate_trial(trial, log=lambda line: None)
    result = workdir.read_result(trial)
    assert [e["step"] for e in result.evals] == [4]
    return result, make_trial(config).setup


def test_train_and_score_a_folder(tmp_path, monkeypatch):
    folder = tmp_path / "faces"
    _write_pngs(folder, 160, (28, 28))
    result, setup = _train_and_score(tmp_path, monkeypatch, f"folder:{folder}")
    assert setup.example_shape == (28, 28, 1)
    assert result.metric == "fid" and math.isfinite(result.best["fid"])
    data = result.metric_setup["data"]
    assert data["source"] == str(folder) and data["kind"] == "folder"
    assert (data["num_images"], data["num_train"], data["num_test"]) == (160, 144, 16)
    assert data["content_sha256"] == user.content_sha256(user.parse(f"folder:{folder}"))
    assert result.metric_setup["num_real"] == 16  # all the held-out images
    assert result.metric_setup["dataset"] == data["key"]  # the reference statistics' key
    assert set(_Pool16.shapes) == {(28, 28, 1)}
    # 40 images hold out 4: too few for 16-d statistics, said in one line
    small = tmp_path / "small"
    _write_pngs(small, 40, (28, 28))
    config = load_config("mnist_infogan", dataset=f"folder:{small}", batch_size=8)
    from gancmp.train import evaluation

    with pytest.raises(ConfigError, match="holds out 4 of its 40 images .* at least 16 .* "
                                          "at least 160 images"):
        evaluation.make_evaluator(make_trial(config))


def test_train_and_score_a_resized_npz(tmp_path, monkeypatch):
    x = np.random.default_rng(1).random((170, 20, 24, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", images=x)
    result, setup = _train_and_score(tmp_path, monkeypatch, f"npz:{tmp_path / 'x.npz'}@16x16",
                                     while_training=True)
    assert setup.example_shape == (16, 16, 3)
    assert math.isfinite(result.best["fid"])
    data = result.metric_setup["data"]
    assert data["shape"] == [16, 16, 3] and data["resize"].startswith("16x16 Pillow")
    assert (data["num_test"], result.metric_setup["num_real"]) == (17, 17)
    assert set(_Pool16.shapes) == {(16, 16, 3)}  # real and generated images alike

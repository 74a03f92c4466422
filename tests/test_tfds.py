"""The TFDS datasets: reader, preprocessing, cache, multi-host blocks, unavailable-data errors.

`tfds.testing.mock_data(policy=MockPolicy.USE_CODE)` works with `tfds.data_source` without
TensorFlow (tensorflow-datasets 4.9.10; checked by `test_mock_data_needs_no_tensorflow`), so the
four datasets are tested through it. One limitation of the mock: its `__getitems__` (batched
read) raises TypeError, so the reader falls back to reading one example at a time. The mock
returns decoded arrays, so the real path (array_record files, tf.Example parsing, PNG decoding by
TFDS) is tested on a tiny prepared dataset that the test writes itself, also without TensorFlow
(`_write_array_record`). Decoding, the centre crop and the resize are also tested directly on
synthetic images of known content, and the reader on an injected in-memory source of PNG bytes.
"""

import importlib.util
import io
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds_lib
from array_record.python import array_record_module
from PIL import Image
from tensorflow_datasets.core import naming
from tensorflow_datasets.core import splits as splits_lib

from gancmp.data import preprocess, tfds
from gancmp.data import source as data_source

MOCK = dict(policy=tfds_lib.testing.MockPolicy.USE_CODE)
N = 12  # mock examples per split


def _batches(ds: data_source.DataSource, key: jax.Array, batch_size: int, steps: int):
    arrays = {"train": jnp.asarray(ds.arrays["train"])}
    pos = jnp.arange(batch_size)
    return [np.asarray(ds.batch(arrays, key, jnp.int32(s), batch_size, pos)) for s in range(steps)]


def test_mock_data_needs_no_tensorflow(tmp_path):
    with tfds_lib.testing.mock_data(num_examples=3, **MOCK):
        ds = tfds_lib.data_source("mnist", split="train", data_dir=str(tmp_path), download=False)
        ex = ds[0]
    assert len(ds) == 3 and ex["image"].shape == (28, 28, 1) and ex["image"].dtype == np.uint8
    if importlib.util.find_spec("tensorflow") is None:
        assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("name", list(tfds.SPECS))
def test_mock_datasets_shape_range_determinism(name, tmp_path):
    shape = data_source.example_shape(name)
    with tfds_lib.testing.mock_data(num_examples=N, **MOCK):
        ds = data_source.load(name, str(tmp_path))
        again = data_source.load(name, str(tmp_path))  # from the cache
        cached = tfds.load(name, str(tmp_path))  # the arrays, from the cache
        fresh = tfds.load(name, str(tmp_path), cache=False)
    assert ds.example_shape == shape == tfds.SPECS[name].shape
    assert ds.kind == "array" and ds.is_image
    train, test = ds.arrays["train"], ds.test
    assert train.shape == (N, *shape) and test.shape == (N, *shape)
    assert train.dtype == np.uint8 and test.dtype == np.uint8
    assert train.max() > 0 and train.std() > 0  # not blank
    for other in (again.arrays | {"test": again.test}, cached, fresh):
        assert set(other) == {"train", "test"}
        np.testing.assert_array_equal(other["train"], train)
        np.testing.assert_array_equal(other["test"], test)
    assert list((tmp_path / "gancmp_cache").glob(f"{name}-*-train-0-{N}-of-{N}-p*.npy"))

    key = jax.random.key(3)
    b = _batches(ds, key, 4, 2)
    for x in b:
        assert x.shape == (4, *shape) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
    for x, y in zip(b, _batches(again, key, 4, 2), strict=True):
        np.testing.assert_array_equal(x, y)  # same seed, same batches
    other = _batches(ds, jax.random.key(4), 4, 2)
    assert any(not np.array_equal(x, y) for x, y in zip(b, other, strict=True))
    # a batch is stored examples divided by 255
    flat = train.reshape(N, -1)
    rows = np.rint(b[0].reshape(4, -1) * 255.0)
    assert all(np.any(np.all(flat == row, axis=1)) for row in rows)


def test_two_processes_hold_disjoint_blocks_that_cover_the_split(tmp_path):
    with tfds_lib.testing.mock_data(num_examples=N + 1, **MOCK):
        whole = tfds.load("cifar10", str(tmp_path))["train"]
        parts = [tfds.load("cifar10", str(tmp_path), process_index=p, process_count=2)
                 for p in range(2)]
    assert [len(p["train"]) for p in parts] == [6, 7]
    np.testing.assert_array_equal(np.concatenate([p["train"] for p in parts]), whole)
    np.testing.assert_array_equal(parts[0]["test"], parts[1]["test"])  # test split stays whole

    class Recording:
        """A random-access source that records which examples are read."""

        def __init__(self, n):
            self.n, self.read = n, []

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            self.read.append(i)
            return {"image": np.full((28, 28, 1), i % 256, np.uint8)}

    reads = []
    for p in range(2):
        src = Recording(101)
        tfds.load("mnist", opener=lambda name, split, d, s=src: s if split == "train" else
                  Recording(3), process_index=p, process_count=2, cache=False)
        reads.append(set(src.read))
    assert not reads[0] & reads[1] and reads[0] | reads[1] == set(range(101))


@pytest.mark.parametrize("n,procs", [(10, 1), (10, 2), (10, 3), (7, 4), (100, 8), (3, 5)])
def test_host_of_inverts_process_block(n, procs):
    owner = np.full(n, -1)
    for p in range(procs):
        start, stop = tfds.process_block(p, n, procs)
        assert stop - start in (n // procs, n // procs + 1)
        assert (owner[start:stop] == -1).all()
        owner[start:stop] = p
    assert (owner >= 0).all()  # disjoint and covering
    np.testing.assert_array_equal(tfds.host_of(np.arange(n), n, procs), owner)
    assert [tfds.host_of(i, n, procs) for i in range(n)] == owner.tolist()


def test_cache_makes_the_second_load_read_nothing(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    reads = []

    class Source:
        dataset_info = None

        def __len__(self):
            return 5

        def __getitem__(self, i):
            reads.append(i)
            return {"image": images[i]}

    def opener(name, split, data_dir):
        return Source()

    first = tfds.load("cifar10", opener=opener, cache_dir=str(tmp_path))
    assert len(reads) == 10
    second = tfds.load("cifar10", opener=opener, cache_dir=str(tmp_path))
    assert len(reads) == 10
    np.testing.assert_array_equal(first["train"], images)
    np.testing.assert_array_equal(second["train"], images)
    # a block is served from the cached whole split
    block = tfds.load("cifar10", opener=opener, cache_dir=str(tmp_path), process_index=1,
                      process_count=2)
    assert len(reads) == 10
    np.testing.assert_array_equal(block["train"], images[2:])


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(buf, "PNG")
    return buf.getvalue()


def test_reader_decodes_encoded_images_from_an_injected_source():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
    records = [{"image": _png(x), "label": 0} for x in images]
    ds = tfds.load("fashion_mnist", opener=lambda *a: records, cache=False)
    np.testing.assert_array_equal(ds["train"], images)
    np.testing.assert_array_equal(tfds.read_examples(records, tfds.SPECS["mnist"], 2, 5, chunk=2),
                                  images[2:5])


def test_decode_image():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess.decode_image(_png(rgb), 3), rgb)
    gray = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess.decode_image(gray, 1), gray[:, :, None])
    np.testing.assert_array_equal(preprocess.decode_image(_png(gray[:, :, None]), 1),
                                  gray[:, :, None])
    with pytest.raises(ValueError, match="expected an image"):
        preprocess.decode_image(rgb, 1)
    with pytest.raises(ValueError, match="uint8"):
        preprocess.decode_image(rgb.astype(np.float32), 3)


def test_center_crop_picks_the_centre():
    h, w = 218, 178
    rows, cols = np.mgrid[0:h, 0:w]
    img = np.stack([rows, cols], -1)[None]  # each pixel holds its own (row, col)
    crop = preprocess.center_crop(img, 160, 160)
    assert crop.shape == (1, 160, 160, 2)
    assert tuple(crop[0, 0, 0]) == (29, 9) and tuple(crop[0, -1, -1]) == (188, 168)
    # equal margins (218 - 160 and 178 - 160 are even)
    assert 29 == h - 1 - 188 and 9 == w - 1 - 168
    assert tuple(preprocess.center_crop(img[:, :5, :5], 2, 2)[0, 0, 0]) == (1, 1)


def test_celeb_a_preprocessing_on_known_images():
    const = np.full((2, 218, 178, 3), 137, np.uint8)
    out = preprocess.celeb_a(const)
    assert out.shape == (2, 64, 64, 3) and out.dtype == np.uint8
    assert (out == 137).all()  # a constant image stays constant

    # a linear ramp stays a linear ramp: with half-pixel centres output o samples source
    # (o + 0.5) * 2.5 - 0.5 of the crop, i.e. 29 + that in the full image's rows
    rows = np.broadcast_to(np.arange(218, dtype=np.float32)[:, None, None], (218, 178, 3))
    cols = np.broadcast_to(np.arange(178, dtype=np.float32)[None, :, None], (218, 178, 3))
    o = np.arange(64, dtype=np.float32)
    for ramp, offset, axis in ((rows, 29, 1), (cols, 9, 2)):
        y = preprocess.resize_bilinear(preprocess.center_crop(ramp[None], 160, 160), 64, 64)[0]
        expect = offset + (o + 0.5) * 2.5 - 0.5
        profile = y[:, 0, 0] if axis == 1 else y[0, :, 0]
        np.testing.assert_allclose(profile, expect, atol=1e-4)
        np.testing.assert_allclose(np.diff(profile), 2.5, atol=1e-4)
        other = y[0, :, 0] if axis == 1 else y[:, 0, 0]
        np.testing.assert_allclose(other, other[0], atol=1e-4)  # constant along the other axis
    # the uint8 pipeline rounds the same ramp (values < 256)
    ramp8 = np.broadcast_to(np.arange(218, dtype=np.uint8)[:, None, None], (1, 218, 178, 3))
    np.testing.assert_array_equal(preprocess.celeb_a(ramp8)[0, :, 0, 0],
                                  np.rint(29 + (o + 0.5) * 2.5 - 0.5).astype(np.uint8))


@pytest.mark.parametrize("shape,out", [((3, 160, 160, 3), (64, 64)), ((2, 10, 7, 1), (23, 4))])
def test_resize_matches_jax_bilinear_without_antialiasing(shape, out):
    x = np.random.default_rng(3).uniform(0, 255, shape).astype(np.float32)
    ours = preprocess.resize_bilinear(x, *out)
    ref = jax.image.resize(x, (shape[0], *out, shape[-1]), "bilinear", antialias=False)
    np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-3)


def test_unprepared_dataset_says_how_to_prepare(tmp_path):
    missing = str(tmp_path / "missing")
    for load in (tfds.load, data_source.load):
        with pytest.raises(tfds.DatasetUnavailableError) as err:
            load("celeb_a", missing)
        msg = str(err.value)
        assert "gancmp prepare-data celeb_a --data_dir DIR" in msg
        assert "--config.data_dir" in msg and "network" in msg and missing in msg
    assert not (tmp_path / "missing").exists()  # nothing downloaded or created
    with pytest.raises(KeyError, match="allowed"):
        tfds.load("imagenet2012", missing)


def test_no_data_dir_names_config_data_dir_and_prepare_data(tmp_path, monkeypatch):
    """MNIST with config.data_dir unset and nothing in TFDS's default data dir: one line naming
    the field and the command, not TFDS's "`splits` is empty" KeyError."""
    from tensorflow_datasets.core import constants

    monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    with pytest.raises(tfds.DatasetUnavailableError) as err:
        data_source.load("mnist")
    msg = str(err.value)
    assert "config.data_dir is not set" in msg and "\n" not in msg
    assert "`gancmp prepare-data mnist --data_dir DIR`" in msg


def test_every_dataset_has_one_shape_and_an_unknown_name_is_refused():
    names = data_source.names()
    assert len(names) == len(set(names)) and set(tfds.SPECS) <= set(names)
    assert data_source.example_shape("ring8") == (2,)
    assert data_source.example_shape("triangles") == (28, 28, 1)
    assert {n: data_source.example_shape(n) for n in tfds.SPECS} == {
        "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3),
        "celeb_a": (64, 64, 3)}
    for call in (data_source.example_shape, data_source.load):
        with pytest.raises(KeyError, match=r"unknown dataset 'mnistt'; known: ring8, .*celeb_a"):
            call("mnistt")


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed")
def test_prepare_without_tensorflow_says_what_to_install(tmp_path):
    with pytest.raises(tfds.DatasetUnavailableError, match=r"pip install 'gancmp\[prepare\]'"):
        tfds.prepare("mnist", str(tmp_path))


def _write_array_record(data_dir: str, name: str, splits: dict[str, list[dict]],
                        file_format: str = "array_record") -> None:
    """Prepare `name` in `data_dir` by hand, without TensorFlow: examples serialized with the
    dataset's own TFDS features into one array_record shard per split, plus dataset_info.json."""
    builder = tfds_lib.builder(name, data_dir=data_dir, file_format=file_format)
    info = builder.info
    os.makedirs(builder.data_path, exist_ok=True)
    split_infos = []
    for split, examples in splits.items():
        template = naming.ShardedFileTemplate(data_dir=builder.data_path, dataset_name=name,
                                              split=split, filetype_suffix=file_format)
        writer = array_record_module.ArrayRecordWriter(
            os.fspath(template.sharded_filepath(shard_index=0, num_shards=1)), "group_size:1")
        for ex in examples:
            writer.write(info.features.serialize_example(ex))
        writer.close()
        split_infos.append(splits_lib.SplitInfo(name=split, shard_lengths=[len(examples)],
                                                num_bytes=0, filename_template=template))
    info.set_splits(splits_lib.SplitDict(split_infos))
    info.write_to_directory(builder.data_path)


def test_reads_a_real_array_record_dataset(tmp_path):
    rng = np.random.default_rng(5)
    images = {s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
              for s, n in (("train", 9), ("test", 4))}
    _write_array_record(str(tmp_path), "cifar10", {
        s: [{"id": f"{s}_{i}", "image": _png(x), "label": i % 10} for i, x in enumerate(xs)]
        for s, xs in images.items()})
    for process_index in (None, 1):
        kw = {} if process_index is None else dict(process_index=1, process_count=2)
        ds = tfds.load("cifar10", str(tmp_path), **kw)
        train = images["train"] if process_index is None else images["train"][4:]
        np.testing.assert_array_equal(ds["train"], train)
        np.testing.assert_array_equal(ds["test"], images["test"])
    if importlib.util.find_spec("tensorflow") is None:
        assert "tensorflow" not in sys.modules


def test_tfrecord_preparation_is_reported(tmp_path):
    img = np.zeros((28, 28, 1), np.uint8)
    _write_array_record(str(tmp_path), "mnist", {"train": [{"image": _png(img), "label": 0}]},
                        file_format="tfrecord")
    with pytest.raises(tfds.DatasetUnavailableError, match="TFRecord"):
        tfds.load("mnist", str(tmp_path))

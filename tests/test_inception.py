"""FID Inception: parity with pytorch-fid, the resizers, weights reading/conversion, extractor.

The parity reference is tests/fixtures/inception/features.npz, written by make_fixture.py beside
it with pytorch-fid's own InceptionV3 (torch, torchvision) loaded with `random_state_dict(0)`.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import os
import pickle
import sys
import types
import zipfile

import jax
import numpy as np
import pytest

from gancmp.metrics import inception as mi
from gancmp.metrics import pth
from gancmp.metrics.features import FeatureExtractor, benchmark_features
from gancmp.nets import inception as net

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures", "inception")


def _make_fixture_module():
    spec = importlib.util.spec_from_file_location(
        "make_inception_fixture", os.path.join(FIXTURES, "make_fixture.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # only numpy at import time; torch is imported in main()
    return module


@pytest.fixture(scope="module")
def fixture():
    with np.load(os.path.join(FIXTURES, "features.npz")) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def extractor():
    # batch 4 over the 4 simulated devices: one image per device per call (on CPU: one pass of
    # the CPU forms, `cpu_ops`; the lanes have their own test in test_inception_cpu_ops.py).
    return FeatureExtractor.random(0, preprocess="pytorch_fid", batch_size=4)


def rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours − ref| / max |ref| over all images and features."""
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


# ---------------------------------------------------------------------------------------------
# Parity with pytorch-fid
# ---------------------------------------------------------------------------------------------


def test_parity_with_pytorch_fid(fixture, extractor):
    assert jax.device_count() == 4 and extractor.num_devices == 4  # data-parallel path
    make = _make_fixture_module()
    images299 = make.fixture_images(3, 299)
    assert [make.sha256(im) for im in images299] == list(fixture["images299_sha256"]), \
        "the fixture images no longer regenerate bit-identically"

    # 299×299: pytorch-fid's resize is the identity there, so this is net parity (+ 2x − 1).
    ours299 = extractor(images299.astype(np.float32) / 255)
    ref299 = fixture["features299"]
    assert ours299.shape == (3, 2048) and ours299.dtype == np.float32
    assert rel_error(ours299, ref299) <= 1e-4

    # 32×32 through our `pytorch_fid` preprocessing vs pytorch-fid's own resize + normalise.
    # The resizers agree to ~1 float32 ulp (see test_torch_resize_matches_fixture), a
    # perturbation of the size of the network's own rounding, so the same bound applies.
    ours32 = extractor(fixture["images32"].astype(np.float32) / 255)
    assert rel_error(ours32, fixture["features32"]) <= 1e-4

    # Healthy activations: features spread out, and differ from image to image.
    for feats in (ref299, ours299, ours32):
        assert feats.std() > 0.5 and np.isfinite(feats).all()
        assert np.abs(feats[0] - feats[1]).max() > 1e-2 * np.abs(feats).max()


def test_extractor_batching_and_provenance(fixture, extractor):
    images = fixture["images32"].astype(np.float32) / 255
    # 7 images = two calls of 4, the second padded: each image's features are its own.
    many = extractor(np.concatenate([images, images[::-1], images[:1]]))
    assert many.shape == (7, 2048)
    np.testing.assert_allclose(many[:3], many[3:6][::-1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(many[6], many[0], rtol=0, atol=1e-5)
    # grey input is tiled to RGB
    grey = images[:, :, :, :1]
    np.testing.assert_allclose(extractor(grey), extractor(np.repeat(grey, 3, axis=-1)),
                               rtol=0, atol=1e-5)
    assert extractor(np.zeros((0, 32, 32, 3), np.float32)).shape == (0, 2048)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        extractor(images * 2 - 1)
    prov = extractor.provenance
    assert prov["preprocess"] == "pytorch_fid" and prov["weights_sha256"] is None
    assert prov["feature_dim"] == 2048 and "seed=0" in prov["weights_source"]

    bench = benchmark_features(extractor, 4, (32, 32, 3))
    assert bench["images_per_sec"] > 0 and bench["n_images"] == 4 and bench["devices"] == 4


# ---------------------------------------------------------------------------------------------
# Resizers and preprocessing
# ---------------------------------------------------------------------------------------------


def _resize(x, size, mode):
    return np.asarray(net.resize_bilinear(np.asarray(x, np.float32)[None, :, :, None],
                                          size, mode))[0, :, :, 0]


def test_resize_pytorch_hand_cases():
    # torch (align_corners=False): src = (dst + 0.5)·in/out − 0.5, clamped to [0, in − 1].
    # 2 → 4: src = −0.25 (→ 0), 0.25, 0.75, 1.25 (→ 1): [a, ¾a + ¼b, ¼a + ¾b, b].
    # Columns of [[0, 4], [8, 12]] → [0, 1, 3, 4] and [8, 9, 11, 12]; then rows likewise.
    expected = [[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]]
    np.testing.assert_allclose(_resize([[0, 4], [8, 12]], (4, 4), "pytorch_fid"), expected)
    # 4 → 2: src = 0.5, 2.5: means of neighbour pairs (no antialias).
    np.testing.assert_allclose(_resize([[1, 2, 4, 8]], (1, 2), "pytorch_fid"), [[1.5, 6]])
    # 3 → 2: src = 0.25, 1.75.
    np.testing.assert_allclose(_resize([[4, 8, 16]], (1, 2), "pytorch_fid"), [[5, 14]])


def test_resize_tf1_legacy_hand_cases():
    # TF1 (no half-pixel centres): src = dst·in/out. 2 → 4: src = 0, 0.5, 1, 1.5 (upper
    # clamped to 1): [a, (a + b)/2, b, b].
    expected = [[0, 2, 4, 4], [4, 6, 8, 8], [8, 10, 12, 12], [8, 10, 12, 12]]
    np.testing.assert_allclose(_resize([[0, 4], [8, 12]], (4, 4), "tf1_legacy"), expected)
    # 4 → 2: src = 0, 2: plain subsampling.
    np.testing.assert_allclose(_resize([[1, 2, 4, 8]], (1, 2), "tf1_legacy"), [[1, 4]])
    # 3 → 2: src = 0, 1.5.
    np.testing.assert_allclose(_resize([[4, 8, 16]], (1, 2), "tf1_legacy"), [[4, 12]])


def test_torch_resize_matches_fixture(fixture):
    for key in fixture:
        if not key.startswith("resize_") or key.endswith("_in"):
            continue
        _, case, size = key.split("_")
        out_h, out_w = map(int, size.split("x"))
        ours = net.resize_bilinear(fixture[f"resize_{case}_in"], (out_h, out_w), "pytorch_fid")
        np.testing.assert_allclose(np.asarray(ours), fixture[key], rtol=0, atol=1e-6,
                                   err_msg=key)


def test_preprocess_scaling_and_grey():
    v = np.full((2, 8, 8, 1), 0.25, np.float32)
    torch_mode = np.asarray(net.preprocess(v, "pytorch_fid"))
    tf_mode = np.asarray(net.preprocess(v, "tf1_legacy"))
    assert torch_mode.shape == tf_mode.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(torch_mode, -0.5, atol=1e-6)  # 2·0.25 − 1
    np.testing.assert_allclose(tf_mode, (63.75 - 128) / 128, atol=1e-6)
    with pytest.raises(ValueError):
        net.preprocess(np.zeros((1, 8, 8, 2), np.float32), "pytorch_fid")
    with pytest.raises(ValueError):
        net.preprocess(v, "bicubic")


# ---------------------------------------------------------------------------------------------
# Reading .pth files: the restricted unpickler
# ---------------------------------------------------------------------------------------------


def _fake_torch(monkeypatch):
    """Just enough of a `torch` module for pickle to name its globals when writing a .pth."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    float_storage = type("FloatStorage", (), {"__module__": "torch"})
    long_storage = type("LongStorage", (), {"__module__": "torch"})
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils, torch.FloatStorage, torch.LongStorage = utils, float_storage, long_storage
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def write_pth(path, tensors: dict[str, np.ndarray], monkeypatch) -> None:
    """Writes `tensors` as torch's zip format would: data.pkl + data/<key> + byteorder.
    Each tensor is stored transposed in its storage with a 2-element lead-in, so reading it
    back exercises strides and offsets."""
    torch = _fake_torch(monkeypatch)
    storages = {}

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                kind = torch.LongStorage if obj.array.dtype == np.int64 else torch.FloatStorage
                return ("storage", kind, obj.key, "cpu", obj.array.size)
            return None

    state = collections.OrderedDict()
    for i, (name, value) in enumerate(tensors.items()):
        flat = np.concatenate([np.zeros(2, value.dtype), value.T.reshape(-1)])  # lead-in 2
        storages[str(i)] = Storage(str(i), flat)
        shape = value.shape
        stride = [int(np.prod(shape[:d])) for d in range(len(shape))]  # column-major
        state[name] = Tensor(storages[str(i)], 2, shape, tuple(stride))
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for key, st in storages.items():
            zf.writestr(f"archive/data/{key}", st.array.astype(st.array.dtype.newbyteorder("<"))
                        .tobytes())


def test_hand_made_pth_round_trips(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    tensors = {"a.weight": rng.standard_normal((3, 4, 2, 5)).astype(np.float32),
               "a.bias": np.arange(3, dtype=np.float32),
               "b.num_batches_tracked": np.array(7, np.int64)}
    write_pth(tmp_path / "tiny.pth", tensors, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")  # reading needs no torch
    loaded = pth.load_pth(str(tmp_path / "tiny.pth"))
    assert list(loaded) == list(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and loaded[name].flags.c_contiguous
        np.testing.assert_array_equal(loaded[name], value)


def test_pth_files_written_by_torch(fixture):
    # Saved by real torch 2.14 (make_fixture.py): zip format and the pre-1.6 pickle stream,
    # with a module's OrderedDict metadata, non-contiguous and offset views, float16 and int64.
    for name in ("tiny_zip.pth", "tiny_legacy.pth"):
        loaded = pth.load_pth(os.path.join(FIXTURES, name))
        expected = {k[len("tiny/"):]: v for k, v in fixture.items() if k.startswith("tiny/")}
        assert sorted(loaded) == sorted(expected), name
        for key, value in expected.items():
            assert loaded[key].dtype == value.dtype, (name, key)
            np.testing.assert_array_equal(loaded[key], value, err_msg=f"{name} {key}")


class _RunsCode:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_forbidden_global_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _RunsCode(f"touch {marker}")}, protocol=2)
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    with pytest.raises(pth.UnsafePickleError, match="must not run code"):
        pth.load_pth(str(path))
    # the legacy (non-zip) reader refuses it too
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps({"w": _RunsCode(f"touch {marker}")}, protocol=2))
    with pytest.raises(pth.UnsafePickleError):
        pth.load_pth(str(legacy))
    assert not marker.exists()
    # and loading it as weights reports the refusal, not a generic error
    with pytest.raises(pth.UnsafePickleError):
        mi.load_inception_variables(str(path))


# ---------------------------------------------------------------------------------------------
# Conversion, the converted format, loading and errors
# ---------------------------------------------------------------------------------------------


def test_random_state_dict_names_and_determinism():
    a, b = mi.random_state_dict(0), mi.random_state_dict(0)
    shapes = mi.state_dict_shapes()
    assert set(a) == set(shapes) | {"fc.weight", "fc.bias"}
    assert len([k for k in shapes if k.endswith("conv.weight")]) == 94
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert shapes["Mixed_7c.branch_pool.bn.running_var"] == (192,)
    assert a["fc.weight"].shape == (1008, 2048)
    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == np.float32 for k in a)
    assert not np.array_equal(a["Mixed_5b.branch1x1.conv.weight"],
                              mi.random_state_dict(1)["Mixed_5b.branch1x1.conv.weight"])


def test_convert_state_dict_layout():
    sd = mi.random_state_dict(0)
    variables = mi.convert_state_dict(sd)
    w = sd["Mixed_6b.branch7x7_2.conv.weight"]  # [O, I, kh, kw]
    k = variables["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]  # [kh, kw, I, O]
    assert k.shape == (1, 7, 128, 128)
    assert k[0, 3, 5, 9] == w[9, 5, 0, 3]
    bn = "Mixed_7c.branch_pool.bn"
    assert np.array_equal(variables["params"]["Mixed_7c"]["branch_pool"]["bn"]["scale"],
                          sd[f"{bn}.weight"])
    assert np.array_equal(variables["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
                          sd[f"{bn}.running_var"])


def test_wrong_or_missing_weights_say_where_weights_come_from(tmp_path):
    sd = mi.random_state_dict(0)
    bad = dict(sd, **{"Mixed_5b.branch1x1.conv.weight": np.zeros((64, 192, 3, 3), np.float32)})
    with pytest.raises(ValueError, match="convert-inception") as info:
        mi.convert_state_dict(bad)
    assert "--inception_weights" in str(info.value)
    assert "Mixed_5b.branch1x1.conv.weight" in str(info.value)
    missing = {k: v for k, v in sd.items() if not k.startswith("Mixed_7c.")}
    with pytest.raises(mi.InceptionWeightsError, match="missing Mixed_7c"):
        mi.convert_state_dict(missing)
    with pytest.raises(mi.InceptionWeightsError, match="internet"):
        mi.load_inception_variables(str(tmp_path / "nope.npz"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a weights file")
    with pytest.raises(mi.InceptionWeightsError, match="convert-inception"):
        mi.load_inception_variables(str(junk))


def test_convert_and_load_full_size(tmp_path, monkeypatch):
    sd = mi.random_state_dict(3)
    src, dst = tmp_path / mi.FID_WEIGHTS_NAME, tmp_path / "inception.npz"
    write_pth(src, sd, monkeypatch)
    meta = mi.convert_inception(str(src), str(dst))
    digest = mi.sha256_file(str(src))
    assert meta["source_sha256"] == digest and meta["official"] is False
    from_npz, sha_npz = mi.load_inception_variables(str(dst))
    from_pth, sha_pth = mi.load_inception_variables(str(src))
    assert sha_npz == sha_pth == digest
    expected = jax.tree.leaves(mi.convert_state_dict(sd))
    for tree in (from_npz, from_pth):
        assert jax.tree.structure(tree) == jax.tree.structure(mi.convert_state_dict(sd))
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(tree), expected,
                                                        strict=True))
    # With no path, a converted file already in the cache is used: nothing is downloaded.
    cache = tmp_path / "cache"
    cache.mkdir()
    os.replace(dst, cache / mi.CONVERTED_NAME)
    monkeypatch.setattr(mi, "download_weights", lambda *a, **k: pytest.fail("downloaded"))
    _, sha_cached = mi.load_inception_variables(None, cache_dir=str(cache))
    assert sha_cached == digest

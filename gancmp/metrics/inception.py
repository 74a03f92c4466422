"""The FID Inception weights: reading PyTorch files without torch, conversion, caching, download.

The weights are pytorch-fid's port of TF's `inception-2015-12-05` graph, published as
`pt_inception-2015-12-05-6726825d.pth` (`6726825d` is a prefix of the file's sha256). They come
from one of:
- `gancmp convert-inception --src pt_inception-2015-12-05-6726825d.pth --dst FILE` once, then
  `--inception_weights FILE` (the converted `.npz`; a raw `.pth` is accepted too);
- on a machine with internet, `load_inception_variables()` with no path downloads the `.pth` once
  from pytorch-fid's release, checks its hash, converts it and caches both in `~/.cache/gancmp`.

A `.pth` is a pickle, and unpickling can run arbitrary code. `load_pth` therefore uses a
restricted unpickler: the only globals it resolves are the handful needed to rebuild tensors
(`torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`, the `torch.*Storage`
types, `collections.OrderedDict`), each implemented here in numpy; any other global is refused.
Both torch formats are read: the zip format (torch >= 1.6: `<prefix>/data.pkl`,
`<prefix>/data/<key>` raw storages, `<prefix>/byteorder`) and the older pickle-stream format.

The converted format is a `.npz` of the flattened Flax variables ("params/Mixed_5b/branch1x1/
conv/kernel", ...) plus a JSON `__meta__` entry that records the source file's sha256.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
import struct
import tempfile
import urllib.request
import zipfile
from typing import Any

import numpy as np
from flax import traverse_util

from gancmp.nets import inception as net

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
CONVERTED_NAME = "pt_inception-2015-12-05-6726825d.npz"
FORMAT = "gancmp-fid-inception"
FORMAT_VERSION = 1

WEIGHTS_HELP = (
    "The FID Inception weights are pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
    f"({FID_WEIGHTS_URL}). Either convert that file once with `gancmp convert-inception --src "
    "pt_inception-2015-12-05-6726825d.pth --dst FILE` and pass `--inception_weights FILE` (a raw "
    ".pth is accepted too), or run once on a machine with internet, where the weights are "
    "downloaded, checked and cached automatically (default cache ~/.cache/gancmp)."
)


class InceptionWeightsError(ValueError):
    """Weights missing, unreadable or of the wrong shape; the message says where they come from."""

    def __init__(self, problem: str):
        super().__init__(f"{problem}\n{WEIGHTS_HELP}")


class UnsafePickleError(pickle.UnpicklingError):
    """A weights file asked to resolve a global that rebuilding tensors does not need."""


# ---------------------------------------------------------------------------------------------
# Restricted reading of PyTorch .pth files
# ---------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
    """Stands for `torch.<Name>Storage` in a pickle: just its numpy dtype."""

    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A flat typed buffer; `array` is filled when read (legacy files read data after the pickle).

    A view (legacy format only) is a window [offset, offset + numel) of a root storage.
    """

    def __init__(self, dtype: np.dtype, numel: int, root: _Storage | None = None, offset: int = 0):
        self.dtype, self.numel, self.root, self.offset = dtype, numel, root, offset
        self.array: np.ndarray | None = None

    def data(self) -> np.ndarray:
        if self.root is not None:
            return self.root.data()[self.offset:self.offset + self.numel]
        if self.array is None:
            raise pickle.UnpicklingError("a tensor's storage has no data in the file")
        return self.array


class _TensorRef:
    """A tensor to rebuild once the storages are read: storage, offset, size, stride (elements)."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def materialize(self) -> np.ndarray:
        flat = self.storage.data()
        if len(self.size) != len(self.stride) or any(s < 0 for s in self.size + self.stride):
            raise pickle.UnpicklingError(f"bad tensor geometry size={self.size} "
                                         f"stride={self.stride}")
        if 0 in self.size:
            return np.zeros(self.size, flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or last >= flat.size:
            raise pickle.UnpicklingError(
                f"tensor of size {self.size}, stride {self.stride}, offset {self.offset} runs "
                f"past its storage of {flat.size} elements")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=[s * flat.itemsize for s in self.stride], writeable=False)
        return np.array(view, order="C")  # a C-contiguous copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 expects a storage")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None) -> Any:
    return data


_SAFE_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals needed to rebuild a state dict of tensors; the rest raise."""

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: a weights file must not run code (only "
            "tensors, storages and OrderedDicts are allowed)")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage" or len(pid) not in (5, 6) or not isinstance(pid[1], _StorageType):
            raise UnsafePickleError(f"refusing persistent id {kind!r}: only tensor storages are "
                                    "allowed in a weights file")
        return self._load_storage(*pid[1:])


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.materialize()
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _load_zip(zf: zipfile.ZipFile) -> Any:
    pkl = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pkl) != 1:
        raise pickle.UnpicklingError("not a torch zip file: no single <prefix>/data.pkl")
    prefix = pkl[0][: -len("data.pkl")]
    order = "little"
    if prefix + "byteorder" in zf.namelist():
        order = zf.read(prefix + "byteorder").decode("ascii").strip()
    if order not in ("little", "big"):
        raise pickle.UnpicklingError(f"unknown byteorder {order!r}")
    storages: dict[str, _Storage] = {}

    def load_storage(stype: _StorageType, key, location, numel, view_metadata=None):
        key = str(key)
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views are not used by the zip format")
        if key not in storages:
            dtype = stype.dtype.newbyteorder("<" if order == "little" else ">")
            raw = zf.read(f"{prefix}data/{key}")
            if len(raw) < numel * dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key} is shorter than its {numel} "
                                             "elements")
            st = _Storage(stype.dtype, numel)
            st.array = np.frombuffer(raw, dtype, count=numel).astype(stype.dtype)
            storages[key] = st
        return storages[key]

    with zf.open(pkl[0]) as f:
        return _materialize(_RestrictedUnpickler(f, load_storage).load())


def _load_legacy(f: io.BufferedIOBase) -> Any:
    """torch < 1.6 format: magic, protocol, sys info, the object pickle, the storage keys, then
    for each storage an int64 element count and its raw data."""

    def plain(fobj):
        return _RestrictedUnpickler(fobj, lambda *a: _refuse_storage()).load()

    if plain(f) != _LEGACY_MAGIC:
        raise pickle.UnpicklingError("not a torch weights file (bad magic number)")
    if plain(f) != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError("unsupported torch legacy protocol version")
    sys_info = plain(f)
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    storages: dict[str, _Storage] = {}

    def load_storage(stype: _StorageType, key, location, numel, view_metadata=None):
        key = str(key)
        if key not in storages:
            storages[key] = _Storage(stype.dtype, int(numel))
        root = storages[key]
        if view_metadata is None:
            return root
        view_key, offset, view_size = view_metadata
        view_key = str(view_key)
        if view_key not in storages:
            storages[view_key] = _Storage(stype.dtype, int(view_size), root, int(offset))
        return storages[view_key]

    result = _RestrictedUnpickler(f, load_storage).load()
    keys = plain(f)
    end = "<" if little else ">"
    for key in keys:
        st = storages.get(str(key))
        if st is None or st.root is not None:
            raise pickle.UnpicklingError(f"unexpected storage key {key!r}")
        head = f.read(8)
        if len(head) != 8:
            raise pickle.UnpicklingError("truncated weights file")
        (count,) = struct.unpack(end + "q", head)
        dtype = st.dtype.newbyteorder(end)
        raw = f.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize or count < st.numel:
            raise pickle.UnpicklingError(f"truncated storage {key!r}")
        st.array = np.frombuffer(raw, dtype).astype(st.dtype)
    return _materialize(result)


def _refuse_storage():
    raise UnsafePickleError("unexpected storage reference in a torch file header")


def load_pth(path: str) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict file into {name: numpy array} without torch and without running
    code from the file (see the module docstring). Raises `pickle.UnpicklingError` (or its
    subclass `UnsafePickleError`) for a malformed or unsafe file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            obj = _load_zip(zf)
    else:
        with open(path, "rb") as f:
            obj = _load_legacy(f)
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        raise pickle.UnpicklingError("the file does not hold a state dict of named tensors")
    return dict(obj)


# ---------------------------------------------------------------------------------------------
# State dict ↔ Flax variables
# ---------------------------------------------------------------------------------------------

_FLAX_TO_TORCH = {
    ("params", "conv", "kernel"): "conv.weight",
    ("params", "bn", "scale"): "bn.weight",
    ("params", "bn", "bias"): "bn.bias",
    ("batch_stats", "bn", "mean"): "bn.running_mean",
    ("batch_stats", "bn", "var"): "bn.running_var",
}
_IGNORED_SUFFIXES = (".num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.", "AuxLogits.")  # the logits layer and aux head: not on the pool3 path


def _torch_key(flat_key: tuple[str, ...]) -> str:
    collection, *modules, layer, leaf = flat_key
    return ".".join(modules) + "." + _FLAX_TO_TORCH[(collection, layer, leaf)]


# Top-level layers in network order.
_ORDER = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
          "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]


def state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """The torch names and shapes the pool3 network needs (conv weights [O, I, kh, kw], BN
    vectors [C]), ordered by block in network order, then by layer name, then as torch lists a
    layer (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var). Derived from the
    Flax module, so the two cannot drift apart."""
    out = {}
    for key, leaf in traverse_util.flatten_dict(net.variable_shapes()).items():
        shape = tuple(leaf.shape)
        out[_torch_key(key)] = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 \
            else shape
    leaf_order = list(_FLAX_TO_TORCH.values())

    def rank(name: str):
        layer, leaf = name.rsplit(".", 2)[0], ".".join(name.rsplit(".", 2)[1:])
        return _ORDER.index(name.split(".")[0]), layer, leaf_order.index(leaf)

    return {name: out[name] for name in sorted(out, key=rank)}


def convert_state_dict(state_dict: dict[str, np.ndarray]) -> dict:
    """pytorch-fid state dict → Flax variables {'params': ..., 'batch_stats': ...} (numpy f32).

    Conv weights go OIHW → HWIO; BN weight/bias → scale/bias; running mean/var → batch_stats.
    `fc.*`, `AuxLogits.*` and `*.num_batches_tracked` are dropped (not on the pool3 path).
    A missing, unknown or wrong-shaped entry raises `InceptionWeightsError`.
    """
    flat = traverse_util.flatten_dict(net.variable_shapes())
    used, out, problems = set(), {}, []
    for key, leaf in flat.items():
        name = _torch_key(key)
        if name not in state_dict:
            problems.append(f"missing {name}")
            continue
        value = np.asarray(state_dict[name])
        used.add(name)
        if len(leaf.shape) == 4:
            value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
        if tuple(value.shape) != tuple(leaf.shape):
            problems.append(f"{name} has shape {tuple(np.shape(state_dict[name]))}")
            continue
        out[key] = np.ascontiguousarray(value, dtype=np.float32)
    unknown = [k for k in state_dict if k not in used and not k.endswith(_IGNORED_SUFFIXES)
               and not k.startswith(_IGNORED_PREFIXES)]
    problems += [f"unexpected entry {k}" for k in unknown]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} problems)"
                                            if len(problems) > 5 else "")
        raise InceptionWeightsError(f"not the FID Inception weights: {shown}.")
    return traverse_util.unflatten_dict(out)


def random_state_dict(seed: int) -> dict[str, np.ndarray]:
    """A deterministic stand-in for the real weights: pytorch-fid's exact names and shapes
    (conv/BN of the pool3 path plus `fc.weight` [1008, 2048] and `fc.bias` [1008]), at scales
    that keep activations healthy through the ~94 conv layers: He-normal convs
    (std √(2 / fan_in)), BN weight ≈ 1, bias ≈ 0, running_mean ≈ 0, running_var ≈ 1.
    float32, for tests and the parity fixture; same seed → same arrays on every platform."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in state_dict_shapes().items():
        if name.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif name.endswith("bn.weight"):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith("bn.bias"):
            value = 0.1 * rng.standard_normal(shape)
        elif name.endswith("running_mean"):
            value = 0.1 * rng.standard_normal(shape)
        else:  # running_var
            value = rng.uniform(0.7, 1.3, shape)
        out[name] = value.astype(np.float32)
    out["fc.weight"] = (rng.standard_normal((1008, 2048)) * np.sqrt(1.0 / 2048)).astype(np.float32)
    out["fc.bias"] = np.zeros(1008, np.float32)
    return out


# ---------------------------------------------------------------------------------------------
# The project's converted format, and loading with cache/download
# ---------------------------------------------------------------------------------------------


def sha256_file(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_variables(variables: dict, dst: str, meta: dict) -> None:
    """Writes variables as a flat `.npz` ("params/Mixed_5b/.../kernel") plus JSON `__meta__`,
    atomically (a temporary file renamed into place)."""
    flat = traverse_util.flatten_dict(variables, sep="/")
    arrays = {k: np.asarray(v, np.float32) for k, v in flat.items()}
    arrays["__meta__"] = np.array(json.dumps({"format": FORMAT, "version": FORMAT_VERSION,
                                              **meta}, sort_keys=True))
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _load_converted(path: str) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as data:
        if "__meta__" not in data.files:
            raise InceptionWeightsError(f"{path} is a .npz but not a converted weights file.")
        meta = json.loads(str(data["__meta__"]))
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise InceptionWeightsError(f"{path}: unknown format {meta.get('format')!r} "
                                        f"version {meta.get('version')!r}.")
        flat = {k: data[k] for k in data.files if k != "__meta__"}
    variables = traverse_util.unflatten_dict(flat, sep="/")
    # Same validation as a conversion: round-trip through torch names checks every shape.
    expected = traverse_util.flatten_dict(net.variable_shapes(), sep="/")
    bad = sorted(set(expected) ^ set(flat)) + [
        k for k in expected if k in flat and tuple(flat[k].shape) != tuple(expected[k].shape)]
    if bad:
        raise InceptionWeightsError(f"{path}: variables missing, unexpected or of the wrong "
                                    f"shape: {', '.join(bad[:5])}.")
    return variables, meta


def convert_inception(src: str, dst: str) -> dict:
    """Converts pytorch-fid's `.pth` at `src` to the project's `.npz` at `dst`.

    Returns the metadata written: format, version, source file name, source sha256, and whether
    that sha256 starts with the published prefix (False for any other weights file).
    """
    if not os.path.isfile(src):
        raise InceptionWeightsError(f"no weights file at {src}.")
    digest = sha256_file(src)
    try:
        state_dict = load_pth(src)
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise InceptionWeightsError(f"{src} is not a readable PyTorch weights file ({e}).") from e
    variables = convert_state_dict(state_dict)
    meta = {"source_name": os.path.basename(src), "source_sha256": digest,
            "official": digest.startswith(FID_WEIGHTS_SHA256_PREFIX),
            "network": "pytorch-fid FID Inception-v3 (inception-2015-12-05), pool3"}
    save_variables(variables, dst, meta)
    return {"format": FORMAT, "version": FORMAT_VERSION, **meta}


def _is_converted(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return "__meta__.npy" in zf.namelist()


def default_cache_dir() -> str:
    """`~/.cache/gancmp`."""
    return os.path.join(os.path.expanduser("~"), ".cache", "gancmp")


def download_weights(dst: str, url: str = FID_WEIGHTS_URL,
                     sha256_prefix: str = FID_WEIGHTS_SHA256_PREFIX) -> str:
    """Downloads `url` to `dst` (atomically), checking that its sha256 starts with
    `sha256_prefix`. Returns the sha256. Raises `InceptionWeightsError` on failure."""
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                h.update(chunk)
                f.write(chunk)
        digest = h.hexdigest()
        if not digest.startswith(sha256_prefix):
            raise InceptionWeightsError(f"the download from {url} has sha256 {digest}, which "
                                        f"does not start with {sha256_prefix}.")
        os.replace(tmp, dst)
        return digest
    except OSError as e:
        raise InceptionWeightsError(f"could not download {url} ({e}).") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_inception_variables(path: str | None = None,
                             cache_dir: str | None = None) -> tuple[dict, str]:
    """The FID Inception variables and the sha256 of the `.pth` they came from.

    `path`: a converted `.npz` (see `convert_inception`) or a raw pytorch-fid `.pth`. With no
    path, the converted file in `cache_dir` (default `~/.cache/gancmp`) is used, made on first
    use by downloading pytorch-fid's release file (hash-checked) and converting it.
    Raises `InceptionWeightsError` (a ValueError) saying where weights come from when they
    cannot be had.
    """
    if path is None:
        cache_dir = cache_dir or default_cache_dir()
        converted = os.path.join(cache_dir, CONVERTED_NAME)
        if not os.path.isfile(converted):
            raw = os.path.join(cache_dir, FID_WEIGHTS_NAME)
            if not os.path.isfile(raw):
                download_weights(raw)
            elif not sha256_file(raw).startswith(FID_WEIGHTS_SHA256_PREFIX):
                raise InceptionWeightsError(f"{raw} does not have the published sha256 prefix "
                                            f"{FID_WEIGHTS_SHA256_PREFIX}; delete it.")
            convert_inception(raw, converted)
        path = converted
    if not os.path.isfile(path):
        raise InceptionWeightsError(f"no Inception weights file at {path}.")
    if _is_converted(path):
        variables, meta = _load_converted(path)
        return variables, meta["source_sha256"]
    try:
        state_dict = load_pth(path)
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise InceptionWeightsError(f"{path} is neither a converted .npz nor a readable PyTorch "
                                    f"weights file ({e}).") from e
    return convert_state_dict(state_dict), sha256_file(path)

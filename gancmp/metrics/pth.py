"""Reading PyTorch `.pth` state dicts into numpy without torch.

A `.pth` is a pickle, and unpickling can run arbitrary code. `load_pth` therefore uses a
restricted unpickler: the only globals it resolves are the handful needed to rebuild tensors
(`torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`, the `torch.*Storage`
types, `collections.OrderedDict`), each implemented here in numpy; any other global is refused.
Both torch formats are read: the zip format (torch >= 1.6: `<prefix>/data.pkl`,
`<prefix>/data/<key>` raw storages, `<prefix>/byteorder`) and the older pickle-stream format.

`load_torchscript` reads the tensors of a TorchScript archive (`torch.jit.save`, e.g. OpenAI's
CLIP `.pt` files) the same way: its `data.pkl` pickles each module as an object of a
`__torch__.<qualified name>` class whose state is its attributes; those objects are rebuilt as
plain attribute holders (`_ScriptModule`, no code from the file runs) and the tensors among the
attributes are named by their dotted paths ("visual.conv1.weight"), as `state_dict()` names
them. The archive's code and constants are not read.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

from gancmp import storage


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


class _ScriptModule:
    """Stands for a `__torch__.*` module object of a TorchScript archive: its pickled state (a
    dict of attributes) is stored in `__dict__` and nothing else happens."""


def _identity(value: Any) -> Any:
    return value


_SCRIPT_GLOBALS = {  # TorchScript's pickler helpers for typed lists: the list itself
    ("torch.jit._pickle", name): _identity
    for name in ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist",
                 "build_genericlist", "restore_type_tag")}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals needed to rebuild a state dict of tensors; the rest raise.
    With `script`, also TorchScript's module objects (as `_ScriptModule`) and list helpers."""

    def __init__(self, file, load_storage, script: bool = False):
        super().__init__(file)
        self._load_storage = load_storage
        self._script = script

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if self._script and (module == "__torch__" or module.startswith("__torch__.")):
            return _ScriptModule
        if self._script and (module, name) in _SCRIPT_GLOBALS:
            return _SCRIPT_GLOBALS[(module, name)]
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


def _load_zip(zf: zipfile.ZipFile, script: bool = False) -> Any:
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
        obj = _RestrictedUnpickler(f, load_storage, script).load()
    return _materialize(_script_tensors(obj) if script else obj)


def _script_tensors(obj: Any, prefix: str = "") -> dict[str, Any]:
    """The tensors among a TorchScript module tree's attributes, by dotted path."""
    if not isinstance(obj, _ScriptModule):
        raise pickle.UnpicklingError("not a TorchScript archive: its data.pkl is no module")
    out: dict[str, Any] = {}
    for key, value in vars(obj).items():
        if isinstance(value, _TensorRef):
            out[prefix + key] = value
        elif isinstance(value, _ScriptModule):
            out.update(_script_tensors(value, f"{prefix}{key}."))
    return out


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


def load_torchscript(path: str) -> dict[str, np.ndarray]:
    """The tensors of a TorchScript archive as {dotted name: numpy array}, without torch and
    without running code from the file (see the module docstring). Raises
    `pickle.UnpicklingError` (or `UnsafePickleError`) for another or an unsafe file."""
    with storage.open_file(path, "rb") as f:
        if not zipfile.is_zipfile(f):
            raise pickle.UnpicklingError("not a TorchScript archive (not a zip file)")
        f.seek(0)
        with zipfile.ZipFile(f) as zf:
            return dict(_load_zip(zf, script=True))


def is_torchscript(path: str) -> bool:
    """Whether `path` is a TorchScript archive (a torch zip whose data.pkl begins with a
    `__torch__` module object) rather than a pickled state dict."""
    with storage.open_file(path, "rb") as f:
        if not zipfile.is_zipfile(f):
            return False
        f.seek(0)
        with zipfile.ZipFile(f) as zf:
            pkl = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            return bool(pkl) and b"__torch__" in zf.open(pkl[0]).read(256)


def load_pth(path: str) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict file into {name: numpy array} without torch and without running
    code from the file (see the module docstring). Raises `pickle.UnpicklingError` (or its
    subclass `UnsafePickleError`) for a malformed or unsafe file."""
    with storage.open_file(path, "rb") as f:
        if zipfile.is_zipfile(f):
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                obj = _load_zip(zf)
        else:
            f.seek(0)
            obj = _load_legacy(f)
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        raise pickle.UnpicklingError("the file does not hold a state dict of named tensors")
    return dict(obj)

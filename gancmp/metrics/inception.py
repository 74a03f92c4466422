"""The FID Inception weights: conversion from PyTorch's file, caching, download.

The weights are pytorch-fid's port of TF's `inception-2015-12-05` graph, published as
`pt_inception-2015-12-05-6726825d.pth` (`6726825d` is a prefix of the file's sha256). They come
from one of:
- `gancmp convert-inception --src pt_inception-2015-12-05-6726825d.pth --dst FILE` once, then
  `--inception_weights FILE` (the converted `.npz`; a raw `.pth` is accepted too);
- on a machine with internet, `load_inception_variables()` with no path downloads the `.pth` once
  from pytorch-fid's release, checks its hash, converts it and caches both in `~/.cache/gancmp`.

A `.pth` is read without torch and without running code from it (`gancmp.metrics.pth`).

The converted format is a `.npz` of the flattened Flax variables ("params/Mixed_5b/branch1x1/
conv/kernel", ...) plus a JSON `__meta__` entry that records the source file's sha256. Version 2
keeps the 1008-way classifier (`params/fc/kernel`, `params/fc/bias`: pytorch-fid's `fc.weight`,
`fc.bias`), which the Inception Score needs; a version-1 file (written before) has only the
pool3 path: it still gives features and FID, and `has_classifier` says it lacks the classifier
(re-run `gancmp convert-inception` to get it).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import urllib.request
import zipfile

import numpy as np
from flax import traverse_util

from gancmp import storage
from gancmp.metrics.pth import UnsafePickleError, load_pth
from gancmp.nets import inception as net
from gancmp.storage import sha256_file

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
CONVERTED_NAME = "pt_inception-2015-12-05-6726825d.npz"
FORMAT = "gancmp-fid-inception"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: pool3 path only, no classifier

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
_IGNORED_PREFIXES = ("AuxLogits.",)  # the auxiliary head: not on the pool3 path
_FC = {("params", "fc", "kernel"): "fc.weight", ("params", "fc", "bias"): "fc.bias"}


def _torch_key(flat_key: tuple[str, ...]) -> str:
    if flat_key in _FC:
        return _FC[flat_key]
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

    Conv weights go OIHW → HWIO; BN weight/bias → scale/bias; running mean/var → batch_stats;
    the classifier `fc.weight` [1008, 2048] → `params/fc/kernel` [2048, 1008] and `fc.bias` →
    `params/fc/bias`, when the state dict has them (pytorch-fid's does). `AuxLogits.*` and
    `*.num_batches_tracked` are dropped (not on the pool3 path). A missing, unknown or
    wrong-shaped entry raises `InceptionWeightsError`.
    """
    with_fc = any(k in state_dict for k in _FC.values())
    flat = traverse_util.flatten_dict(net.variable_shapes(logits=with_fc))
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
        elif key in _FC and value.ndim == 2:
            value = value.T
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


def save_variables(variables: dict, dst: str, meta: dict) -> None:
    """Writes variables as a flat `.npz` ("params/Mixed_5b/.../kernel") plus JSON `__meta__`,
    atomically (a temporary file renamed into place)."""
    flat = traverse_util.flatten_dict(variables, sep="/")
    arrays = {k: np.asarray(v, np.float32) for k, v in flat.items()}
    arrays["__meta__"] = np.array(json.dumps({"format": FORMAT, "version": FORMAT_VERSION,
                                              **meta}, sort_keys=True))
    with storage.open_atomic(dst) as f:
        np.savez(f, **arrays)


def has_classifier(variables: dict) -> bool:
    """Whether converted variables hold the 1008-way classifier (`params/fc`), which the
    Inception Score needs (version-1 converted files do not)."""
    return "fc" in variables.get("params", {})


def _load_converted(path: str) -> tuple[dict, dict]:
    with storage.open_file(path, "rb") as f, np.load(f, allow_pickle=False) as data:
        if "__meta__" not in data.files:
            raise InceptionWeightsError(f"{path} is a .npz but not a converted weights file.")
        meta = json.loads(str(data["__meta__"]))
        if meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS:
            raise InceptionWeightsError(f"{path}: unknown format {meta.get('format')!r} "
                                        f"version {meta.get('version')!r}.")
        flat = {k: data[k] for k in data.files if k != "__meta__"}
    variables = traverse_util.unflatten_dict(flat, sep="/")
    # Same validation as a conversion: round-trip through torch names checks every shape.
    with_fc = any(k.startswith("params/fc/") for k in flat)
    expected = traverse_util.flatten_dict(net.variable_shapes(logits=with_fc), sep="/")
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
    if not storage.isfile(src):
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
            "network": "pytorch-fid FID Inception-v3 (inception-2015-12-05), pool3"
                       + (" and the classifier fc" if has_classifier(variables) else "")}
    save_variables(variables, dst, meta)
    return {"format": FORMAT, "version": FORMAT_VERSION, **meta}


def is_converted(path: str) -> bool:
    """Whether `path` is a converted weights `.npz` (`convert_inception`; any version)."""
    with storage.open_file(path, "rb") as f:
        if not zipfile.is_zipfile(f):
            return False
        with zipfile.ZipFile(f) as zf:
            return "__meta__.npy" in zf.namelist()


def download_weights(dst: str, url: str = FID_WEIGHTS_URL,
                     sha256_prefix: str = FID_WEIGHTS_SHA256_PREFIX) -> str:
    """Downloads `url` to `dst` (atomically), checking that its sha256 starts with
    `sha256_prefix`. Returns the sha256. Raises `InceptionWeightsError` on failure."""
    h = hashlib.sha256()
    try:
        with (storage.open_atomic(dst) as f,
              urllib.request.urlopen(url, timeout=60) as response):
            for chunk in iter(lambda: response.read(1 << 20), b""):
                h.update(chunk)
                f.write(chunk)
            digest = h.hexdigest()
            if not digest.startswith(sha256_prefix):  # (raising here leaves dst untouched)
                raise InceptionWeightsError(f"the download from {url} has sha256 {digest}, "
                                            f"which does not start with {sha256_prefix}.")
        return digest
    except OSError as e:
        raise InceptionWeightsError(f"could not download {url} ({e}).") from e


def _file_has_classifier(path: str) -> bool:
    """Whether the converted `.npz` at `path` holds the classifier (reads its index only); an
    unreadable file counts as holding it (loading it reports the problem)."""
    try:
        with storage.open_file(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            return "params/fc/kernel" in data.files
    except (OSError, ValueError, zipfile.BadZipFile):
        return True


def load_inception_variables(path: str | None = None,
                             cache_dir: str | None = None) -> tuple[dict, str]:
    """The FID Inception variables and the sha256 of the `.pth` they came from.

    `path`: a converted `.npz` (see `convert_inception`) or a raw pytorch-fid `.pth`. With no
    path, the converted file in `cache_dir` (default `~/.cache/gancmp`) is used, made on first
    use by downloading pytorch-fid's release file (hash-checked) and converting it (again, when
    the cached conversion predates the classifier and the `.pth` is cached beside it).
    Raises `InceptionWeightsError` (a ValueError) saying where weights come from when they
    cannot be had.
    """
    if path is None:
        cache_dir = cache_dir or storage.cache_root()
        converted = os.path.join(cache_dir, CONVERTED_NAME)
        raw = os.path.join(cache_dir, FID_WEIGHTS_NAME)
        stale = (storage.isfile(converted) and storage.isfile(raw)
                 and not _file_has_classifier(converted))
        if not storage.isfile(converted) or stale:
            if not storage.isfile(raw):
                download_weights(raw)
            elif not sha256_file(raw).startswith(FID_WEIGHTS_SHA256_PREFIX):
                raise InceptionWeightsError(f"{raw} does not have the published sha256 prefix "
                                            f"{FID_WEIGHTS_SHA256_PREFIX}; delete it.")
            convert_inception(raw, converted)
        path = converted
    if not storage.isfile(path):
        raise InceptionWeightsError(f"no Inception weights file at {path}.")
    if is_converted(path):
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

"""Features of image batches: jitted, batched, data-parallel over local devices.

`BatchedExtractor` is what every metric feature network's extractor shares (the batching,
devices, micro-batches, precision and `apply` below); `FeatureExtractor` is the FID Inception's
(pool3 features), `gancmp.metrics.vit_features.ViTExtractor` DINOv2's and CLIP's.

    extractor = FeatureExtractor.from_file("inception.npz", preprocess="tf1_legacy")
    feats = extractor(images)          # images [N, H, W, C] in [0, 1] → [N, 2048] float32
    feats, logits = extractor.features_and_logits(images)   # and [N, 1008], the same pass

Every call runs fixed-size batches (the last one zero-padded and the padding dropped), so the
network compiles once per extractor; preprocessing (resize to 299×299 and scaling) is a separate
small jitted function, compiled once per input resolution. Each batch is split over all local
devices along a 1-D mesh axis (`shard_map`); the weights are replicated.

Within a device, the batch runs through the network `micro_batch` images at a time (a
`lax.map` loop). That is only a schedule, the same arithmetic per image: on CPU, activations a few
images at a time stay in cache where 50 at once do not (measured on 2 cores: about 9 images/s
one image at a time, 7 in micro-batches of 5, 5.5 in one pass of 50), so the CPU default is 1;
the Inception's, with its convolutions as matmuls on CPU (`cpu_ops`), is 4 images per loop step,
each image its own pass (4 `lanes`: independent passes that XLA:CPU's executor runs side by side
on its threads; 2026-12-06, 2 cores, images/s alternating in one run: 21.4 for 4 lanes of 1,
20.2 for 2 lanes of 1, 19.3 for one pass of 2; and 14.5 at micro-batch 2, 12.7 at 1, 13.8 at 4,
13.6 at 10 without lanes, at a busier moment). On an accelerator the default
(`micro_batch=None`) is the whole per-device batch in one pass, which is what fills a TPU core
or a GPU.

`precision` is the matmul precision of every convolution (`jax.lax.Precision` or its name:
"highest" = full float32, the default, as the published reference features; "high" = TF32 /
bf16×3; "default" = one bf16 pass on a TPU); it is part of `provenance`, so features of
different precision are never compared unknowingly.

`apply(variables, images)` is the whole pipeline (preprocessing, network, micro-batches) as a
pure function of device arrays, for callers that fuse it into a larger jitted program (the
evaluator generates samples and extracts their features in one program per chunk).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gancmp.metrics.inception import (
    FID_WEIGHTS_URL,
    convert_state_dict,
    has_classifier,
    load_inception_variables,
    random_state_dict,
)
from gancmp.nets import forms
from gancmp.nets import inception as net
from gancmp.precision import JAX_NAMES

MICRO_BATCH = 1  # images per network pass on CPU (measured fastest there, see above)
INCEPTION_CPU_MICRO_BATCH = 4  # the FID Inception's, with `cpu_ops`: 4 lanes of 1 (see above)
_RANGE_SLACK = 1e-4  # images may overshoot [0, 1] by float rounding, not more
PRECISIONS: dict[str, jax.lax.Precision] = {  # names (jax's, ours and common ones) → precision
    **dict.fromkeys(("highest", "float32", "fp32"), jax.lax.Precision.HIGHEST),
    **dict.fromkeys(("high", "tensorfloat32", "tf32", "bf16_3x"), jax.lax.Precision.HIGH),
    **dict.fromkeys(("default", "bfloat16", "bf16"), jax.lax.Precision.DEFAULT),
    # every `config.matmul_precision` name (`gancmp.precision`), which a trial hands its FID
    **{name: jax.lax.Precision[jax_name.upper()] for name, jax_name in JAX_NAMES.items()}}


def precision_name(precision: str | jax.lax.Precision | None) -> str:
    """The canonical name ("highest", "high" or "default") of a matmul precision given as a
    `jax.lax.Precision` or one of `PRECISIONS`' names (None: "highest")."""
    if precision is None:
        return "highest"
    if isinstance(precision, jax.lax.Precision):
        return {jax.lax.Precision.HIGHEST: "highest", jax.lax.Precision.HIGH: "high",
                jax.lax.Precision.DEFAULT: "default"}[precision]
    if str(precision).lower() not in PRECISIONS:
        raise ValueError(f"unknown matmul precision {precision!r}; known: "
                         f"{', '.join(PRECISIONS)}")
    return precision_name(PRECISIONS[str(precision).lower()])


def default_micro_batch(cpu: int = MICRO_BATCH) -> int | None:
    """Images per network pass within a device: `cpu` (default `MICRO_BATCH`) on CPU, None
    (the whole per-device batch in one pass) on TPU/GPU."""
    return cpu if jax.default_backend() == "cpu" else None


class BatchedExtractor:
    """What every metric feature network's extractor shares (the Inception's `FeatureExtractor`,
    DINOv2's and CLIP's `gancmp.metrics.vit_features.ViTExtractor`): fixed-size batches split
    over the local devices, `micro_batch` images per network pass within a device, the
    preprocessing jitted once per input resolution, `apply` for fused programs.

    A subclass calls `__init__` with its variables and the common options, then `_build(model,
    prepare)` with its Flax module (input → features [b, dims]) and its pure preprocessing
    (images [b, H, W, C] in [0, 1] → the module's input), and sets `dims` and `provenance`.
    `abstract=True` keeps the variables as `jax.ShapeDtypeStruct`s, never on a device: an
    extractor to compile programs with (`memory_analysis`), never to run.
    """

    dims: int
    has_logits: bool = False
    cpu_micro_batch: int = MICRO_BATCH  # the default `micro_batch` on CPU
    lanes: int = 1  # independent network passes a micro-batch is split into (`_micro_batched`)

    def __init__(self, variables: dict, *, batch_size: int = 50, micro_batch: int | None = None,
                 weights_sha256: str | None = None, weights_source: str = "",
                 devices: list | None = None, precision: str | jax.lax.Precision = "highest",
                 abstract: bool = False):
        if micro_batch is None:
            micro_batch = default_micro_batch(self.cpu_micro_batch)
        if batch_size < 1 or (micro_batch is not None and micro_batch < 0):
            raise ValueError(f"batch_size must be positive and micro_batch not negative, got "
                             f"{batch_size}, {micro_batch}")
        devices = list(devices) if devices is not None else jax.local_devices()
        # a multiple of the devices; a device's last micro-batch may be short (`_micro_batched`)
        self.batch_size = -(-batch_size // len(devices)) * len(devices)
        # micro_batch None / 0: the whole per-device batch (`apply` treats None so)
        self.micro_batch = micro_batch or None
        self.precision = precision_name(precision)
        self._sha256, self._source = weights_sha256, weights_source
        self._mesh = Mesh(np.asarray(devices), ("batch",))
        self._data = NamedSharding(self._mesh, P("batch"))
        if abstract:
            self._variables = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32), variables)
        else:
            self._variables = jax.device_put(
                jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables),
                NamedSharding(self._mesh, P()))

    def _build(self, model: Any, prepare: Callable[[jax.Array], jax.Array]) -> None:
        self._model, self._prepare = model, prepare
        self._net = self._program(model)
        self._prep = jax.jit(prepare, in_shardings=self._data, out_shardings=self._data)

    @property
    def variables(self) -> dict:
        """The network's float32 variables, replicated over the extractor's devices."""
        return self._variables

    @property
    def num_devices(self) -> int:
        return self._mesh.size

    def apply(self, variables: dict, images: jax.Array, logits: bool = False
              ) -> tuple[jax.Array, jax.Array | None]:
        """Pure, traceable: images [b, H, W, C] float in [0, 1] (C ∈ {1, 3}; not range-checked)
        → (features [b, dims] float32, None): preprocessing and the network, `micro_batch`
        images per pass. For one device's share inside a caller's jitted (and, across devices,
        shard-mapped) program. `logits`: only networks with a classifier have them."""
        if logits:
            raise ValueError("this feature network has no classifier logits")
        return _micro_batched(self._model, variables, self._prepare(images),
                              self.micro_batch, self.lanes), None

    def _program(self, model: Any):
        """The jitted, sharded network: (variables, x [B, ...]) → its outputs, each
        [B, ...], `micro_batch` images per pass within a device."""
        micro_batch, lanes = self.micro_batch, self.lanes

        def local(variables, x):  # one device's [b, ...] → outputs [b, ...]
            return _micro_batched(model, variables, x, micro_batch, lanes)

        sharded = jax.shard_map(local, mesh=self._mesh, in_specs=(P(), P("batch")),
                                out_specs=P("batch"))
        return jax.jit(sharded, in_shardings=(NamedSharding(self._mesh, P()), self._data),
                       out_shardings=self._data)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """images [N, H, W, C] float in [0, 1], C ∈ {1, 3} → features [N, dims] float32."""
        return self._run(images, self._net, (self.dims,))[0]

    def _run(self, images: np.ndarray, program, *shapes: tuple[int, ...]) -> list[np.ndarray]:
        """`program`'s outputs (of per-image `shapes`) for all images, batch by batch."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"expected images [N, H, W, C] with C in {{1, 3}}, got "
                             f"{images.shape}")
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype}")
        n = images.shape[0]
        if n == 0:
            return [np.zeros((0, *shape), np.float32) for shape in shapes]
        lo, hi = float(images.min()), float(images.max())
        if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
            raise ValueError(f"images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
        outputs = []
        for start in range(0, n, self.batch_size):
            chunk = np.asarray(images[start:start + self.batch_size], np.float32)
            valid = chunk.shape[0]
            if valid < self.batch_size:
                pad = np.zeros((self.batch_size - valid, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            x = jax.device_put(chunk, self._data)
            out = program(self._variables, self._prep(x))
            outputs.append((out if isinstance(out, tuple) else (out,), valid))
        return [np.concatenate([np.asarray(o[i])[:valid] for o, valid in outputs])
                for i in range(len(shapes))]


class FeatureExtractor(BatchedExtractor):
    """Maps images [N, H, W, C] (float in [0, 1], C ∈ {1, 3}) to pool3 features [N, 2048]
    (or [N, dims], see `dims`).

    `variables`: the Flax variables of `FIDInceptionV3` ({'params', 'batch_stats'}).
    `preprocess`: "tf1_legacy" (the TF1 FID pipeline of the published numbers),
    "pytorch_fid" (pytorch-fid's resize and scaling) or "clean" (clean-fid's antialiased
    bicubic resize); see `gancmp.nets.inception.preprocess`.
    `batch_size`: images per device call, rounded up to a multiple of the number of devices.
    `micro_batch`: images per loop step within a device (None: the backend's default,
    `default_micro_batch(INCEPTION_CPU_MICRO_BATCH)`; 0: the whole per-device batch in one
    pass; a device's last step is zero-padded); with `cpu_ops` each image of a step is its
    own network pass (`lanes` = `micro_batch`), else the step is one pass.
    `precision`: the convolutions' matmul precision (see the module docstring).
    `dims`: 2048 (pool3) or 64/192/768, pytorch-fid's `--dims`: the spatial mean of an earlier
    block (`gancmp.nets.inception.BLOCK_DIMS`); features are then [N, dims].
    `has_logits`: whether `features_and_logits` can also give the classifier's logits (pool3
    features and weights with the classifier, `gancmp.metrics.inception.has_classifier`).
    `cpu_ops`: the network's XLA:CPU forms of its convolutions and pools
    (`gancmp.nets.cpu_ops`; the same function up to float32 rounding); None: on when the
    devices are CPUs (`gancmp.nets.forms.cpu_forms`: off inside `accelerator_forms()`), off on
    TPU/GPU, whose programs stay the plain convolutions.
    """

    cpu_micro_batch = INCEPTION_CPU_MICRO_BATCH

    def __init__(self, variables: dict, *, preprocess: str = "tf1_legacy", batch_size: int = 50,
                 micro_batch: int | None = None, weights_sha256: str | None = None,
                 weights_source: str = "", devices: list | None = None,
                 dims: int = net.FEATURE_DIM, precision: str | jax.lax.Precision = "highest",
                 cpu_ops: bool | None = None):
        if preprocess not in net.PREPROCESS_MODES:
            raise ValueError(f"unknown preprocess mode {preprocess!r}; known: "
                             f"{', '.join(net.PREPROCESS_MODES)}")
        if dims not in net.BLOCK_DIMS:
            raise ValueError(f"dims must be one of {', '.join(map(str, net.BLOCK_DIMS))}, got "
                             f"{dims}")
        super().__init__(variables, batch_size=batch_size, micro_batch=micro_batch,
                         weights_sha256=weights_sha256, weights_source=weights_source,
                         devices=devices, precision=precision)
        self.preprocess = preprocess
        self.dims = dims
        self.has_logits = dims == net.FEATURE_DIM and has_classifier(variables)
        prec = PRECISIONS[self.precision]
        if cpu_ops is None:
            cpu_ops = forms.cpu_forms(self._mesh.devices.flat[0].platform)
        self.cpu_ops = bool(cpu_ops)
        if self.cpu_ops and self.micro_batch:  # each image its own pass (module docstring)
            self.lanes = self.micro_batch
        model = functools.partial(net.FIDInceptionV3, precision=prec, cpu_ops=self.cpu_ops)
        self._model_logits = model(logits=True) if self.has_logits else None
        self._net_logits = self._program(self._model_logits) if self.has_logits else None
        self._build(model(output_block=net.BLOCK_DIMS.index(dims)),
                    functools.partial(net.preprocess, mode=preprocess))

    def apply(self, variables: dict, images: jax.Array, logits: bool = False
              ) -> tuple[jax.Array, jax.Array | None]:
        """Pure, traceable: images [b, H, W, C] float in [0, 1] (C ∈ {1, 3}; not range-checked)
        → (features [b, dims] float32, logits [b, 1008] float32 with `logits` else None):
        preprocessing and the network, `micro_batch` images per pass. For one device's share
        inside a caller's jitted (and, across devices, shard-mapped) program."""
        if logits and not self.has_logits:
            raise ValueError("these Inception weights have no classifier layer (fc)")
        if not logits:
            return super().apply(variables, images)
        out = _micro_batched(self._model_logits, variables, self._prepare(images),
                             self.micro_batch, self.lanes)
        return out[0], out[1]

    @classmethod
    def from_file(cls, path: str | None = None, preprocess: str = "tf1_legacy",
                  batch_size: int = 50, cache_dir: str | None = None,
                  micro_batch: int | None = None, dims: int = net.FEATURE_DIM,
                  precision: str | jax.lax.Precision = "highest",
                  cpu_ops: bool | None = None) -> FeatureExtractor:
        """From converted (`.npz`) or raw pytorch-fid (`.pth`) weights; with no path, the cached
        download (see `load_inception_variables`)."""
        variables, sha256 = load_inception_variables(path, cache_dir)
        return cls(variables, preprocess=preprocess, batch_size=batch_size,
                   micro_batch=micro_batch, weights_sha256=sha256,
                   weights_source=path or FID_WEIGHTS_URL, dims=dims, precision=precision,
                   cpu_ops=cpu_ops)

    @classmethod
    def random(cls, seed: int, preprocess: str = "tf1_legacy", batch_size: int = 50,
               micro_batch: int | None = None, dims: int = net.FEATURE_DIM,
               precision: str | jax.lax.Precision = "highest",
               cpu_ops: bool | None = None) -> FeatureExtractor:
        """With `random_state_dict(seed)` weights: the real network's shapes and cost, for tests
        and benchmarks. Its features mean nothing."""
        variables = convert_state_dict(random_state_dict(seed))
        return cls(variables, preprocess=preprocess, batch_size=batch_size,
                   micro_batch=micro_batch, weights_sha256=None,
                   weights_source=f"random_state_dict(seed={seed})", dims=dims,
                   precision=precision, cpu_ops=cpu_ops)

    @property
    def provenance(self) -> dict[str, Any]:
        """What produced the features: weights sha256 (of the pytorch-fid `.pth`; None for random
        weights), their source, the preprocessing mode, the network, the feature size and the
        matmul precision of the convolutions ("precision": "highest" for full float32)."""
        layer = "pool3" if self.dims == net.FEATURE_DIM else \
            f"block {net.BLOCK_DIMS.index(self.dims)} spatial mean"
        return {"weights_sha256": self._sha256, "weights_source": self._source,
                "preprocess": self.preprocess,
                "network": f"pytorch-fid FID Inception-v3 (inception-2015-12-05), {layer}",
                "feature_dim": self.dims, "precision": self.precision}

    def features_and_logits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images as for a call → (pool3 features [N, 2048], the classifier's logits [N, 1008]
        without its bias, as the Inception Score takes them), float32, from one pass of the
        network. Needs `has_logits` (weights converted with the classifier)."""
        if not self.has_logits:
            raise ValueError("these Inception weights have no classifier layer (fc), which the "
                             "logits need: convert pytorch-fid's .pth again with `gancmp "
                             "convert-inception` (or pass the .pth itself)")
        feats, logits = self._run(images, self._net_logits, (self.dims,), (net.NUM_CLASSES,))
        return feats, logits


def _micro_batched(model: Any, variables: dict, x: jax.Array,
                   micro_batch: int | None, lanes: int = 1) -> Any:
    """model(x) for x [b, 299, 299, 3], `micro_batch` images per pass (a `lax.map`; the last
    pass zero-padded, the padding dropped), or all b in one pass when None or ≥ b. With
    `lanes` > 1 each micro-batch is `lanes` independent passes of micro_batch / lanes images
    (`lanes` divides `micro_batch`) in the same loop step, which XLA:CPU's executor runs side by
    side on its threads. The outputs are [b, ...] each."""
    b = x.shape[0]

    def step(xs: jax.Array) -> Any:  # one micro-batch: `lanes` independent passes
        if lanes == 1 or xs.shape[0] % lanes:
            return model.apply(variables, xs)
        outs = [model.apply(variables, part) for part in jnp.split(xs, lanes)]
        return jax.tree.map(lambda *o: jnp.concatenate(o), *outs)

    if micro_batch is None or micro_batch >= b:
        return step(x)
    pad = -b % micro_batch
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
    out = jax.lax.map(step, x.reshape(-1, micro_batch, *x.shape[1:]))
    return jax.tree.map(lambda o: o.reshape(-1, *o.shape[2:])[:b], out)


def benchmark_features(extractor: BatchedExtractor, n_images: int,
                       image_shape: tuple[int, int, int], seed: int = 0) -> dict[str, Any]:
    """Times `extractor` on `n_images` random images of `image_shape` (H, W, C), after one
    warm-up batch (compilation). Returns images_per_sec, seconds, warmup_seconds and the setup."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (n_images, *image_shape)).astype(np.float32)
    t0 = time.perf_counter()
    extractor(images[:extractor.batch_size])
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    extractor(images)
    seconds = time.perf_counter() - t0
    return {"images_per_sec": n_images / seconds, "seconds": seconds, "warmup_seconds": warmup,
            "n_images": n_images, "image_shape": tuple(image_shape),
            "batch_size": extractor.batch_size, "micro_batch": extractor.micro_batch,
            "devices": extractor.num_devices,
            "device_kind": jax.local_devices()[0].device_kind,
            "preprocess": extractor.preprocess}

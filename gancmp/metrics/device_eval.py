"""Image metrics of a group of generators on the device, in bounded memory.

A checkpoint of K trials is measured on `num_samples` (N) samples each. The samples are made
and fed to the FID Inception in chunks of c samples per trial (K·c images per network pass,
about `fid.batch_size`), inside one jitted program per chunk: the generators (vmapped over the
trials, from the fixed evaluation noise), the Inception pool3 features and, with classifier
weights, the Inception Score's per-split sums. Nothing of size N·H·W·C ever exists: what stays
is the features [K, N, d] (improved precision/recall needs every generated sample's k-NN
radius, so all N are kept; float32, 1.3 GB at K = 16, N = 10,000, d = 2048), the IS sums
[K, splits, classes] and a finite-samples flag [K]. The chunk's samples are split over the local
devices (a 1-D mesh, `shard_map`), so every device runs K·c/n images per pass whatever K.

The features are never on the device beside the generators and the network: each program
returns its own (one chunk's, or one segment's of about `SEGMENT_BYTES`), copied to a host
array while the next one runs, and the whole [K, chunks, c, d] goes back to the devices once
the pass is done, for the metrics program below. The features pass then holds the K
generators' variables (G's only), the network's weights and one segment: for the paper's
CelebA-64 InfoGAN at K = 16 under DINOv2 ViT-L/14, 2.0 + 1.13 + 0.06 GiB, not 0.61 GiB more
(tests/test_feature_nets.py). The values are the same arrays, moved.

Then one program per checkpoint maps over the trials (`lax.map`, one at a time) and computes,
from the features and the real side (`RealSide`: reference features, their k-NN radii and
KID's real terms, kept once per reference by the run's `resources.EvalResources`), each
trial's mean and covariance, per-subset KID and precision/recall (`gancmp.metrics.ondevice`,
float32). The host gets μ, Σ,
KID's subset values and the IS sums, and finishes in float64: the Fréchet distance (its matrix
square root), KID's mean/std, the split scores.

The chunk loop runs as a Python loop over the jitted chunk step on CPU (the trainer's policy
there: XLA:CPU keeps its fast convolution path outside loop bodies; a chunk's dispatch is
negligible beside its Inception pass) and as one `lax.fori_loop` program per segment elsewhere
(no host round trip per chunk; one per segment, its copy overlapping the next segment's run).
Either way each chunk computes the same arithmetic (tested).
Multi-device: the chunk's samples are split over the local devices; the per-trial metrics
program is left to XLA's partitioner (on one device it is a loop over the trials).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gancmp.metrics import fid, ondevice

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class RealSide:
    """The real images' side of KID and precision/recall, on the devices (replicated).

    features [M, d] float32; radii_sq [M] (squared k-NN radii, k = `k`); kid_real_mask [S, M]
    and kid_fake_mask [S, N] float32 (the subsets `kid.kernel_inception_distance` draws for M
    real and N fake samples, as membership); kid_real_terms [S] (`ondevice.kid_real_terms`)."""

    features: Array
    radii_sq: Array
    kid_real_mask: Array
    kid_fake_mask: Array
    kid_real_terms: Array
    k: int
    kid: tuple[tuple[str, Any], ...]


jax.tree_util.register_dataclass(
    RealSide, data_fields=["features", "radii_sq", "kid_real_mask", "kid_fake_mask",
                           "kid_real_terms"], meta_fields=["k", "kid"])


def real_side(reference: fid.ReferenceStats, num_fake: int, k: int,
              kid_args: Mapping[str, Any]) -> RealSide:
    """The `RealSide` of `reference` for `num_fake` generated samples (computed each call:
    `resources.EvalResources.real_side` keeps one per reference for a run)."""
    feats = jnp.asarray(reference.features, jnp.float32)
    real_idx, fake_idx = ondevice.kid_subsets(
        kid_args["seed"], kid_args["num_subsets"], kid_args["subset_size"], len(feats), num_fake)
    return RealSide(
        feats, ondevice.knn_radii_sq(feats, k),
        jnp.asarray(ondevice.subset_masks(real_idx, len(feats))),
        jnp.asarray(ondevice.subset_masks(fake_idx, num_fake)),
        ondevice.kid_real_terms(feats, jnp.asarray(real_idx)), k,
        tuple(sorted(kid_args.items())))


def _host_features(extractor, dims: int, logits: bool) -> Callable:
    """A host extractor (a callable on numpy images, e.g. a test stand-in) as a traceable
    function (variables, images [b, H, W, C]) → (features [b, dims], logits or None), through
    `jax.pure_callback`."""
    def call(images):
        if logits:
            f, lg = extractor.features_and_logits(np.asarray(images))
            return np.asarray(f, np.float32), np.asarray(lg, np.float32)
        return np.asarray(extractor(np.asarray(images)), np.float32)

    def fn(variables, images):
        b = images.shape[0]
        shapes = jax.ShapeDtypeStruct((b, dims), jnp.float32)
        if logits:
            shapes = (shapes, jax.ShapeDtypeStruct((b, IS_CLASSES), jnp.float32))
            return jax.pure_callback(call, shapes, images)
        return jax.pure_callback(call, shapes, images), None
    return fn


IS_CLASSES = 1008  # the FID Inception's classifier (gancmp.nets.inception.NUM_CLASSES)


def feature_dim(extractor) -> int:
    """An extractor's feature size: `dims` (the Inception's), `dim` (the interface of
    `gancmp.metrics.networks`) or its provenance's `feature_dim`."""
    return int(getattr(extractor, "dims", None) or getattr(extractor, "dim", None)
               or extractor.provenance.get("feature_dim"))


def _device_features(extractor, logits: bool) -> Callable:
    """(variables, images) → (features, logits or None) of an extractor's pure `apply`: the
    FID Inception's takes `logits` and returns a pair; another network's (`networks`
    interface) may return the features alone."""
    if logits:
        return functools.partial(extractor.apply, logits=True)

    def fn(variables, images):
        out = extractor.apply(variables, images)
        return (out[0] if isinstance(out, tuple) else out), None
    return fn


class GroupFeatures:
    """The chunked generate → features pass of one generator (see the module docstring).

    `generator`: a `gancmp.metrics.evaluators.Generator` (hashable; its `apply(g_params,
    g_state, z)` samples one trial, traceable and vmappable over the trial's variables).
    `extractor`: a `FeatureExtractor` (its `apply` is fused into the chunk program) or any
    host callable images → features [b, dims] with `provenance` (run through a callback on one
    device). `chunk`: samples per trial per chunk (rounded up to a multiple of the device
    count); N need not be a multiple (the last chunk is padded, the padding never counted).
    `loop`: "python" or "device" (None: python on CPU, device elsewhere). `devices`: the
    mesh's (default: the local devices; one for a host extractor)."""

    def __init__(self, generator: Any, extractor, num_samples: int, z: Array, *,
                 chunk: int, logits: bool, num_splits: int, loop: str | None = None,
                 devices: list | None = None):
        self.generator, self.n, self.num_splits = generator, num_samples, num_splits
        self.logits = logits
        on_device = hasattr(extractor, "apply")
        self.dims = feature_dim(extractor)
        if devices is None:
            devices = jax.local_devices() if on_device else jax.local_devices()[:1]
        self.mesh = Mesh(np.asarray(devices), ("batch",))
        nd = len(devices)
        self.chunk = -(-max(1, chunk) // nd) * nd
        self.num_chunks = -(-num_samples // self.chunk)
        self.loop = loop or ("python" if jax.default_backend() == "cpu" else "device")
        self.variables = extractor.variables if on_device else None
        self._features = (_device_features(extractor, logits) if on_device
                          else _host_features(extractor, self.dims, logits))
        pad = self.num_chunks * self.chunk - num_samples
        z = jnp.concatenate([z, jnp.zeros((pad, z.shape[1]), z.dtype)]) if pad else z
        self.z = jax.device_put(z.reshape(self.num_chunks, self.chunk, -1),
                                NamedSharding(self.mesh, P(None, "batch")))
        self._step = jax.jit(self._chunk, donate_argnums=0)
        self._segments = jax.jit(self._segment, donate_argnums=0, static_argnums=5)

    def init(self, k: int) -> dict[str, Array]:
        """The carry for K = `k` trials: finite [K] and, with logits, the IS sums (the
        features are not in it: each program returns its own, see `__call__`)."""
        zeros = {"finite": jnp.ones((k,), bool)}
        if self.logits:
            zeros["p_sum"] = jnp.zeros((k, self.num_splits, IS_CLASSES), jnp.float32)
            zeros["plogp_sum"] = jnp.zeros((k, self.num_splits), jnp.float32)
        return jax.device_put(zeros, NamedSharding(self.mesh, P()))

    def features_shape(self, k: int) -> jax.ShapeDtypeStruct:
        """The kept features of K = `k` trials: float32 [K, chunks, c, d] (the first N of
        the chunks · c samples count)."""
        return jax.ShapeDtypeStruct((k, self.num_chunks, self.chunk, self.dims), jnp.float32)

    def _local(self, variables, states, z):
        """One device's share: G's (params, state) [K], z [c/n, z_dim] → (features
        [K, c/n, d], finite [K, 1], logits [K, c/n, classes] with `logits`)."""
        x = jax.vmap(self.generator.apply, in_axes=(0, 0, None))(*states, z)
        k, b = x.shape[:2]
        ok = jnp.isfinite(x)
        finite = ok.reshape(k, -1).all(1, keepdims=True)
        x = jnp.where(ok, x, 0.0)  # a diverged trial's features are never used
        feats, lg = self._features(variables, x.reshape(k * b, *x.shape[2:]))
        out = (feats.reshape(k, b, -1), finite)
        return out + ((lg.reshape(k, b, -1),) if self.logits else ())

    def _chunk(self, carry: dict[str, Array], variables, states, z: Array, i: Array
               ) -> tuple[dict[str, Array], Array]:
        """Chunk i of every trial: (the carry with its finite flags and IS sums added, its
        features [K, c, d])."""
        specs = (P(None, "batch"), P(None, "batch")) + ((P(None, "batch"),) if self.logits
                                                         else ())
        local = jax.shard_map(self._local, mesh=self.mesh, in_specs=(P(), P(), P("batch")),
                              out_specs=specs)
        out = local(variables, states, z[i])
        carry = dict(carry)
        carry["finite"] = carry["finite"] & out[1].all(1)
        if self.logits:
            index = i * self.chunk + jnp.arange(self.chunk)
            p_sum, plogp = jax.vmap(ondevice.is_split_sums, in_axes=(0, None, None, None))(
                out[2], index, self.n, self.num_splits)
            carry["p_sum"] = carry["p_sum"] + p_sum
            carry["plogp_sum"] = carry["plogp_sum"] + plogp
        return carry, out[0]

    def _segment(self, carry, variables, states, z, start: Array, length: int):
        """Chunks start, ..., start + `length` − 1 (those below the chunk count; a traced
        trip count, one program for the shorter last segment): (carry, features
        [K, length, c, d], zeros past the last chunk)."""
        k = carry["finite"].shape[0]
        feats = jax.lax.with_sharding_constraint(
            jnp.zeros((k, length, self.chunk, self.dims), jnp.float32),
            NamedSharding(self.mesh, P(None, None, "batch")))

        def body(j, c):
            c, f = c
            c, out = self._chunk(c, variables, states, z, start + j)
            return c, f.at[:, j].set(out)
        stop = jnp.minimum(length, self.num_chunks - start)
        return jax.lax.fori_loop(0, stop, body, (carry, feats))

    def segment_length(self, k: int) -> int:
        """Chunks per device program ("device" loop): about `SEGMENT_BYTES` of features."""
        return max(1, min(self.num_chunks, SEGMENT_BYTES // (k * self.chunk * self.dims * 4)))

    def __call__(self, states) -> dict[str, Array]:
        """The carry after every chunk, for the stacked states [K] (host or device arrays),
        with "features" [K, chunks, c, d] put back on the devices once the generators and the
        network are done (module docstring)."""
        states = jax.device_put(_generator_part(states), NamedSharding(self.mesh, P()))
        k = jax.tree.leaves(states)[0].shape[0]
        carry = self.init(k)
        host = np.empty(self.features_shape(k).shape, np.float32)
        length = self.segment_length(k) if self.loop == "device" else 1
        pending = None
        for start in range(0, self.num_chunks, length):  # stores the previous part meanwhile
            if self.loop == "device":
                carry, feats = self._segments(carry, self.variables, states, self.z,
                                              jnp.int32(start), length)
            else:
                carry, feats = self._step(carry, self.variables, states, self.z,
                                          jnp.int32(start))
                feats = feats[:, None]
            feats.copy_to_host_async()
            _store(host, pending)
            pending = (start, feats)
        _store(host, pending)
        del states
        carry["features"] = jax.device_put(host, NamedSharding(self.mesh,
                                                               P(None, None, "batch")))
        return carry

    def lower(self, k: int, state_shapes) -> Any:
        """The jitted program of one segment of chunks (`loop` "device") or of one chunk
        ("python") lowered for K = `k` trials of abstract `state_shapes`
        (`jax.ShapeDtypeStruct`s): for `compile().memory_analysis()` without running
        anything."""
        carry = jax.eval_shape(functools.partial(self.init, k))
        variables = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                 self.variables)
        state_shapes = _generator_part(state_shapes)
        if self.loop == "device":
            return self._segments.lower(carry, variables, state_shapes, self.z, jnp.int32(0),
                                        self.segment_length(k))
        return self._step.lower(carry, variables, state_shapes, self.z, jnp.int32(0))


SEGMENT_BYTES = 64 << 20  # features per device program of the "device" loop


def _store(host: np.ndarray, part: tuple[int, Array] | None) -> None:
    """Writes features [K, s, c, d] of chunks start, ... into `host` [K, chunks, c, d]."""
    if part is not None:
        start, feats = part
        stop = min(host.shape[1], start + feats.shape[1])
        host[:, start:stop] = np.asarray(feats)[:, :stop - start]


def _generator_part(states) -> tuple[Any, Any]:
    """(g_params, g_state) of stacked states: all a sampling program needs."""
    return states.g_params, states.g_state


def _trial_metrics(real: RealSide, n: int, feats: Array) -> dict[str, Array]:
    """One trial's device metrics from its features [N, d]."""
    mu, sigma = ondevice.moments(feats)
    kid = dict(real.kid)
    out = ondevice.precision_recall_kid(
        real.features, real.radii_sq, real.kid_real_terms, real.kid_real_mask, feats,
        real.kid_fake_mask, real.k, kid.get("degree", 3), kid.get("gamma"),
        kid.get("coef0", 1.0))
    return {"mu": mu, "sigma": sigma, **out._asdict()}


@functools.partial(jax.jit, static_argnames=("n",))
def group_metrics(real: RealSide, features: Array, n: int) -> dict[str, Array]:
    """Device metrics of every trial, one at a time: features [K, chunks, c, d] (the first `n`
    samples count) → {"mu" [K, d], "sigma" [K, d, d], "kid_values" [K, S], "precision" [K],
    "recall" [K]}."""
    def one(i):  # trial i's features [N, d], sliced inside the loop: no copy of all K
        return _trial_metrics(real, n, features[i].reshape(-1, features.shape[-1])[:n])
    return jax.lax.map(one, jnp.arange(features.shape[0]))


def finish(carry: Mapping[str, Array], device: Mapping[str, Array], reference: fid.ReferenceStats,
           n: int, num_splits: int) -> list[dict[str, Any]]:
    """The host's float64 part: per trial {"fid", "kid", "kid_std", "precision", "recall"}
    (+ "inception_score" with logits, and "inception_score_std" over more than one split), or
    None for a trial whose samples were not all finite."""
    host = jax.device_get({**device, **{k: v for k, v in carry.items() if k != "features"}})
    out = []
    for i in range(len(host["finite"])):
        if not host["finite"][i]:
            out.append(None)
            continue
        kid = np.asarray(host["kid_values"][i], np.float64)
        row = {"fid": fid.frechet_distance(reference.mu, reference.sigma, host["mu"][i],
                                           host["sigma"][i]),
               "kid": float(kid.mean()), "kid_std": float(kid.std()),
               "precision": float(host["precision"][i]), "recall": float(host["recall"][i])}
        if "p_sum" in host:
            score = ondevice.inception_score_from_sums(host["p_sum"][i], host["plogp_sum"][i],
                                                       n)
            row["inception_score"] = score[0]
            if num_splits > 1:  # the spread over splits; one split has none
                row["inception_score_std"] = score[1]
        out.append(row)
    return out

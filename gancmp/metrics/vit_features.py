"""DINOv2 and CLIP features of image batches: the transformer networks' extractor.

    extractor = ViTExtractor.from_file("dinov2", "dinov2_vitl14_pretrain.pth")
    feats = extractor(images)      # images [N, H, W, C] in [0, 1] → [N, 1024] float32
    extractor = ViTExtractor.from_file("clip", "ViT-L-14-336px.pt")
    feats = extractor(images)      # → [N, 768] float32, unit norm (CMMD's embedding)

The batching, devices, micro-batches, `apply` and precision are the Inception extractor's
(`gancmp.metrics.features.BatchedExtractor`); what differs is in `SPECS`: the network, its
input pipeline and its feature, as the reference measures with it (dgm-eval's for DINOv2,
CMMD's for CLIP; see `gancmp.nets.dinov2` and `gancmp.nets.clip`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gancmp.metrics import vit_weights
from gancmp.metrics.features import PRECISIONS, BatchedExtractor
from gancmp.nets import clip as clip_net
from gancmp.nets import dinov2 as dino_net
from gancmp.nets.forms import cpu_forms
from gancmp.nets.vit import ACCELERATOR_FORM, CPU_FORM, ViTConfig, with_kernel_layout


@dataclasses.dataclass(frozen=True)
class ViTSpec:
    """A transformer feature network: its full-size `config`, feature size `dim`, input size,
    preprocessing modes (the first the default), `model(config, dim, precision, form)`
    → a Flax module (normalised input → features [b, dim]) and `network` (for provenance)."""

    name: str
    config: ViTConfig
    dim: int
    input_size: int
    preprocess_modes: tuple[str, ...]
    prepare: Callable[..., jax.Array]
    model: Callable[..., Any]
    network: str


SPECS = {
    "dinov2": ViTSpec(
        "dinov2", dino_net.VIT_L14, dino_net.FEATURE_DIM, dino_net.INPUT_SIZE,
        dino_net.PREPROCESS_MODES, dino_net.preprocess,
        lambda config, dim, precision, form=ACCELERATOR_FORM: dino_net.model(config, precision,
                                                                             form),
        "DINOv2 ViT-L/14 (LVD-142M, dinov2_vitl14_pretrain.pth), x_norm_clstoken at 224 px "
        "(dgm-eval's)"),
    "clip": ViTSpec(
        "clip", clip_net.VIT_L14, clip_net.FEATURE_DIM, clip_net.INPUT_SIZE,
        clip_net.PREPROCESS_MODES, clip_net.preprocess, clip_net.model,
        "OpenAI CLIP ViT-L/14@336px visual tower, L2-normalised projected embedding (CMMD's)"),
}


# On CPU devices: 2 images per loop step, each its own network pass (2 `lanes`, which XLA:CPU's
# executor runs side by side on its threads; the same features bit for bit). DINOv2 on 2 cores,
# alternating in one run at load ≈ 1, 2026-12-06: 1.66, 1.66, 1.67 images/s against 1.54, 1.60,
# 1.59 for one image per step (batching the 2 images into one pass was slower, RESULTS.md).
VIT_CPU_MICRO_BATCH = 2


class ViTExtractor(BatchedExtractor):
    """Maps images [N, H, W, C] (float in [0, 1], C ∈ {1, 3}) to the features of `network`
    ("dinov2": [N, 1024]; "clip": [N, 768]).

    `variables`: {'params': ...} of the network's Flax module (`gancmp.metrics.vit_weights`
    converts the reference files). `preprocess`: one of the network's modes (None: its
    default). `config`, `dim`: a smaller ViT of the same kind (tests). The other options are
    `BatchedExtractor`'s; on CPU devices the default `micro_batch` is `VIT_CPU_MICRO_BATCH`,
    each image of a step its own pass, and the network takes `gancmp.nets.vit.CPU_FORM` (`form`:
    dense kernels kept [out, in], which `variables` and `apply` use, and 4 heads per attention
    product)."""

    cpu_micro_batch = VIT_CPU_MICRO_BATCH

    def __init__(self, variables: dict, network: str = "dinov2", *, preprocess: str | None = None,
                 config: ViTConfig | None = None, dim: int | None = None, **options: Any):
        if network not in SPECS:
            raise ValueError(f"unknown transformer feature network {network!r}; known: "
                             f"{', '.join(SPECS)}")
        spec = SPECS[network]
        preprocess = preprocess or spec.preprocess_modes[0]
        if preprocess not in spec.preprocess_modes:
            raise ValueError(f"unknown {network} preprocess mode {preprocess!r}; known: "
                             f"{', '.join(spec.preprocess_modes)}")
        platform = (options.get("devices") or jax.local_devices())[0].platform
        self.form = CPU_FORM if cpu_forms(platform) else ACCELERATOR_FORM
        super().__init__(with_kernel_layout(variables, self.form.kernel_layout), **options)
        if platform == "cpu" and self.micro_batch:
            self.lanes = self.micro_batch  # each image its own pass (VIT_CPU_MICRO_BATCH)
        self.spec, self.network, self.preprocess = spec, network, preprocess
        self.config = config or spec.config
        self.dims = dim or spec.dim
        self._build(spec.model(self.config, self.dims, PRECISIONS[self.precision], self.form),
                    functools.partial(spec.prepare, mode=preprocess, size=spec.input_size))

    @classmethod
    def from_file(cls, network: str, path: str | None = None, preprocess: str | None = None,
                  cache_dir: str | None = None, **options: Any) -> ViTExtractor:
        """From the reference weights file (see `gancmp.metrics.vit_weights`; None: the file
        in the cache directory). Its sha256 is recorded in `provenance`."""
        variables, sha256, path = vit_weights.load_variables(network, path, cache_dir)
        return cls(variables, network, preprocess=preprocess, weights_sha256=sha256,
                   weights_source=path, **options)

    @classmethod
    def random(cls, network: str, seed: int, preprocess: str | None = None,
               **options: Any) -> ViTExtractor:
        """The full-size network with Flax's random initialisation: its real shapes and cost,
        for tests and benchmarks. Its features mean nothing."""
        spec = SPECS[network]
        size = spec.input_size
        variables = jax.jit(spec.model(spec.config, spec.dim, PRECISIONS["highest"]).init)(
            jax.random.PRNGKey(seed), jnp.zeros((1, size, size, 3), jnp.float32))
        return cls(jax.device_get(variables), network, preprocess=preprocess,
                   weights_source=f"random init (seed={seed})", **options)

    @classmethod
    def abstract(cls, network: str, preprocess: str | None = None,
                 **options: Any) -> ViTExtractor:
        """The full-size network with abstract variables (shapes only): for compiling programs
        and their `memory_analysis`, never for running."""
        return cls(variable_shapes(network), network, preprocess=preprocess,
                   weights_source="shapes only", abstract=True, **options)

    @property
    def provenance(self) -> dict[str, Any]:
        """What produced the features: the weights file's sha256 (None for random weights) and
        path, the preprocessing mode, the network and its feature, the feature size and the
        matmul precision ("highest": full float32)."""
        return {"weights_sha256": self._sha256, "weights_source": self._source,
                "preprocess": self.preprocess,
                "network": self.spec.network if self.config == self.spec.config
                else f"{self.spec.name} {self.config} (not the reference size)",
                "feature_dim": self.dims, "precision": self.precision}


@functools.lru_cache(maxsize=2)
def variable_shapes(network: str) -> dict:
    """The full-size network's variables as `jax.ShapeDtypeStruct`s (do not modify: cached)."""
    spec = SPECS[network]
    size = spec.input_size
    return jax.eval_shape(spec.model(spec.config, spec.dim, PRECISIONS["highest"]).init,
                          jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3), jnp.float32))


def parameter_count(network: str) -> int:
    """Parameters of the full-size network (position embeddings at its input size)."""
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variable_shapes(network)))

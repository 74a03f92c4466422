"""The feature networks a metric can measure in, by name: one registry for the CLI, the sweeps'
`config.eval.metrics` and `gancmp list metrics`.

    extractor = make_extractor("inception", weights=None)   # FeatureExtractor-like
    extractor(images)          # images [N, H, W, C] float in [0, 1] → features [N, dim] float32
    extractor.provenance       # network, weights sha256 and source, preprocessing, dim, precision

Every extractor returned here has the interface of `features.FeatureExtractor`: `__call__`,
`apply(variables, images)` (pure, for fused on-device programs), `variables`, `provenance`,
`batch_size`, `num_devices`. A network is added with `register(FeatureNetwork(...))`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class FeatureNetwork:
    """A metric feature network. `dim`: its feature size. `make(weights, **options)`: an extractor
    from a weights path (None: the published weights, downloaded once to the cache) with the
    caller's options (batch_size, precision, ...). `random(seed, **options)`: the same network
    with random weights (real shapes and cost; for tests and benchmarks). `about`: one line."""

    name: str
    dim: int
    make: Callable[..., Any]
    random: Callable[..., Any]
    about: str


_NETWORKS: dict[str, FeatureNetwork] = {}


def register(network: FeatureNetwork) -> FeatureNetwork:
    _NETWORKS[network.name] = network
    return network


def names() -> tuple[str, ...]:
    """The registered networks' names, in registration order ("inception" first)."""
    return tuple(_NETWORKS)


def get(name: str) -> FeatureNetwork:
    """The network called `name`; a ValueError naming the known ones otherwise."""
    if name not in _NETWORKS:
        raise ValueError(f"unknown feature network {name!r}; known: {', '.join(_NETWORKS)}")
    return _NETWORKS[name]


def make_extractor(name: str, weights: str | None = None, **options: Any) -> Any:
    """An extractor of network `name` from `weights` (a path; None: the published weights)."""
    return get(name).make(weights, **options)


def _inception(weights: str | None, **options: Any) -> Any:
    from gancmp.metrics.features import FeatureExtractor  # noqa: PLC0415 (loads JAX)

    return FeatureExtractor.from_file(weights, **options)


def _inception_random(seed: int, **options: Any) -> Any:
    from gancmp.metrics.features import FeatureExtractor  # noqa: PLC0415 (loads JAX)

    return FeatureExtractor.random(seed, **options)


register(FeatureNetwork(
    "inception", 2048, _inception, _inception_random,
    "pytorch-fid's FID Inception-v3 (TF inception-2015-12-05), pool3: FID's network"))


def _transformer(network: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(make, random) of a `gancmp.metrics.vit_features` network."""

    def make(weights: str | None, **options: Any) -> Any:
        from gancmp.metrics.vit_features import ViTExtractor  # noqa: PLC0415 (loads JAX)

        return ViTExtractor.from_file(network, weights, **options)

    def random(seed: int, **options: Any) -> Any:
        from gancmp.metrics.vit_features import ViTExtractor  # noqa: PLC0415 (loads JAX)

        return ViTExtractor.random(network, seed, **options)

    return make, random


register(FeatureNetwork(
    "dinov2", 1024, *_transformer("dinov2"),
    "DINOv2 ViT-L/14 (dinov2_vitl14_pretrain.pth), the final-norm class token at 224 px: "
    "dgm-eval's FD-DINOv2 network"))
register(FeatureNetwork(
    "clip", 768, *_transformer("clip"),
    "OpenAI CLIP ViT-L/14@336px (ViT-L-14-336px.pt), the unit-norm image embedding: CMMD's "
    "network"))

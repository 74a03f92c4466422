"""CLIP ViT-L/14@336px's visual tower as CMMD measures with it (Jayasumana et al., CVPR 2024).

Which CLIP, and why: CMMD's reference code (google-research `cmmd/embedding.py`) embeds with
scenic's port of OpenAI's `ViT-L-14-336px.pt` (`_CLIP_MODEL_NAME = 'vit_l14_336px'`), the
largest and highest-resolution of OpenAI's released CLIPs; we take the same OpenAI weights (as
open_clip loads them for `ViT-L-14-336`, `pretrained='openai'`), so our CMMD is theirs and FD on
CLIP features is measured in the same space. Architecture: patch 14 (no bias), width 1024,
24 blocks, 16 heads, MLP 4096 with QuickGELU, LayerNorm eps 1e-5 before the blocks (ln_pre)
and after (ln_post, on the class token), 577 tokens at 336×336, and the projection
`proj` [1024, 768].

The feature (CMMD's): `encode_image` with scenic's default `normalize=True`: ln_post(class
token) @ proj, divided by its L2 norm, 768 numbers on the unit sphere.

The input (CMMD's `_clip_preprocess`, the only mode): images in [0, 1] resized to 336×336 by
`jax.image.resize(..., method='bicubic')` (Keys a = −0.5, antialiased when shrinking, no
crop), then `(x − mean)/std` with CLIP's mean (0.48145466, 0.4578275, 0.40821073) and std
(0.26862954, 0.26130258, 0.27577711).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gancmp.nets.vit import ACCELERATOR_FORM, ViT, ViTConfig, ViTForm

VIT_L14 = ViTConfig(width=1024, depth=24, heads=16, mlp_dim=4096, patch=14, act="quick_gelu",
                    layer_scale=False, ln_pre=True, patch_bias=False, eps=1e-5)
INPUT_SIZE = 336
FEATURE_DIM = 768
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
PREPROCESS_MODES: tuple[str, ...] = ("cmmd",)


def preprocess(images: jax.Array, mode: str = "cmmd", size: int = INPUT_SIZE) -> jax.Array:
    """images [N, H, W, C] float in [0, 1], C ∈ {1, 3} (grey tiled to RGB) → [N, size, size, 3]
    float32, CMMD's resize and CLIP's normalisation; pure jnp, jittable."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"unknown CLIP preprocess mode {mode!r}; known: "
                         f"{', '.join(PREPROCESS_MODES)}")
    x = jnp.asarray(images, jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.broadcast_to(x, (*x.shape[:3], 3))
    x = jax.image.resize(x, (x.shape[0], size, size, 3), method="bicubic")
    return (x - CLIP_MEAN) / CLIP_STD


class ClipVisual(nn.Module):
    """Normalised input [N, 336, 336, 3] → unit-norm image embeddings [N, embed_dim]
    (`form`: the trunk's, `gancmp.nets.vit`'s; `proj` stays [width, embed_dim])."""

    config: ViTConfig = VIT_L14
    embed_dim: int = FEATURE_DIM
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST
    form: ViTForm = ACCELERATOR_FORM

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cls = ViT(self.config, self.precision, self.form, name="trunk")(x)
        proj = self.param("proj", nn.initializers.lecun_normal(),
                          (self.config.width, self.embed_dim))
        emb = jnp.dot(cls, proj, precision=self.precision)
        return emb / jnp.linalg.norm(emb, axis=-1, keepdims=True)


def model(config: ViTConfig = VIT_L14, embed_dim: int = FEATURE_DIM,
          precision=jax.lax.Precision.HIGHEST, form: ViTForm = ACCELERATOR_FORM) -> ClipVisual:
    return ClipVisual(config, embed_dim, precision, form)

"""DINOv2 ViT-L/14 as dgm-eval measures with it (Stein et al., NeurIPS 2023): the network, its
input pipeline and its feature.

What dgm-eval does (`dgm_eval/models/dinov2.py`, `DINOv2Encoder`): it loads
`torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14')` (the official LVD-142M checkpoint
`dinov2_vitl14_pretrain.pth`: img_size 518, patch 14, width 1024, 24 blocks, 16 heads, MLP 4096,
LayerScale, LayerNorm eps 1e-6, no register tokens), resizes every image to 224×224 with
bicubic interpolation, scales to [0, 1], normalises with ImageNet's mean (0.485, 0.456, 0.406)
and std (0.229, 0.224, 0.225), and takes the model's output, `head(x_norm_clstoken)` with an
identity head: the class token after the final LayerNorm, 1024 numbers. The 37×37 position
embeddings of the checkpoint are interpolated to the 16×16 patches of a 224 input by the model
(torch bicubic, `scale_factor` (16 + 0.1)/37, no antialias); the converter does that once
(`gancmp.metrics.vit_weights`), so `pos_embed` here is already [257, 1024].

The resize, two modes (`PREPROCESS_MODES`):
- "dgm_eval" (the default): dgm-eval's default path, `TF.Resize((224, 224), BICUBIC)` on the
  8-bit PIL image: values quantised to 0–255, Pillow's bicubic resize of 8-bit images (columns
  then rows, each pass rounded to integers and clipped, as Pillow does), then /255. Pillow sums
  in 22-bit fixed point where this sums in float32: a pixel may differ by one level where a sum
  falls on a half (measured in tests/test_feature_nets.py).
- "clean": dgm-eval's `--clean_resize`, `pil_resize`: each channel of the 0–255 values resized
  by Pillow in float mode "F" (no rounding), clipped to [0, 255], /255.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gancmp.nets.inception_input import _pil_resize_axis
from gancmp.nets.vit import ACCELERATOR_FORM, ViT, ViTConfig, ViTForm

VIT_L14 = ViTConfig(width=1024, depth=24, heads=16, mlp_dim=4096, patch=14, act="gelu",
                    layer_scale=True, ln_pre=False, patch_bias=True, eps=1e-6)
CHECKPOINT_SIZE = 518  # the checkpoint's img_size: 37×37 position embeddings
INPUT_SIZE = 224  # dgm-eval's resize
INTERPOLATE_OFFSET = 0.1  # the hub models' interpolate_offset
FEATURE_DIM = 1024
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
PREPROCESS_MODES: tuple[str, ...] = ("dgm_eval", "clean")


def _round_clip8(x: jax.Array) -> jax.Array:
    """Pillow's 8-bit store: round half up, clip to [0, 255]."""
    return jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)


def preprocess(images: jax.Array, mode: str = "dgm_eval", size: int = INPUT_SIZE) -> jax.Array:
    """images [N, H, W, C] float in [0, 1], C ∈ {1, 3} (grey tiled to RGB) → the network's input
    [N, size, size, 3] float32 (ImageNet-normalised); pure jnp, jittable. See the module
    docstring for the modes."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"unknown DINOv2 preprocess mode {mode!r}; known: "
                         f"{', '.join(PREPROCESS_MODES)}")
    x = jnp.asarray(images, jnp.float32) * 255.0
    if mode == "dgm_eval":
        x = _round_clip8(x)
        x = _round_clip8(_pil_resize_axis(x, 2, size))
        x = _round_clip8(_pil_resize_axis(x, 1, size))
    else:
        x = jnp.clip(_pil_resize_axis(_pil_resize_axis(x, 2, size), 1, size), 0.0, 255.0)
    if x.shape[-1] == 1:
        x = jnp.broadcast_to(x, (*x.shape[:3], 3))
    return (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def model(config: ViTConfig = VIT_L14, precision=jax.lax.Precision.HIGHEST,
          form: ViTForm = ACCELERATOR_FORM) -> ViT:
    """The DINOv2 trunk: normalised input [N, 224, 224, 3] → x_norm_clstoken [N, width]
    (`form`: `gancmp.nets.vit`'s)."""
    return ViT(config, precision, form)

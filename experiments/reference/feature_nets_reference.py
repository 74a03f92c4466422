"""Writes the parity fixtures of tests/test_feature_nets.py from the reference implementations.

Runs once, in a scratch environment with torch (CPU), Pillow, open_clip_torch, the official
DINOv2 repository's module code and dgm-eval's code (never in gancmp's environment):

    python3.11 -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch torchvision \
        open_clip_torch pillow numpy
    # github.com/facebookresearch/dinov2 (b8931f7b) and github.com/layer6ai-labs/dgm-eval
    # (74c79f75) checked out as /tmp/featwork/dinov2 and /tmp/featwork/dgm
    /tmp/refenv/bin/python experiments/reference/feature_nets_reference.py \
        --dinov2 /tmp/featwork/dinov2 --dgm_eval /tmp/featwork/dgm --out tests/fixtures

It writes, for a small random DINOv2 ViT (the official `DinoVisionTransformer`, width 32, two
blocks, img_size 252 so the 18×18 position embeddings are interpolated to 16×16 as the real
37×37 are) and a small random CLIP visual tower (open_clip's `VisionTransformer`, QuickGELU,
width 32, two blocks, at 336 px):
- dinov2_tiny.pth: its state dict (torch.save: a plain .pth, as the official checkpoint);
- clip_tiny.pt: its TorchScript archive (torch.jit.trace of a module holding it as `visual`,
  so its names are `visual.*`, as in OpenAI's .pt files); clip_tiny_fp16.pt the same in
  float16, as OpenAI's files store their weights;
- feature_nets_expected.npz: the images' seeds and shapes, their sha256, the features of each
  reference pipeline (dgm-eval's DINOv2 transforms, default and --clean_resize; CLIP on
  336×336 images, where CMMD's resize is the identity) and dgm-eval's 8-bit 224×224 resize of
  the first image.
"""

import argparse
import hashlib
import importlib
import os
import sys
import types
from functools import partial

import numpy as np
import torch
from PIL import Image

DINO_IMAGES = dict(seed=0, shape=(3, 20, 24, 3))  # N, H, W, C uint8
CLIP_IMAGES = dict(seed=1, shape=(2, 336, 336, 3))


def images(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def randomise(module, seed):
    """Every parameter and buffer drawn at random (scales that keep activations healthy), so
    that every weight shows in the features."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim <= 1 or "token" in name or "embed" in name.split(".")[-1]:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if name.endswith(
                    ("norm1.weight", "norm2.weight", "norm.weight", "ln_1.weight",
                     "ln_2.weight", "ln_pre.weight", "ln_post.weight", "gamma")) else 0.0))
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))


def load_dgm_eval(path):
    """dgm_eval.models.dinov2 without the package __init__ (which imports every encoder)."""
    for name, sub in (("dgm_eval", "dgm_eval"), ("dgm_eval.models", "dgm_eval/models")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(path, sub)]
        sys.modules[name] = pkg
    return importlib.import_module("dgm_eval.models.dinov2")


def dinov2_fixture(dinov2_path, dgm_path, out):
    sys.path.insert(0, dinov2_path)
    from dinov2.layers import MemEffAttention
    from dinov2.layers.block import Block
    from dinov2.models.vision_transformer import DinoVisionTransformer

    torch.manual_seed(0)
    model = DinoVisionTransformer(
        img_size=252, patch_size=14, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4,
        block_fn=partial(Block, attn_class=MemEffAttention), init_values=1.0,
        ffn_layer="mlp", block_chunks=0, num_register_tokens=0,
        interpolate_antialias=False, interpolate_offset=0.1).eval()
    randomise(model, 0)
    torch.save(model.state_dict(), os.path.join(out, "dinov2_tiny.pth"))
    encoder = load_dgm_eval(dgm_path).DINOv2Encoder.__new__(
        load_dgm_eval(dgm_path).DINOv2Encoder)
    imgs = images(**DINO_IMAGES)
    result = {}
    for mode, clean in (("dgm_eval", False), ("clean", True)):
        encoder.clean_resize = clean
        x = torch.stack([encoder.transform(Image.fromarray(im)).float() for im in imgs])
        with torch.no_grad():
            result[f"dinov2_{mode}"] = model(x).numpy()
    import torchvision.transforms as TF
    resized = TF.Resize((224, 224), TF.InterpolationMode.BICUBIC)(Image.fromarray(imgs[0]))
    result["dinov2_resize8_first"] = np.asarray(resized, np.uint8)
    result["dinov2_images_sha256"] = hashlib.sha256(imgs.tobytes()).hexdigest()
    return result


class _Holder(torch.nn.Module):
    def __init__(self, visual):
        super().__init__()
        self.visual = visual

    def forward(self, x):
        return self.visual(x)


def clip_fixture(out):
    from open_clip.transformer import QuickGELU, VisionTransformer

    torch.manual_seed(1)
    visual = VisionTransformer(image_size=336, patch_size=14, width=32, layers=2, heads=2,
                               mlp_ratio=4.0, output_dim=16, act_layer=QuickGELU).eval()
    randomise(visual, 1)
    holder = _Holder(visual).eval()
    imgs = images(**CLIP_IMAGES)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    x = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    with torch.no_grad():
        traced = torch.jit.trace(holder, x[:1])
        emb = holder(x)
    traced.save(os.path.join(out, "clip_tiny.pt"))
    traced.half().save(os.path.join(out, "clip_tiny_fp16.pt"))  # as OpenAI's files: float16
    emb = emb / emb.norm(dim=-1, keepdim=True)
    return {"clip_cmmd": emb.numpy(),
            "clip_images_sha256": hashlib.sha256(imgs.tobytes()).hexdigest()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dinov2", required=True)
    parser.add_argument("--dgm_eval", required=True)
    parser.add_argument("--out", default="tests/fixtures")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = dinov2_fixture(args.dinov2, args.dgm_eval, args.out)
    result.update(clip_fixture(args.out))
    result.update({"dino_seed": DINO_IMAGES["seed"], "dino_shape": DINO_IMAGES["shape"],
                   "clip_seed": CLIP_IMAGES["seed"], "clip_shape": CLIP_IMAGES["shape"],
                   "torch_version": torch.__version__})
    np.savez_compressed(os.path.join(args.out, "feature_nets_expected.npz"), **result)
    for k, v in result.items():
        print(k, getattr(v, "shape", v))


if __name__ == "__main__":
    main()

"""The torch references' feature extraction speed on CPU, for `gancmp bench --what features`:
DINOv2 ViT-L/14 (the official `DinoVisionTransformer` of github.com/facebookresearch/dinov2,
`vit_large` as `dinov2_vitl14` builds it) and CLIP ViT-L/14@336px (open_clip's
`create_model('ViT-L-14-336')` visual tower, QuickGELU as OpenAI's), random weights (the speed
does not depend on the values, so nothing is downloaded), float32, no_grad, eval mode, 2 threads
by default. Inputs: 32×32×3 images in [0, 1], resized inside the timed region as the references
do it on tensors (bicubic to 224×224, resp. 336×336) and normalised.

  python experiments/bench/torch_features.py --network dinov2 --dinov2 PATH --n 8 --json
prints one JSON line: images_per_sec, seconds, batch_size, threads, torch version.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial

import torch
import torch.nn.functional as F


def _declare_torchvision_ops():
    """A torchvision wheel of another torch build lacks its compiled ops, which these networks
    do not use; declare the schemas its import registers fakes for (as torch_fid.py does)."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            try:
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except RuntimeError:
                pass
        _declare_torchvision_ops.keep = lib


def dinov2(path: str):
    sys.path.insert(0, path)
    from dinov2.layers import MemEffAttention
    from dinov2.layers.block import Block
    from dinov2.models.vision_transformer import DinoVisionTransformer

    model = DinoVisionTransformer(
        img_size=518, patch_size=14, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4,
        block_fn=partial(Block, attn_class=MemEffAttention), init_values=1.0, ffn_layer="mlp",
        block_chunks=0, num_register_tokens=0, interpolate_antialias=False,
        interpolate_offset=0.1)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return model.eval(), 224, mean, std


def clip():
    _declare_torchvision_ops()
    import open_clip

    model = open_clip.create_model("ViT-L-14-336", pretrained=None, force_quick_gelu=True)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    visual = model.visual.eval()
    return (lambda x: F.normalize(visual(x), dim=-1)), 336, mean, std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=("dinov2", "clip"), required=True)
    parser.add_argument("--dinov2", default=None, help="a checkout of facebookresearch/dinov2")
    parser.add_argument("--n", type=int, default=8, help="timed images")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, size, mean, std = dinov2(args.dinov2) if args.network == "dinov2" else clip()
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def features(x):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
        return model((x - mean) / std)

    images = torch.rand(args.n, 3, 32, 32)
    with torch.no_grad():
        t0 = time.perf_counter()
        features(images[:args.batch_size])
        warmup = time.perf_counter() - t0
        t0 = time.perf_counter()
        feats = [features(images[i:i + args.batch_size])
                 for i in range(0, args.n, args.batch_size)]
        seconds = time.perf_counter() - t0
    result = {"images_per_sec": args.n / seconds, "seconds": seconds, "warmup_seconds": warmup,
              "n_images": args.n, "batch_size": args.batch_size, "threads": args.threads,
              "torch": torch.__version__, "feature_dim": int(feats[0].shape[-1]),
              "network": {"dinov2": "official DinoVisionTransformer vit_large/14",
                          "clip": "open_clip ViT-L-14-336 visual"}[args.network]}
    print(json.dumps(result) if args.json else
          f"{args.network}: {result['images_per_sec']:.2f} images/s ({args.threads} threads, "
          f"batch {args.batch_size})")


if __name__ == "__main__":
    main()

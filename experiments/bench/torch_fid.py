"""pytorch-fid's InceptionV3 (pool3, FID blocks) feature extraction speed on CPU, for comparison
with `gancmp bench --what fid`: 32×32×3 inputs in [0, 1], resized to 299×299 inside the network
(pytorch-fid's resize_input), batch 50, float32, no_grad, eval mode, 2 threads by default.

Weights are random (the speed does not depend on their values), so nothing is downloaded: the
state-dict load of pytorch-fid's constructor is skipped. Needs `pytorch-fid` and torchvision; a
torchvision wheel built for another torch variant (CUDA wheel on a CPU torch) fails to load its
compiled ops, which this network does not use, so their two schemas that torchvision's import
registers fakes for are declared first when missing.

  python experiments/bench/torch_fid.py --n 200 --json
prints one JSON line: images_per_sec, seconds, batch_size, threads, torch version.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _import_pytorch_fid():
    try:
        import torchvision  # noqa: F401
    except RuntimeError:  # torchvision's compiled ops missing (wheel for another torch build)
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            try:
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except RuntimeError:
                pass
        _import_pytorch_fid.keep = lib
    from pytorch_fid import inception

    return inception


def build_network():
    """pytorch-fid's InceptionV3([pool3]) with use_fid_inception=True and random weights."""
    inception = _import_pytorch_fid()
    original = torch.nn.Module.load_state_dict
    inception.load_state_dict_from_url = lambda *args, **kwargs: None
    torch.nn.Module.load_state_dict = lambda self, state_dict, *args, **kwargs: None
    try:
        model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    finally:
        torch.nn.Module.load_state_dict = original
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="timed images")
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_network()
    images = torch.rand(args.n, 3, 32, 32)
    with torch.no_grad():
        t0 = time.perf_counter()
        model(images[:args.batch_size])
        warmup = time.perf_counter() - t0
        t0 = time.perf_counter()
        feats = [model(images[i:i + args.batch_size])[0]
                 for i in range(0, args.n, args.batch_size)]
        seconds = time.perf_counter() - t0
    assert feats[0].shape[1:] == (2048, 1, 1), feats[0].shape
    result = {"images_per_sec": args.n / seconds, "seconds": seconds, "warmup_seconds": warmup,
              "n_images": args.n, "batch_size": args.batch_size, "threads": args.threads,
              "torch": torch.__version__, "network": "pytorch-fid InceptionV3 (FID), pool3"}
    print(json.dumps(result) if args.json else
          f"pytorch-fid InceptionV3: {result['images_per_sec']:.1f} images/s "
          f"({args.threads} threads, batch {args.batch_size})")


if __name__ == "__main__":
    main()

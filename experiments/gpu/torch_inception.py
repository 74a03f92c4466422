"""A speed reference for `gancmp bench --what fid`: torchvision's Inception-v3 (random weights,
eval mode, no_grad, no aux head) on the machine's torch, on the GPU when there is one, on the
same kind of input: 32×32×3 images in [0, 1] resized to 299×299 (bilinear) inside the timed
loop, at each batch size given. Products as the FID Inception's on that device: TF32 on a CUDA
GPU (`--precision auto` or `tensorfloat32`: cuDNN and matmul TF32 allowed), float32 otherwise.

torchvision's network is not the FID Inception (its last blocks pool differently), but it has
the same layers and nearly the same FLOPs per image (about 5.7 GMAC at 299×299), so its images/s
says what a mature GPU stack reaches on this network on this card.

  python experiments/gpu/torch_inception.py --batch_sizes 50,200,500 --batches 10 --json

prints one JSON line: {"by_batch": {"50": {images_per_sec, seconds, warmup_seconds}, ...},
device, torch, torchvision, precision}; without torch it prints one line saying so, and with
--json {"skipped": why}, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import time


def _import_torchvision(torch):
    """torchvision; a wheel built for another torch variant (a CUDA build on a CPU torch) fails
    to load its compiled ops, which Inception does not use: the two schemas its import registers
    fakes for are then declared first (as experiments/bench/torch_fid.py does)."""
    try:
        import torchvision
    except RuntimeError:
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            try:
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except RuntimeError:
                pass
        _import_torchvision.keep = lib
        import torchvision
    return torchvision


def _precision(torch, name: str, cuda: bool) -> str:
    """Sets torch's float32 product mode; returns what it is ("tensorfloat32" or "float32")."""
    tf32 = cuda and name in ("auto", "tensorfloat32")
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return "tensorfloat32" if tf32 else "float32"


def _time_batch(torch, model, device, batch: int, batches: int) -> dict:
    """Images/s of `batches` calls of `batch` random 32×32 images (after one warm-up call)."""
    import torch.nn.functional as F

    images = torch.rand(batches, batch, 3, 32, 32, device=device)

    def call(x):
        return model(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        t0 = time.perf_counter()
        out = call(images[0])
        sync()
        warmup = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(batches):
            out = call(images[i])
        sync()
        seconds = time.perf_counter() - t0
    assert tuple(out.shape) == (batch, 1000), out.shape
    return {"images_per_sec": batch * batches / seconds, "seconds": seconds,
            "warmup_seconds": warmup, "n_images": batch * batches, "batch_size": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", default="50,200,500")
    parser.add_argument("--batches", type=int, default=10, help="timed calls per batch size")
    parser.add_argument("--precision", default="auto",
                        choices=("auto", "tensorfloat32", "float32"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        import torch

        torchvision = _import_torchvision(torch)
    except (ImportError, RuntimeError, OSError) as e:  # also ops built for another torch
        why = f"torch/torchvision not importable here ({e}): the torch reference is skipped"
        print(json.dumps({"skipped": why}) if args.json else why)
        return
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    mode = _precision(torch, args.precision, cuda)
    model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    model = model.eval().to(device)
    by_batch = {b: _time_batch(torch, model, device, int(b), args.batches)
                for b in args.batch_sizes.split(",")}
    result = {"by_batch": by_batch, "precision": mode,
              "device": torch.cuda.get_device_name() if cuda else "cpu",
              "torch": torch.__version__, "torchvision": torchvision.__version__,
              "network": "torchvision inception_v3 (random weights, no aux head)"}
    print(json.dumps(result) if args.json else "\n".join(
        f"torchvision Inception-v3, batch {b}: {r['images_per_sec']:.1f} images/s ({mode})"
        for b, r in by_batch.items()))


if __name__ == "__main__":
    main()

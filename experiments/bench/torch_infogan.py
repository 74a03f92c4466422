"""The InfoGAN NS-GAN train step of `gancmp bench` in PyTorch eager mode, for comparison.

Same networks as gancmp/nets/infogan.py at 28×28×1 (the paper's MNIST networks), same optimizer,
batch and step: one D update then one G update with a fresh z, Adam(2e-4, β = (0.5, 0.999)),
batch 64, z ~ U[−1, 1]^64, real images random uniform in [0, 1] (compute, not data, is measured).

  G: FC1024–BN–lReLU → FC(128·7·7)–BN–lReLU → deconv64 4×4 s2 p1–BN–lReLU → deconv1 4×4 s2 p1 → σ
  D: conv64 4×4 s2 p1–lReLU → conv128 4×4 s2 p1–BN–lReLU → FC1024–BN–lReLU → FC1

lReLU slope 0.2, BN eps 1e-3; weights N(0, 0.02), biases 0. Runs on 2 threads by default.
Measured on the shared 2-core machine: with one other busy process, 2 threads take ~10× longer
per step than 1 thread (the two threads wait for each other), so compare on an idle machine or
also report `--threads 1`.

Usage (called by gancmp/bench/suite.py):
  python experiments/bench/torch_infogan.py --steps 10 --warmup 2 --json
prints one JSON line: step_ms (median), images_per_sec, step_ms_all, peak_rss_mb, and more.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

H = W = 28
C = 1
Z_DIM = 64


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(Z_DIM, 1024)
        self.bn1 = nn.BatchNorm1d(1024, eps=1e-3)
        self.fc2 = nn.Linear(1024, 128 * (H // 4) * (W // 4))
        self.bn2 = nn.BatchNorm1d(128 * (H // 4) * (W // 4), eps=1e-3)
        self.deconv3 = nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(64, eps=1e-3)
        self.deconv4 = nn.ConvTranspose2d(64, C, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = _lrelu(self.bn1(self.fc1(z)))
        x = _lrelu(self.bn2(self.fc2(x)))
        x = x.view(-1, 128, H // 4, W // 4)
        x = _lrelu(self.bn3(self.deconv3(x)))
        return torch.sigmoid(self.deconv4(x))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(C, 64, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(64, 128, 4, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(128, eps=1e-3)
        self.fc3 = nn.Linear(128 * (H // 4) * (W // 4), 1024)
        self.bn3 = nn.BatchNorm1d(1024, eps=1e-3)
        self.fc4 = nn.Linear(1024, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _lrelu(self.conv1(x))
        x = _lrelu(self.bn2(self.conv2(x)))
        x = _lrelu(self.bn3(self.fc3(x.flatten(1))))
        return self.fc4(x)[:, 0]


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


def train_step(g, d, opt_g, opt_d, real: torch.Tensor, batch: int) -> None:
    """One D update (NS-GAN: softplus(−D(x)) + softplus(D(G(z)))) and one G update
    (softplus(−D(G(z')))) with a fresh z'."""
    z = torch.rand(batch, Z_DIM) * 2 - 1
    with torch.no_grad():
        fake = g(z)
    d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    z = torch.rand(batch, Z_DIM) * 2 - 1
    g_loss = F.softplus(-d(g(z))).mean()
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()


def forward_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass, counted like gancmp/nets/flops.py: Linear in·out,
    Conv2d output elements · k²·C_in, ConvTranspose2d input pixels · C_in · C_out · k²."""
    total = 0

    def hook(m, inputs, out):
        nonlocal total
        inp = inputs[0]
        if isinstance(m, nn.Linear):
            total += inp.numel() // inp.shape[-1] * m.in_features * m.out_features
        elif isinstance(m, nn.ConvTranspose2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += inp.numel() * m.out_channels * k
        elif isinstance(m, nn.Conv2d):
            total += out.numel() * m.kernel_size[0] * m.kernel_size[1] * m.in_channels

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    was_training = module.training
    module.eval()
    with torch.no_grad():
        module(x)
    module.train(was_training)
    for h in handles:
        h.remove()
    return total


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def conv_peak_gflops(repeats: int = 5) -> float:
    """fp32 GFLOP/s of one 3×3 convolution through PyTorch's oneDNN kernels: batch 64,
    28×28×128 → 128, padding 1 (the same shape as `gancmp.bench.suite.gemm_peaks`' XLA one)."""
    x, w = torch.randn(64, 128, 28, 28), torch.randn(128, 128, 3, 3)
    flops = 2 * 64 * 28 * 28 * 128 * 128 * 9
    with torch.no_grad():
        torch.nn.functional.conv2d(x, w, padding=1)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.nn.functional.conv2d(x, w, padding=1)
            times.append(time.perf_counter() - t0)
    return flops / min(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g, d = Generator(), Discriminator()
    _init(g)
    _init(d)
    g.train()
    d.train()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(args.batch_size, C, H, W)

    for _ in range(args.warmup):
        train_step(g, d, opt_g, opt_d, real, args.batch_size)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        train_step(g, d, opt_g, opt_d, real, args.batch_size)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    # FLOPs as gancmp/nets/flops.py: D update = G fwd + 3·(D fwd + bwd); G update = 3·G fwd
    # (fwd + bwd) + 2·D fwd (fwd + input gradient); one multiply-add = 2 FLOPs.
    f_g = forward_macs(g, torch.zeros(args.batch_size, Z_DIM))
    f_d = forward_macs(d, torch.zeros(args.batch_size, C, H, W))
    flops = 2 * ((f_g + 3 * 2 * f_d) + (3 * f_g + 2 * f_d))
    result = {
        "config": "ns_gan infogan 28x28x1 (PyTorch eager)",
        "batch_size": args.batch_size, "disc_iters": 1, "trials": 1, "devices": 1,
        "device_kind": f"cpu ({args.threads} threads)", "torch": torch.__version__,
        "python": platform.python_version(),
        "step_ms": 1e3 * step_s,
        "images_per_sec": args.batch_size / step_s,
        "gflop_per_step": flops / 1e9,
        "gflops_per_sec": flops / 1e9 / step_s,
        "step_ms_all": [1e3 * t for t in times],
        "peak_rss_mb": _peak_rss_mb(),
        "onednn_conv_gflops": conv_peak_gflops(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"PyTorch {torch.__version__} InfoGAN step, batch {args.batch_size}, "
              f"{args.threads} threads: {result['step_ms']:.1f} ms "
              f"({result['images_per_sec']:.0f} images/s)")


if __name__ == "__main__":
    main()

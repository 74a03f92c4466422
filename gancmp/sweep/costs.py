"""The accelerators a plan prices (`gancmp plan --accelerator`), from their published peak rates,
and the utilisation assumed of them, stated here rather than hidden.

Peak rates are dense (no sparsity), per chip, from the vendors' spec sheets: TPU v4 275 TFLOP/s
bf16 (32 GiB HBM), v5e 197 (16 GiB), v5p 459 (95 GiB), v6e (Trillium) 918 (32 GiB); H100 SXM
989 bf16, 495 TF32, 67 float32 (80 GB). A TPU multiplies float32 in bf16 passes
(`precision.TPU_PASSES`: 3 for bfloat16_3x, 6 for float32), so its rate is the bf16 peak over
the passes. This CPU's peak is cores × clock × float32 FLOPs per cycle (32 with AVX2 FMA, 64
with AVX-512), read from /proc/cpuinfo.

Utilisation (the fraction of peak the estimate assumes): `TRAIN_UTILISATION` for the GAN steps —
small convolutions at batch 64 per trial, vmapped over the trials of a chip, which keeps matrix
units far from full (a guess for accelerators, to be replaced by `gancmp bench` numbers once one
has run; on this CPU, checked against a measured sweep: see experiments/tpu/README.md);
`EVAL_UTILISATION` for Inception on 299×299 images in large batches. Each program also costs
`COMPILE_S` seconds of compilation once per process, on the critical path unless the runner
compiles it while an earlier group trains (`gancmp.sweep.ahead`).
"""

from __future__ import annotations

import dataclasses
import os
import re

from gancmp import precision

TRAIN_UTILISATION = {"tpu": 0.3, "gpu": 0.3, "cpu": 0.25}
EVAL_UTILISATION = {"tpu": 0.5, "gpu": 0.5, "cpu": 0.4}
COMPILE_S = {"tpu": 40.0, "gpu": 40.0, "cpu": 20.0}


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """A machine a sweep may run on: `chips` devices of `device_bytes` each."""

    name: str
    backend: str  # "tpu", "gpu" or "cpu"
    chips: int
    device_bytes: int | None
    bf16_flops: float  # per chip, dense
    tf32_flops: float = 0.0
    fp32_flops: float = 0.0

    def rate(self, matmul_precision: str, compute_dtype: str = "float32") -> float:
        """FLOP/s of all chips at peak for products computed as `matmul_precision` says."""
        if self.backend == "cpu":
            return self.chips * self.fp32_flops
        if compute_dtype == "bfloat16" or matmul_precision == "bfloat16":
            per_chip = self.bf16_flops
        elif self.backend == "tpu":
            per_chip = self.bf16_flops / precision.TPU_PASSES[matmul_precision]
        else:
            per_chip = self.tf32_flops if matmul_precision == "tensorfloat32" else self.fp32_flops
        return self.chips * per_chip


GIB = 2**30
ACCELERATORS = {
    "v4-8": Accelerator("v4-8", "tpu", 4, 32 * GIB, 275e12),
    "v5e-8": Accelerator("v5e-8", "tpu", 8, 16 * GIB, 197e12),
    "v5p-8": Accelerator("v5p-8", "tpu", 4, 95 * GIB, 459e12),
    "v6e-8": Accelerator("v6e-8", "tpu", 8, 32 * GIB, 918e12),
    "8xH100": Accelerator("8xH100", "gpu", 8, 80 * 10**9, 989e12, 495e12, 67e12),
    "1xH100": Accelerator("1xH100", "gpu", 1, 80 * 10**9, 989e12, 495e12, 67e12),
}


def this_cpu() -> Accelerator:
    """This machine's CPU, one device per core (what `gancmp sweep` splits it into)."""
    cores = os.cpu_count() or 1
    ghz, per_cycle = 2.0, 32
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
        mhz = re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)
        ghz = float(mhz[0]) / 1000 if mhz else ghz
        per_cycle = 64 if " avx512f" in info else 32 if " fma" in info else 16
    except OSError:
        pass
    return Accelerator("cpu", "cpu", cores, None, 0.0, fp32_flops=ghz * 1e9 * per_cycle)


def accelerators() -> dict[str, Accelerator]:
    """Every accelerator a plan prices, this CPU last (as "cpu")."""
    return {**ACCELERATORS, "cpu": this_cpu()}


def train_seconds(acc: Accelerator, flop: float, matmul_precision: str,
                  compute_dtype: str) -> float:
    """Seconds of training `flop` FLOPs on all of `acc`'s chips at `TRAIN_UTILISATION`."""
    return flop / (acc.rate(matmul_precision, compute_dtype) * TRAIN_UTILISATION[acc.backend])


def eval_seconds(acc: Accelerator, flop: float, matmul_precision: str) -> float:
    """Seconds of evaluating `flop` FLOPs with products computed as `matmul_precision` says (the
    metric network's own precision for its part, `precision.resolve_metric`) at
    `EVAL_UTILISATION`."""
    return flop / (acc.rate(matmul_precision) * EVAL_UTILISATION[acc.backend])


def hours_parts(acc: Accelerator, train_flop: float, eval_flop: float, compile_s: float,
                matmul_precision: str, compute_dtype: str, metric_flop: float = 0.0,
                metric_precision: str = "float32") -> dict[str, float]:
    """Estimated wall hours on `acc` by what they are spent on: {"train", "eval", "compile"}:
    training and evaluation FLOPs at the stated utilisation of its peak for their precision
    (`metric_flop` of `eval_flop`, the metric network's, at `metric_precision`; the rest at the
    training `matmul_precision`), and `compile_s` seconds of compilation that nothing overlaps
    (`gancmp.sweep.plan`)."""
    evaluate = (eval_seconds(acc, eval_flop - metric_flop, matmul_precision)
                + eval_seconds(acc, metric_flop, metric_precision))
    return {"train": train_seconds(acc, train_flop, matmul_precision, compute_dtype) / 3600,
            "eval": evaluate / 3600, "compile": compile_s / 3600}


def hours(acc: Accelerator, train_flop: float, eval_flop: float, compile_s: float,
          matmul_precision: str, compute_dtype: str, metric_flop: float = 0.0,
          metric_precision: str = "float32") -> float:
    """Estimated wall hours on `acc`: the sum of `hours_parts`."""
    return sum(hours_parts(acc, train_flop, eval_flop, compile_s, matmul_precision,
                           compute_dtype, metric_flop, metric_precision).values())

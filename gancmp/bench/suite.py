"""`gancmp bench --what all`: the benchmark suite behind experiments/bench/RESULTS.md.

Every figure is measured in this one run, on this machine: the train step of InfoGAN (28×28,
batch 64), DCGAN-size InfoGAN (32×32) and the ring MLP, against two peaks measured alongside (the
machine's fp32 GEMM through numpy/OpenBLAS at 2048², and XLA's own jitted matmul); the same InfoGAN
step in PyTorch (when torch is importable by `--torch_python`), alternating with ours; sweep
throughput for K = 1, 4, 16 vmapped trials; FID feature extraction. Each measurement runs in its
own process so that its peak host memory (VmHWM) is its own.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from gancmp import storage

# the checkout this package runs from (a local path by construction)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TORCH_SCRIPT = os.path.join(ROOT, "experiments", "bench", "torch_infogan.py")
TORCH_FID_SCRIPT = os.path.join(ROOT, "experiments", "bench", "torch_fid.py")


PER_CORE = ", one device per core"


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def gemm_peaks(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """fp32 GFLOP/s of an n×n matmul, numpy (OpenBLAS sgemm) and XLA (jitted jnp.dot), and of a
    3×3 convolution through XLA (the torch reference adds oneDNN's on the same shape)."""
    import jax
    import jax.numpy as jnp

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)

    def best(fn, flops: float = 2 * n**3) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / min(times) / 1e9

    dot = jax.jit(jnp.dot)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    peaks = {"numpy_sgemm_gflops": best(lambda: a @ b),
             "xla_matmul_gflops": best(lambda: dot(ja, jb).block_until_ready())}
    # One 3×3 convolution, batch 64, 28×28×128 → 128 (as torch_infogan.py's oneDNN one).
    x = jnp.asarray(np.random.default_rng(2).standard_normal((64, 28, 28, 128), np.float32))
    w = jnp.asarray(np.random.default_rng(3).standard_normal((3, 3, 128, 128), np.float32))
    conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    peaks["xla_conv_gflops"] = best(lambda: conv(x, w).block_until_ready(),
                                    2 * 64 * 28 * 28 * 128 * 128 * 9)
    return peaks


def _child(args: Sequence[str], python: str | None = None, timeout: int = 1800) -> dict[str, Any]:
    """Runs one `gancmp bench ... --json` measurement in its own process."""
    cmd = [python or sys.executable, "-m", "gancmp.cli", "bench", *args, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _torch(python: str, steps: int, warmup: int) -> dict[str, Any]:
    return _script(python, TORCH_SCRIPT, ["--steps", str(steps), "--warmup", str(warmup)])


def _script(python: str, script: str, args: Sequence[str]) -> dict[str, Any]:
    """Runs a comparison script (`--json`: its last stdout line is one JSON object)."""
    cmd = [python, script, *args, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_python(candidate: str | None) -> str | None:
    """A python that can import torch: `candidate`, else this one, else None."""
    for py in (candidate, sys.executable):
        if py and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
            return py
    return None


def run(torch_py: str | None = None, rounds: int = 3, calls: int = 10) -> dict[str, Any]:
    """All measurements; InfoGAN ours/torch alternate `rounds` times."""
    results: dict[str, Any] = {"date": datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds"), "machine": _machine()}
    results["peaks"] = gemm_peaks()
    infogan = "configs/mnist_infogan.py"
    torch_py = torch_python(torch_py)
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(_child(["--config", infogan, "--calls", str(calls)]))
        if torch_py:
            theirs.append(_torch(torch_py, steps=calls, warmup=2))
    results["infogan"] = _median_run(ours)
    results["torch_infogan"] = _median_run(theirs) if theirs else None
    if theirs and "onednn_conv_gflops" in theirs[0]:
        results["peaks"]["onednn_conv_gflops"] = max(t["onednn_conv_gflops"] for t in theirs)
    results["dcgan32"] = _child(["--config", "configs/cifar10_dcgan.py", "--calls", str(calls)])
    results["ring_mlp"] = _child(["--config", "configs/ring8_mlp.py", "--calls", str(calls)])
    per_core = ["--cpu_devices", "0", "--config.parallelism=trials"]
    polygons = ["--config.width_multiplier=0.25", "--config.dataset=triangles"]
    cores = results["machine"]["cores"]
    results["sweep"] = {
        name: {k: _child(["--config", cfg, "--trials", str(k), "--calls", str(calls), *extra])
               for k in ks}
        for name, cfg, extra, ks in (
            ("ring_mlp", "configs/ring8_mlp.py", [], (1, 4, 16)),
            (f"ring_mlp{PER_CORE}", "configs/ring8_mlp.py", per_core, (cores, 4, 16)),
            ("polygons_infogan_w0.25", "configs/polygons_infogan.py", polygons, (1, 4, 16)),
            (f"polygons_infogan_w0.25{PER_CORE}", "configs/polygons_infogan.py",
             polygons + per_core, (cores, 4)),
        )}
    results["sweep_run"] = {
        name: {k: _child(["--what", "sweep_run", "--config", "configs/ring8_mlp.py",
                          "--trials", str(k), *extra]) for k in ks}
        for name, extra, ks in (("ring_mlp", [], (1, 4, 16)),
                                (f"ring_mlp{PER_CORE}", ["--cpu_devices", "0"], (cores, 4, 16)))}
    fid_ours, fid_theirs = [], []
    for _ in range(rounds):  # alternating, as for the train step
        fid_ours.append(_child(["--what", "fid"]))
        if torch_py:
            fid_theirs.append(_script(torch_py, TORCH_FID_SCRIPT, ["--n", "200"]))
    results["fid_features"] = _median_by(fid_ours, "images_per_sec")
    theirs_fid = _median_by(fid_theirs, "images_per_sec")
    if "images_per_sec" in theirs_fid:
        results["fid_features"]["torch_images_per_sec"] = theirs_fid["images_per_sec"]
    results["torch_fid_features"] = theirs_fid or None
    return results


def _median_by(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    good = sorted((r for r in runs if key in r), key=lambda r: r[key])
    if not good:
        return runs[0] if runs else {}
    return {**good[len(good) // 2], f"{key}_rounds": [r[key] for r in good]}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "step_ms" in r]
    if not good:
        return runs[0] if runs else {}
    mid = sorted(good, key=lambda r: r["step_ms"])[len(good) // 2]
    return {**mid, "step_ms_rounds": [r["step_ms"] for r in good]}


def _machine() -> dict[str, Any]:
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": jax.device_count()}


def table(results: dict[str, Any]) -> str:
    """The Markdown table of RESULTS.md."""
    peaks = results["peaks"]
    sgemm, xla = peaks["numpy_sgemm_gflops"], peaks["xla_matmul_gflops"]
    lines = [
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores; "
        f"JAX {results['machine']['jax']} ({results['machine']['backend']}); "
        f"Python {results['machine']['python']}; {results['date']}.", "",
        f"Peaks measured in this run: numpy/OpenBLAS sgemm 2048² = {sgemm:.0f} GFLOP/s, "
        f"XLA jitted matmul = {xla:.0f} GFLOP/s; a 3×3 convolution (batch 64, 28×28×128 → 128) "
        f"through XLA = {peaks.get('xla_conv_gflops', float('nan')):.0f} GFLOP/s"
        + (f", through PyTorch's oneDNN = {peaks['onednn_conv_gflops']:.0f} GFLOP/s"
           if "onednn_conv_gflops" in peaks else "") + ".", "",
        "| measurement | ms/step | images/s | GFLOP/s | % sgemm peak | % XLA peak | peak RSS MB |",
        "|---|---|---|---|---|---|---|"]

    def row(name: str, r: dict[str, Any] | None) -> None:
        if not r or "step_ms" not in r:
            lines.append(f"| {name} | {(r or {}).get('error', 'not run')} | | | | | |")
            return
        gf = r.get("gflops_per_sec", float("nan"))
        lines.append(f"| {name} | {r['step_ms']:.1f} | {r['images_per_sec']:.0f} | {gf:.1f} | "
                     f"{100 * gf / sgemm:.0f} % | {100 * gf / xla:.0f} % | "
                     f"{r.get('peak_rss_mb', float('nan')):.0f} |")

    row("InfoGAN 28×28 NS-GAN step, bs 64 (gancmp)", results["infogan"])
    row("InfoGAN 28×28 NS-GAN step, bs 64 (PyTorch eager, 2 threads)", results["torch_infogan"])
    row("DCGAN 32×32×3 NS-GAN step, bs 64 (compare_gan v1 layers)", results["dcgan32"])
    row("ring MLP step, bs 256", results["ring_mlp"])
    ours, theirs = results["infogan"], results["torch_infogan"]
    if theirs and "step_ms" in theirs and "step_ms" in ours:
        lines += ["", f"InfoGAN images/s, gancmp / PyTorch: "
                  f"{ours['images_per_sec'] / theirs['images_per_sec']:.2f}× "
                  f"(medians of {len(ours['step_ms_rounds'])} alternating rounds)."]
    cores = results["machine"]["cores"]
    lines += ["", "Sweep throughput of the train step alone, trials/hour at each config's budget, "
              f"K trials per group ({PER_CORE.strip(', ')}: K/{cores} per device, as "
              "`gancmp sweep` runs on CPU):", ""]
    lines += _throughput_table(results["sweep"])
    ring_k1 = (results["sweep"].get("ring_mlp", {}).get("1") or results["sweep"].get(
        "ring_mlp", {}).get(1) or {}).get("gflops_per_sec")
    if ring_k1:
        lines += ["", f"A ring trial alone already computes at {ring_k1:.0f} GFLOP/s, so no group "
                  f"on this machine can beat K = 1 by more than the XLA matmul peak allows: "
                  f"{xla:.0f} / {ring_k1:.0f} = {xla / ring_k1:.1f}× (compute only)."]
    if results.get("sweep_run"):
        lines += ["", "The sweep runner end to end (`gancmp bench --what sweep_run`): 16 ring "
                  "trials at the config's budget in groups of K, compilation (fresh cache), "
                  "initialisation, checkpoints, evaluations and sample plots included:", ""]
        lines += _throughput_table(results["sweep_run"])
    fid = results.get("fid_features") or {}
    if "images_per_sec" in fid:
        lines += ["", f"FID features (Inception-v3 pool3, 32×32 inputs resized to 299): "
                  f"{fid['images_per_sec']:.1f} images/s"
                  + (f"; pytorch-fid on the same CPU: {fid['torch_images_per_sec']:.1f} "
                     f"images/s ({fid['images_per_sec'] / fid['torch_images_per_sec']:.2f}×, "
                     f"medians of alternating rounds)" if fid.get("torch_images_per_sec") else "")
                  + "."]
    return "\n".join(lines)


def _throughput_table(rows: dict[str, dict[Any, dict[str, Any]]]) -> list[str]:
    """Trials/hour per K for each row, and the best against K = 1 on one device."""
    ks = sorted({int(k) for by_k in rows.values() for k in by_k})
    lines = ["| model | " + " | ".join(f"K = {k}" for k in ks)
             + " | best / K = 1 on one device | peak RSS MB (largest K) |",
             "|---|" + "---|" * (len(ks) + 2)]
    for name, by_k in rows.items():
        tph = {int(k): r.get("trials_per_hour") for k, r in by_k.items()}
        base = rows.get(name.removesuffix(PER_CORE), {})
        base_tph = (base.get(1) or base.get("1") or {}).get("trials_per_hour")
        if not all(tph.values()) or not base_tph:
            err = next((r.get("error") for r in by_k.values() if "error" in r), "")
            lines.append(f"| {name} | {err} |" + " |" * (len(ks) + 1))
            continue
        largest = by_k[max(by_k, key=int)]
        lines.append(f"| {name} | " + " | ".join(f"{tph[k]:.0f}" if k in tph else ""
                                                 for k in ks)
                     + f" | {max(tph.values()) / base_tph:.1f}× | "
                     f"{largest.get('peak_rss_mb', float('nan')):.0f} |")
    return lines


SUITE_END = "<!-- /gancmp bench --what all -->"


def write(results: dict[str, Any], path: str) -> str:
    """Writes the suite's results at the top of `path`, replacing only the suite's own section
    (up to `SUITE_END`) and keeping what follows it: the feature networks section (`gancmp bench
    --what features`) and the hand-written measurements (profiles, the Ray engine's overhead)."""
    storage.write_atomic(
        path, "# Benchmarks\n\nWritten by `gancmp bench --what all` (all numbers from one run)."
        "\n\n" + table(results) + "\n\n<details><summary>raw</summary>\n\n```json\n"
        + json.dumps(results, indent=1, default=str) + "\n```\n</details>\n" + SUITE_END
        + "\n\n" + after_suite(storage.read_text(path) if storage.exists(path) else ""))
    return path


def after_suite(old: str) -> str:
    """What follows the suite's section in the text `old` of RESULTS.md: after `SUITE_END`; in
    a file written before that marker, after the suite's raw-results block; in a file without
    the suite's section, all of it but its title."""
    if SUITE_END in old:
        return old.split(SUITE_END, 1)[1].lstrip("\n")
    if "<details><summary>raw</summary>" in old:
        return old.split("<details><summary>raw</summary>", 1)[1].split(
            "\n</details>\n", 1)[-1].lstrip("\n")
    return old.removeprefix("# Benchmarks").lstrip("\n")


FEATURES_BEGIN = "<!-- feature networks: gancmp bench --what features -->"
FEATURES_END = "<!-- /feature networks -->"


def write_section(text: str, path: str) -> str:
    """Puts `text` (a feature networks section, FEATURES_BEGIN … FEATURES_END) into the file
    at `path`, replacing the section there if any, else appended."""
    old = storage.read_text(path) if storage.exists(path) else "# Benchmarks\n"
    storage.write_atomic(path, replace_section(old, text))
    return path


def replace_section(old: str, text: str) -> str:
    """`old` with its feature networks section replaced by `text` (appended when it has
    none)."""
    if FEATURES_BEGIN in old and FEATURES_END in old:
        head, rest = old.split(FEATURES_BEGIN, 1)
        return head + text + rest.split(FEATURES_END, 1)[1]
    return old.rstrip("\n") + "\n\n" + text + "\n"

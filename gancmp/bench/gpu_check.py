"""The summary of experiments/gpu/check.sh: its measurements side by side, as Markdown to paste
into experiments/bench/RESULTS.md, and all of them in one JSON file.

    python -m gancmp.bench.gpu_check summary OUT_DIR [--plan_k 16]
    python -m gancmp.bench.gpu_check versions      (one JSON line: what ran, on what)

reads what the check's steps left in OUT_DIR (each step's last stdout line is one JSON object):
`versions.json`, `infogan_k<K>.json` (`gancmp bench --json`), `infogan_fixed.json` (the same
at one K with the loop count fixed),
`fid.json` (`gancmp bench --what fid --fid_batch_sizes …`), `torch_inception.json`,
`sweep.json` (the tiny sweep's wall time; its records in `sweep-results.jsonl`), `plan.json`
(`gancmp plan --json`) and `steps.tsv` (name, limit, seconds, status of every step), and writes
`check.md` and `check.json` there.

Measured utilisation is achieved FLOP/s over the 1xH100 peak at the precision measured
(`costs.ACCELERATORS`; TF32 for a GPU's `auto`), with the FLOPs the plan counts: the train step's
from `nets.flops.train_step_flops`, Inception's from `plan.inception_flops`. The plan's hours are
then re-priced with them: its training hours × assumed / measured train utilisation (the trials
per chip of the plan's 1xH100 layout, `--plan_k`, else the largest K measured), its evaluation
hours × assumed / measured Inception utilisation at the FID batch size sweeps use (50,
`config.fid.batch_size`), compilation as the plan has it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from gancmp import storage
from gancmp.sweep import costs

H100 = costs.ACCELERATORS["1xH100"]
FID_BATCH = "50"  # config.fid.batch_size: what a sweep's evaluation runs Inception at


def load(out: str, name: str) -> dict[str, Any]:
    """The last line of `out`/`name`.json as a dict; {} when missing or not JSON."""
    try:
        lines = storage.read_text(storage.join(out, name + ".json")).strip().splitlines()
        value = json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def utilisation(gflops_per_sec: float | None, matmul_precision: str | None) -> float | None:
    """Achieved GFLOP/s as a fraction of one H100's peak at `matmul_precision`."""
    if not gflops_per_sec or not matmul_precision:
        return None
    return gflops_per_sec * 1e9 / H100.rate(matmul_precision)


def repriced_hours(plan: Mapping[str, Any], train_u: float | None, eval_u: float | None
                   ) -> dict[str, float] | None:
    """The plan's 1xH100 hours by part with its assumed utilisations replaced by measured ones
    (a part whose measurement is missing keeps the plan's); None without the plan's parts."""
    parts = plan.get("hours_parts")
    if not parts or plan.get("accelerator") != "1xH100":
        return None
    assumed = plan.get("utilisation") or {"train": costs.TRAIN_UTILISATION,
                                          "eval": costs.EVAL_UTILISATION}
    train = parts["train"] * (assumed["train"]["gpu"] / train_u if train_u else 1.0)
    ev = parts["eval"] * (assumed["eval"]["gpu"] / eval_u if eval_u else 1.0)
    return {"train": train, "eval": ev, "compile": parts["compile"],
            "total": train + ev + parts["compile"]}


def _fmt(value: float | None, spec: str = ".3g", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _rate(x: float | None) -> str:
    """Images/s: whole numbers, 3 significant digits below 100."""
    return "n/a" if x is None else f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _pct(u: float | None) -> str:
    return "n/a" if u is None else f"{100 * u:.1f} %"


def train_rows(bench: Mapping[str, dict], fixed: Mapping[str, Any]) -> list[str]:
    """The train-step table, K by K, and the loop-kind comparison."""
    lines = ["| K | loop | iterations/call | step ms (all K) | images/s | GFLOP/s | % of H100 peak "
             "| trials/hour at the budget | first call s |", "|---" * 9 + "|"]
    for k, r in bench.items():
        if "step_ms" not in r:
            lines.append(f"| {k} | {r.get('error', 'not run')} |" + " |" * 7)
            continue
        u = utilisation(r.get("gflops_per_sec"), r.get("matmul_precision"))
        lines.append(f"| {k} | {r.get('loop', '?')} | {r.get('steps_per_call')} | "
                     f"{r['step_ms']:.2f} | {_rate(r['images_per_sec'])} | "
                     f"{r['gflops_per_sec']:.0f} | {_pct(u)} ({r.get('matmul_precision')}) | "
                     f"{r['trials_per_hour']:.3g} | {_fmt(r.get('first_call_s'), '.1f')} |")
    arg = bench.get(str(fixed.get("trials"))) or {}
    if fixed.get("step_ms") and arg.get("step_ms"):
        same = fixed.get("steps_per_call") == arg.get("steps_per_call")
        lines += ["", f"K = {fixed['trials']}, loop count an argument / fixed at "
                  f"{arg['steps_per_call']} and {fixed['steps_per_call']} iterations per call"
                  f"{'' if same else ' (NOT the same: not comparable)'}: "
                  f"{arg['step_ms']:.3f} / {fixed['step_ms']:.3f} ms = "
                  f"{arg['step_ms'] / fixed['step_ms']:.3f}× the step time "
                  f"({1e3 * (arg['step_ms'] - fixed['step_ms']):+.0f} µs per iteration)."]
    return lines


def fid_rows(fid: Mapping[str, Any], torch: Mapping[str, Any]) -> list[str]:
    """The FID-features table: gancmp beside torchvision, batch size by batch size."""
    if "by_batch" not in fid:
        return [f"FID features: {fid.get('error', 'not run')}"]
    mp = fid.get("matmul_precision")
    theirs = torch.get("by_batch") or {}
    lines = [f"FID Inception features (random weights, 32×32 inputs resized to 299, products "
             f"{mp}; {fid['flop_per_image'] / 1e9:.1f} GFLOP per image), beside torchvision's "
             f"Inception-v3 ({torch.get('skipped') or torch.get('precision', 'not run')}):", "",
             "| batch | gancmp images/s | GFLOP/s | % of H100 peak | torchvision images/s | "
             "gancmp / torchvision | first call s |", "|---" * 7 + "|"]
    for b, r in fid["by_batch"].items():
        t = (theirs.get(b) or {}).get("images_per_sec")
        ratio = r["images_per_sec"] / t if t else None
        lines.append(f"| {b} | {_rate(r['images_per_sec'])} | {r['gflops_per_sec']:.0f} | "
                     f"{_pct(utilisation(r['gflops_per_sec'], mp))} | {_rate(t)} | "
                     f"{_fmt(ratio, '.2f', '×')} | {_fmt(r.get('warmup_seconds'), '.1f')} |")
    return lines


def measured_utilisations(bench: Mapping[str, dict], fid: Mapping[str, Any],
                          plan_k: int | None) -> tuple[float | None, float | None, str]:
    """(train, eval) utilisation to re-price the plan with, and which measurements they are:
    the train step at `plan_k` trials (else the largest K measured), Inception at batch
    `FID_BATCH` (else the first measured)."""
    ks = [k for k, r in bench.items() if "gflops_per_sec" in r]
    k = str(plan_k) if plan_k is not None and str(plan_k) in ks else (
        max(ks, key=int) if ks else None)
    train = (utilisation(bench[k]["gflops_per_sec"], bench[k].get("matmul_precision"))
             if k else None)
    by_batch = fid.get("by_batch") or {}
    b = FID_BATCH if FID_BATCH in by_batch else next(iter(by_batch), None)
    ev = utilisation((by_batch.get(b) or {}).get("gflops_per_sec"), fid.get("matmul_precision"))
    return train, ev, f"train step at K = {k}, Inception at batch {b}"


def plan_rows(plan: Mapping[str, Any], train_u: float | None, eval_u: float | None,
              which: str) -> list[str]:
    """The plan's 1xH100 hours, assumed against measured utilisation."""
    if "hours_parts" not in plan:
        return [f"plan: {plan.get('error', 'not run')}"]
    p, u = plan["hours_parts"], plan["utilisation"]
    new = repriced_hours(plan, train_u, eval_u)
    return [f"`gancmp plan` on {plan['accelerator']} ({plan['trials']:,} trials, "
            f"{plan['programs']} programs):", "",
            "| | train utilisation | eval utilisation | train h | eval h | compile h | "
            "total h |", "|---" * 7 + "|",
            f"| assumed (sweep/costs.py) | {u['train']['gpu']} | {u['eval']['gpu']} | "
            f"{p['train']:.1f} | {p['eval']:.1f} | {p['compile']:.2f} | "
            f"{sum(p.values()):.1f} |",
            f"| measured ({which}) | {_fmt(train_u)} | {_fmt(eval_u)} | "
            f"{new['train']:.1f} | {new['eval']:.1f} | {new['compile']:.2f} | "
            f"{new['total']:.1f} |" if new else "| measured | n/a | n/a | | | | |"]


def _steps(out: str) -> list[str]:
    lines = ["| step | limit s | took s | status |", "|---|---|---|---|"]
    try:
        text = storage.read_text(storage.join(out, "steps.tsv"))
        rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    except OSError:
        rows = []
    return lines + [f"| {' | '.join(r)} |" for r in rows if len(r) == 4]


def _sweep(out: str) -> tuple[list[str], dict[str, Any]]:
    records, _ = storage.read_jsonl(storage.join(out, "sweep-results.jsonl"))
    run = load(out, "sweep")
    status = {}
    for r in records:
        status[r.get("status")] = status.get(r.get("status"), 0) + 1
    best = [(r.get("best") or {}).get("value") for r in records]
    line = (f"Tiny sweep (experiments/gpu/tiny_sweep.py): {len(records)} trials recorded "
            f"({', '.join(f'{n} {s}' for s, n in status.items()) or 'none'}) in "
            f"{_fmt(run.get('wall_s'), '.0f', ' s')}; best {records[0].get('metric') or 'metric'}"
            f" per trial: {', '.join(_fmt(v, '.3g') for v in best)}." if records else
            f"Tiny sweep: no records (exit status {run.get('rc', 'n/a')}).")
    return [line], {"records": len(records), "status": status, **run}


def summary(out: str, plan_k: int | None = 16) -> tuple[str, dict[str, Any]]:
    """(Markdown, everything as one dict) from the files the check left in `out`."""
    versions = load(out, "versions")
    ks = sorted((n[len("infogan_k"):-len(".json")] for n in storage.listdir(out)
                 if n.startswith("infogan_k") and n.endswith(".json")
                 and "fixed" not in n), key=int)
    bench = {k: load(out, f"infogan_k{k}") for k in ks}
    fixed, fid, torch = (load(out, "infogan_fixed"), load(out, "fid"),
                         load(out, "torch_inception"))
    plan = load(out, "plan")
    train_u, eval_u, which = measured_utilisations(bench, fid, plan_k)
    sweep_lines, sweep = _sweep(out)
    gpu = f"; nvidia-smi: {versions['gpu']}" if versions.get("gpu") else ""
    md = [f"## GPU check ({versions.get('date', '?')}): {versions.get('device_kind', '?')}", "",
          f"experiments/gpu/check.sh; JAX {versions.get('jax', '?')} "
          f"({versions.get('backend', '?')}), Python {versions.get('python', '?')}, torch "
          f"{versions.get('torch') or 'absent'}{gpu}.", "", *_steps(out), "",
          "InfoGAN 28×28 NS-GAN train step, batch 64, K vmapped trials on one device:", "",
          *train_rows(bench, fixed), "", *fid_rows(fid, torch), "", *sweep_lines, "",
          *plan_rows(plan, train_u, eval_u, which)]
    data = {"versions": versions, "bench": bench, "loop_fixed": fixed, "fid": fid,
            "torch_inception": torch, "sweep": sweep, "plan": plan,
            "measured_utilisation": {"train": train_u, "eval": eval_u, "which": which},
            "repriced_hours": repriced_hours(plan, train_u, eval_u)}
    return "\n".join(md) + "\n", data


def versions() -> dict[str, Any]:
    """What ran: the date, Python and package versions, JAX's backend and devices, and the GPU as
    nvidia-smi names it (name, driver, memory, max SM clock), when there is one."""
    import datetime
    import platform
    import subprocess
    from importlib import metadata

    import jax

    out: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "backend": jax.default_backend(),
        "devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind}
    for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml_collections",
                 "tensorboardX", "matplotlib", "torch", "torchvision"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
             "--format=csv,noheader"]
    try:
        got = subprocess.run(query, capture_output=True, text=True, timeout=30)
        lines = got.stdout.strip().splitlines() if got.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):  # no NVIDIA driver here
        lines = []
    out["gpu"] = lines[0] if lines else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("versions", help="print versions and devices as one JSON line")
    summ = sub.add_parser("summary", help="write OUT/check.md and OUT/check.json, print the md")
    summ.add_argument("out")
    summ.add_argument("--plan_k", type=int, default=16,
                      help="trials per chip of the plan's 1xH100 layout")
    args = parser.parse_args(argv)
    if args.command == "versions":
        print(json.dumps(versions()))
        return 0
    md, data = summary(args.out, args.plan_k)
    storage.write_atomic(storage.join(args.out, "check.md"), md)
    storage.write_atomic(storage.join(args.out, "check.json"),
                         json.dumps(data, indent=1, default=str) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

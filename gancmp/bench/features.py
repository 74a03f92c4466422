"""`gancmp bench --what features`: images/s of each metric feature network, ours beside the
torch reference in the same run, written to the "Feature networks" section of
experiments/bench/RESULTS.md (`suite.write_section`; `--what all` keeps it).

Ours: `gancmp bench --what feature_net --feature_network NAME --json` in its own process (the
full-size network with random weights: real shapes and cost), 32×32×3 images in [0, 1] resized
inside, float32 ("highest"), batch `batch_size` split over one CPU device, the CPU default of one
image per network pass. Theirs: pytorch-fid's InceptionV3 (experiments/bench/torch_fid.py), the
official DINOv2 `vit_large` and open_clip's ViT-L-14-336 visual tower
(experiments/bench/torch_features.py), float32, 2 threads, in the python `--torch_python` names.
Ours and theirs alternate, `rounds` times; the medians are reported.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from gancmp.bench import suite

TORCH_FEATURES_SCRIPT = os.path.join(suite.ROOT, "experiments", "bench", "torch_features.py")
BEGIN, END = suite.FEATURES_BEGIN, suite.FEATURES_END
IMAGES = {"inception": 50, "dinov2": 8, "clip": 4}  # timed images per run (CPU)
BATCH = {"inception": 50, "dinov2": 4, "clip": 4}
GOALS = {"inception": 1.5, "dinov2": 1.0, "clip": 1.0}  # issue 25's: ours / theirs at least


def ours(network: str, n: int | None = None, batch_size: int | None = None) -> dict[str, Any]:
    """Images/s of our extractor of `network` (random weights of the full-size network)."""
    from gancmp.metrics import features, networks

    extractor = networks.get(network).random(0, batch_size=batch_size or BATCH[network])
    result = dict(features.benchmark_features(extractor, n or IMAGES[network], (32, 32, 3)))
    result.update(network=network, precision=extractor.precision,
                  peak_rss_mb=suite.peak_rss_mb())
    return result


def _theirs(python: str, network: str, dinov2_repo: str | None) -> dict[str, Any]:
    n, batch = str(IMAGES[network]), str(BATCH[network])
    if network == "inception":
        return suite._script(python, suite.TORCH_FID_SCRIPT, ["--n", n, "--batch_size", batch])
    args = ["--network", network, "--n", n, "--batch_size", batch]
    if network == "dinov2":
        if not dinov2_repo:
            return {"error": "no --dinov2_repo (a checkout of facebookresearch/dinov2)"}
        args += ["--dinov2", dinov2_repo]
    return suite._script(python, TORCH_FEATURES_SCRIPT, args)


def run(torch_py: str | None, dinov2_repo: str | None = None, rounds: int = 3,
        networks: tuple[str, ...] = ("inception", "dinov2", "clip")) -> dict[str, Any]:
    """Every network, ours and theirs alternating `rounds` times: {network: {"ours": median
    run, "theirs": median run or an error}} and the machine."""
    torch_py = suite.torch_python(torch_py)
    results: dict[str, Any] = {"machine": {**suite._machine(),
                                           "date": datetime.date.today().isoformat()},
                               "rounds": rounds}
    for network in networks:
        mine, theirs = [], []
        for _ in range(rounds):
            mine.append(suite._child(["--what", "feature_net", "--feature_network", network]))
            if torch_py:
                theirs.append(_theirs(torch_py, network, dinov2_repo))
        results[network] = {"ours": suite._median_by(mine, "images_per_sec"),
                            "theirs": suite._median_by(theirs, "images_per_sec")
                            if theirs else {"error": "no python with torch"}}
    return results


def section(results: dict[str, Any]) -> str:
    """The RESULTS.md section: one row per network."""
    m = results["machine"]
    lines = [BEGIN, "## Feature networks", "",
             f"Written by `gancmp bench --what features` on {m.get('cpu', 'this CPU')} "
             f"({m.get('cores', '?')} cores), {m.get('date', '')}: images/s of 32×32 images "
             "through each metric network (resize inside), float32, random weights of the full "
             f"network, ours and the torch reference alternating {results.get('rounds', 1)} "
             "times in the same run (medians); the machine is shared, so single runs vary by "
             "up to ±30 %.", "",
             "| network | gancmp images/s | torch images/s | gancmp / torch | goal |",
             "|---|---|---|---|---|"]
    for network in ("inception", "dinov2", "clip"):
        if network not in results:
            continue
        ours_ = results[network]["ours"].get("images_per_sec")
        theirs = results[network]["theirs"].get("images_per_sec")
        ratio = f"{ours_ / theirs:.2f}×" if ours_ and theirs else "—"
        lines.append(f"| {network} | {_fmt(ours_, results[network]['ours'])} | "
                     f"{_fmt(theirs, results[network]['theirs'])} | {ratio} | "
                     f"≥ {GOALS[network]}× |")
    lines += ["", "<details><summary>raw</summary>", "", "```json",
              json.dumps(results, indent=1, default=str), "```", "</details>", END]
    return "\n".join(lines)


def _fmt(value: float | None, run: dict[str, Any]) -> str:
    return f"{value:.2f}" if value else f"({run.get('error', 'not run')})"

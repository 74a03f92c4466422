"""experiments/lucic2018/train_precision.py's analysis of the polygons study, on synthetic records:
the polygon metrics are higher-is-better (E[best of k] and the best are the largest values), a
diverged trial scores the worst (0), and a partial study pairs only the settings every run has."""

import importlib.util
import itertools
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "lucic2018", "train_precision.py")

# f1 per run, method, setting (precision and recall derived from it); None: the trial diverged.
F1 = {
    "float32:0": {"NS_GAN": [0.2, 0.5, 0.1, 0.4], "MM_GAN": [0.3, 0.0, 0.6, 0.2]},
    "float32:1": {"NS_GAN": [0.3, 0.4, 0.2, 0.6], "MM_GAN": [0.1, 0.2, 0.5]},  # setting 3: not yet
    "emulated_bfloat16:0": {"NS_GAN": [0.25, None, 0.3, 0.1], "MM_GAN": [0.4, 0.1, 0.3, 0.3]},
}


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_precision", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _record(spec: str, method: str, setting: int, f1: float | None) -> dict:
    rec = {"schema": 2, "trial_id": f"{spec}/{method}/{setting}", "study": "triangles",
           "phase": "shared", "method": method, "setting": setting, "seed": int(spec[-1]),
           "hparams": {"lr": 1e-3 * (setting + 1)}, "metric": "f1", "higher_is_better": True,
           "status": "diverged" if f1 is None else "finished"}
    if f1 is not None:
        rec["best"] = {"metric": "f1", "value": f1, "f1": f1, "precision": f1 / 2,
                       "recall": min(1.0, 2 * f1), "step": 100}
    return rec


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_precision")
    for spec, per_method in F1.items():
        folder = root / spec.replace(":", "_s")
        folder.mkdir()
        lines = [json.dumps(_record(spec, m, i, v))
                 for m, values in per_method.items() for i, v in enumerate(values)]
        (folder / "results-0.jsonl").write_text("\n".join(lines) + "\n")
    return str(root)


def _best_of_k(v: np.ndarray, k: int) -> float:
    """Mean over all k-subsets of the subset's largest value (brute force)."""
    return float(np.mean([max(c) for c in itertools.combinations(v, k)]))


def test_polygons_analysis_by_hand(script, workdir):
    study = script.STUDIES["polygons"]
    result = script.analyse(workdir, list(F1), 2, study)
    ref = np.array([0.2, 0.5, 0.1, 0.4])
    bf16 = np.array([0.25, 0.0, 0.3, 0.1])  # the diverged setting scores the worst F1, 0
    block = result["NS_GAN"]["f1"]
    assert block["runs"]["emulated_bfloat16:0"]["best"] == pytest.approx(0.3)
    assert block["runs"]["float32:0"]["best_of_2"] == pytest.approx(_best_of_k(ref, 2))
    assert block["emulated_bfloat16:0"]["mean_diff"] == pytest.approx(np.mean(bf16 - ref))
    assert block["emulated_bfloat16:0"]["best_of_k_diff"] == pytest.approx(
        _best_of_k(bf16, 2) - _best_of_k(ref, 2))
    # |Δ precision| against |Δ seed| per setting: exact sign-flip p over the 2^4 flips
    d = np.abs(bf16 - ref) - np.abs(np.array([0.3, 0.4, 0.2, 0.6]) - ref)
    flips = np.array(list(itertools.product((1, -1), repeat=4))) @ d / 4
    assert block["emulated_bfloat16:0"]["abs_vs_seed_p"] == pytest.approx(
        np.mean(np.abs(flips) >= abs(d.mean()) - 1e-12))
    assert result["NS_GAN"]["recall"]["runs"]["float32:0"]["best"] == pytest.approx(1.0)


def test_partial_study_pairs_common_settings(script, workdir):
    result = script.analyse(workdir, list(F1), 2, script.STUDIES["polygons"])
    mm = result["MM_GAN"]["precision"]  # float32:1 has settings 0-2 only
    ref, bf16 = np.array([0.3, 0.0, 0.6]) / 2, np.array([0.4, 0.1, 0.3]) / 2
    assert mm["runs"]["float32:0"]["mean"] == pytest.approx(ref.mean())
    assert mm["emulated_bfloat16:0"]["mean_diff"] == pytest.approx(np.mean(bf16 - ref))
    pooled = result["all"]["f1"]["float32:1"]  # 4 NS_GAN and 3 MM_GAN settings
    seed = np.array([0.1, -0.1, 0.1, 0.2, -0.2, 0.2, -0.1])
    assert pooled["mean_diff"] == pytest.approx(seed.mean())
    table = script.markdown(result, 2, script.STUDIES["polygons"].metrics)
    assert "| NS_GAN | f1 | emulated_bfloat16:0 |" in table and "kl_to_uniform" not in table

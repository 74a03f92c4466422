"""The scoring commands of issue 25 on the command line: prdc | prd | cmmd | fdinf on statistics
files (no network runs: the numbers equal the library's on the same features), the feature
network a statistics file records and its refusal, `--recursive` folders, `gancmp list
metrics`."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from gancmp.data import images as image_io
from gancmp.metrics import cmmd, fd_infinity, prd, prdc
from gancmp.metrics import stats_file as sf
from tests.helpers import CPU_COMPILE_FLAGS, ROOT, gancmp_command

DIM = 64


def _gancmp(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": CPU_COMPILE_FLAGS}
    return subprocess.run(gancmp_command(*args), cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def _stats(features: np.ndarray, source: str, network: str) -> sf.Statistics:
    f = features.astype(np.float64)
    provenance = {"preprocess": "tf1_legacy", "feature_dim": DIM, "weights_sha256": "0" * 64,
                  "network": "test features", "features": network}
    return sf.Statistics(f.mean(0), np.cov(f, rowvar=False), features, len(f), provenance,
                         source)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    rng = np.random.default_rng(0)
    feats = {"real": rng.standard_normal((400, DIM)).astype(np.float32),
             "fake": (1.2 * rng.standard_normal((400, DIM)) + 0.2).astype(np.float32)}
    paths = {}
    for name, f, network in (("real", feats["real"], "inception"),
                             ("fake", feats["fake"], "inception"),
                             ("clip", feats["fake"], "clip")):
        paths[name] = str(root / f"{name}.npz")
        sf.save_statistics(paths[name], _stats(f, paths[name], network))
    return {"root": root, "features": feats, "paths": paths}


def _json(*args):
    out = _gancmp(*args, "--dims", str(DIM), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_prdc_prd_cmmd_fdinf_commands_equal_the_library(files):
    real, fake = files["features"]["real"], files["features"]["fake"]
    p = files["paths"]
    got = _json("prdc", p["real"], p["fake"])
    want = prdc.prdc(real, fake)
    assert got["metric"] == "prdc" and got["prdc_k"] == 5
    assert got["setup"]["features"] == "inception"
    for name in prdc.PRDC._fields:
        assert got[name] == pytest.approx(getattr(want, name), abs=1e-12)
    got = _json("cmmd", p["real"], p["fake"], "--features", "inception")
    assert got["cmmd"] == pytest.approx(cmmd.cmmd(real, fake), rel=1e-6)
    got = _json("prd", p["real"], p["fake"], "--prd_runs", "2", "--prd_clusters", "5")
    want = prd.prd(real, fake, num_runs=2, num_clusters=5)
    assert (got["f8"], got["f1_8"]) == pytest.approx((want.f_beta, want.f_beta_inv), abs=1e-9)
    got = _json("fdinf", p["real"], p["fake"], "--fdinf_min_n", "100", "--fdinf_points", "4")
    want = fd_infinity.fd_infinity(real.mean(0), np.cov(real.astype(np.float64), rowvar=False),
                                   fake, min_n=100, num_points=4)
    assert got["fd_inf"] == pytest.approx(want.value, rel=1e-6)
    assert got["counts"] == [100, 200, 300, 400]


def test_a_statistics_file_of_another_network_is_refused(files):
    """A file records its feature network; another network's file is refused in one line
    (here: CLIP features given to an Inception run), as is an unknown --features name."""
    p = files["paths"]
    for args, message in [
            (("fid", p["real"], p["clip"], "--dims", str(DIM)),
             "statistics made with the clip feature network, but this run uses inception; "
             "pass --features clip"),
            (("kid", p["real"], p["fake"], "--features", "nonesuch"),
             "--features: unknown feature network 'nonesuch'; allowed: inception")]:
        out = _gancmp(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert message in out.stderr


def test_list_metrics_names_the_study_metrics():
    out = _gancmp("list", "metrics")
    assert out.returncode == 0, out.stderr
    for name in ("  fid:", "  prdc:", "  prd:", "  fd_inf:", "  inception: 2048-d"):
        assert any(line.startswith(name) for line in out.stdout.splitlines()), out.stdout


def test_recursive_folders(tmp_path):
    """Without --recursive a folder's subfolders are not read; with it they are, in sorted
    order of the relative path (a/0.png before a/b/1.png before c.png)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    for i, rel in enumerate(["a/0.png", "a/b/1.png", "c.png"]):
        os.makedirs(os.path.dirname(tmp_path / rel), exist_ok=True)
        Image.fromarray(pixels[i]).save(tmp_path / rel)
    assert image_io.open_folder(str(tmp_path)).num == 1
    images = image_io.open_folder(str(tmp_path), recursive=True)
    assert images.num == 3
    np.testing.assert_array_equal(next(images.batches(3)), pixels.astype(np.float32) / 255)

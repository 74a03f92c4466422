"""Two CPU processes on localhost form one JAX job (gloo collectives) and train one trial over
their 2 + 2 devices as one process trains it over 4 (20 steps: later, GAN dynamics amplify the
different reduction order of gloo's all-reduce, as in the 1-vs-4-device test). The one process
is this test process (4 simulated devices, tests/conftest.py, the CLI's XLA flags): the same
`loop.train_trial` that `gancmp train` runs, without a third interpreter to start."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np

from gancmp.train import loop
from gancmp.trial import make_trial
from tests.helpers import CPU_COMPILE_FLAGS, ROOT, load_config

OVERRIDES = dict(num_d_steps=20, checkpoint_every=10, batch_size=64)
ARGS = ["train", "--config", "configs/ring8_mlp.py", *(f"--config.{k}={v}"
                                                     for k, v in OVERRIDES.items()),
        "--noprogress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {CPU_COMPILE_FLAGS}"}


def test_two_processes_train_like_one(tmp_path):
    port = _free_port()
    multi = tmp_path / "multi"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "gancmp.cli", *ARGS, "--workdir", str(multi),
         "--coordinator_address", f"localhost:{port}", "--num_processes", "2",
         "--process_id", str(i)], cwd=ROOT, env=_env(2), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    single = tmp_path / "single"
    loop.train_trial(make_trial(load_config("ring8_mlp", **OVERRIDES), num_devices=4),
                     str(single), progress=False)

    a = json.loads((multi / "result.json").read_text())
    b = json.loads((single / "result.json").read_text())
    assert a["num_devices"] == b["num_devices"] == 4 and a["steps"] == 20
    for name, value in b["final_losses"].items():
        np.testing.assert_allclose(a["final_losses"][name], value, rtol=1e-4, atol=1e-6)
    assert sorted(os.listdir(multi / "checkpoints")) == ["10", "20"]  # a collective save
    # process 0 alone writes the record and the picture; both printed the same summary
    assert (multi / "samples.png").exists()
    summaries = [re.sub(r" in [0-9.]+ s", "", next(ln for ln in out.splitlines()
                                                   if ln.startswith("finished")))
                 for out, _ in outs]
    assert summaries[0] == summaries[1]

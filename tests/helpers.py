"""Small shared pieces of the tests: configs and data that build in seconds."""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

from gancmp.config import load_config_file
from gancmp.data.source import DataSource
from gancmp.train import group as group_lib
from gancmp.trial import Trial, TrialSetup, make_trial

# XLA:CPU's LLVM at -O1 and its older elemental emitters instead of the MLIR fusion emitters:
# the suite's small programs compile several times faster and run as fast (see conftest.py,
# which sets them for the test process); for the CLI subprocesses the tests start.
CPU_COMPILE_FLAGS = "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gancmp_command(*args: str) -> list[str]:
    """The `gancmp` CLI with `args`: the venv's console script, else `python -m gancmp.cli`."""
    script = os.path.join(os.path.dirname(sys.executable), "gancmp")
    return [script, *args] if os.path.exists(script) else [sys.executable, "-m", "gancmp.cli",
                                                          *args]


def tiny_ring_sweep(name: str, methods: str, *, num_d_steps: int, checkpoint_every: int,
                    num_samples: int | None = 300, num_settings: int = 2,
                    max_trials_per_group: int = 2, sweep: str = "", **trial_fields) -> str:
    """The text of a sweep config file of one ring8 study (the MLP, batch 32, D batch norm
    off, one D update per G update, 5 per call), one tuned phase of `num_settings` settings
    with seed 0: what the CLI tests run. `sweep`: extra Python lines (indented as in the body)
    after the sweep's fields; `trial_fields`: more trial config overrides; num_samples None
    keeps the eval default."""
    ring = os.path.join(ROOT, "configs", "ring8_mlp.py")
    more = "".join(f", {k}={v!r}" for k, v in trial_fields.items())
    samples = "" if num_samples is None else (
        f"    s.trial.eval = ml_collections.ConfigDict({{'num_samples': {num_samples}}})\n")
    return (
        "import ml_collections\n\nfrom gancmp.config import load_config_file\n\n\n"
        "def get_config():\n"
        "    c = ml_collections.ConfigDict()\n"
        f"    c.name, c.seed, c.max_trials_per_group, c.imports = {name!r}, 0, "
        f"{max_trials_per_group}, ''\n{sweep}"
        "    s = ml_collections.ConfigDict()\n"
        f"    s.name, s.methods = 'ring8', {methods!r}\n"
        f"    s.trial = load_config_file({ring!r}, num_d_steps={num_d_steps}, "
        f"checkpoint_every={checkpoint_every}, batch_size=32, steps_per_call=5{more})\n"
        f"{samples}"
        "    s.phases = [ml_collections.ConfigDict(dict(\n"
        f"        name='tuned', mode='tuned', range='narrow', num_settings={num_settings}, "
        "seeds=[0],\n"
        "        fixed=dict(disc_iters=1, d_batch_norm=False)))]\n"
        "    c.studies = [s]\n"
        "    return c\n")


def load_config(name: str, **overrides):
    """configs/<name>.py with field overrides."""
    return load_config_file(os.path.join(ROOT, "configs", f"{name}.py"), **overrides)


def tiny_image_data(n: int = 256, shape=(28, 28, 1), seed: int = 0) -> DataSource:
    """Random blobs as a stand-in image set (the trainer does not care what the pixels are)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return DataSource("triangles", shape, "array", {"train": images})


def tiny_infogan_config(**overrides):
    """The paper's InfoGAN at a quarter width on 28×28 images, batch 16."""
    base = dict(dataset="triangles", arch="infogan", width_multiplier=0.25, batch_size=16,
                num_d_steps=8, checkpoint_every=4, bn_momentum=0.9, lr=2e-4, beta1=0.5)
    base.update(overrides)
    return load_config("ring8_mlp", **base)


def loss_trajectory(config, num_devices: int, calls: int, data: DataSource | None = None):
    """Per-call logged losses of one trial on `num_devices` devices, one iteration per call,
    blocking on each call (CPU devices simulated in one process can deadlock in collectives
    otherwise)."""
    from gancmp.data import source as data_source

    config = config.copy_and_resolve_references()
    config.steps_per_call = 1
    setup = make_trial(config, num_devices=num_devices).setup
    data = data or data_source.load(setup.dataset)
    group = group_lib.create_group(group_of(config, [config.seed], like=setup), data.arrays)
    states, out = group.states, []
    for _ in range(calls):
        states, metrics = group.train_fn(states, group.arrays)
        metrics = jax.block_until_ready(metrics)
        out.append({k: np.asarray(v)[0, 0] for k, v in metrics.items()})
    return out, jax.device_get(states)


def tensorboard_events(directory: str) -> list[tuple[str, int, str]]:
    """(tag, step, kind) of every summary value in the TensorBoard event files under
    `directory`, kind "scalar" or "image": the event records (length, CRC, an `Event` protobuf,
    CRC) parsed with the protobufs tensorboardX ships (no TensorFlow or tensorboard needed)."""
    import struct

    from tensorboardX.proto import event_pb2

    out = []
    for folder, _, files in os.walk(directory):
        for name in sorted(f for f in files if f.startswith("events.out.tfevents")):
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            pos = 0
            while pos + 12 <= len(data):
                (length,) = struct.unpack("<Q", data[pos:pos + 8])
                event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
                pos += 12 + length + 4
                for value in event.summary.value:
                    kind = "image" if value.HasField("image") else "scalar"
                    out.append((value.tag, int(event.step), kind))
    return out


def group_of(config, seeds, hparams=None, *, like: TrialSetup | None = None) -> list[Trial]:
    """The trials of `config` with `seeds` and numeric hyperparameters `hparams` (one dict per
    seed; None: the config's), laid out on the devices of the setup `like` (default: the
    config's): a group for `create_group` / `train_group`."""
    base = make_trial(config)
    if like is not None:
        base = base.on_devices(like.num_devices, like.parallelism)
    numeric = set(base.setup.method.numeric_names())
    out = []
    for i, seed in enumerate(seeds):
        hp = {} if hparams is None else dict(hparams[i])
        out.append(base.variant(seed=seed, **{k: v for k, v in hp.items() if k in numeric}))
    return out

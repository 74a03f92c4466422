"""What a tiny `gancmp sweep` writes into a bucket per checkpoint, counted at the wire: a
loopback proxy in front of the session's GCS emulator (`tests/gcs_emulator.CountingProxy`) adds
up every upload's body, object by object.

The bound (issue 22 item 4), per checkpoint of a group of K trials whose stacked state is S
bytes, with one device call per logged step (the worst case: `log_every` = one call):
  - the checkpoint: S once, plus orbax's metadata: ≤ 1.1·S + 64 KiB;
  - TensorBoard: only the events since the previous checkpoint, in one new object uploaded
    once (≤ 1 KiB of request overhead), never the event file so far: every TensorBoard object
    is sent once and all are the same size within 1.5× (they do not grow with the run);
  - the evaluation: one new `evals.jsonl.parts/` object, sent once; the bookkeeping file, a few
    hundred bytes, rewritten: everything but the checkpoint and TensorBoard ≤ 8 KiB;
and once per group, its records: one `results-<i>.jsonl.parts/` object, sent once.
Before (tensorboardX's GCS writer flushed after each logged call, re-uploading the event
file; each record rewrote the results file) this sweep sent its ≈ 13 KB of events as 171 KB.
"""

from __future__ import annotations

import collections
import os
import subprocess

import ml_collections
import numpy as np
import pytest

from tests.gcs_emulator import SET_BY_GANCMP, CountingProxy
from tests.helpers import CPU_COMPILE_FLAGS, gancmp_command, tiny_ring_sweep

BUCKET = "gancmp-bytes"
STEPS, EVERY, LOG_EVERY, K = 60, 20, 5, 2  # 5 D steps per call: every call logs
CHECKPOINTS = STEPS // EVERY


@pytest.fixture(scope="module")
def counted(gcs, tmp_path_factory):
    """The sweep run once through the counting proxy: (uploads {name: bytes sent}, final
    {name: size}, the records)."""
    gcs.make_bucket(BUCKET)
    tmp = tmp_path_factory.mktemp("bytes")
    config = tmp / "sweep.py"
    config.write_text(tiny_ring_sweep("bytes", "NS_GAN", num_d_steps=STEPS,
                                      checkpoint_every=EVERY, log_every=LOG_EVERY))
    proxy = CountingProxy(gcs.url)
    env = {k: v for k, v in os.environ.items() if k not in SET_BY_GANCMP}
    env.update(gcs.env, STORAGE_EMULATOR_HOST=proxy.url, XLA_FLAGS=CPU_COMPILE_FLAGS,
               JAX_PLATFORMS="cpu", HOME=str(tmp))
    try:
        out = subprocess.run([*gancmp_command(), "sweep", "--config", str(config), "--workdir",
                              f"gs://{BUCKET}/s", "--noprogress", "--noreport"], cwd=tmp,
                             env=env, capture_output=True, text=True, timeout=300)
    finally:
        proxy.close()
    assert out.returncode == 0, out.stderr
    sent = collections.Counter()
    for name, size in proxy.uploads:
        sent[name] += size
    from gancmp import storage

    recs, _ = storage.read_jsonl(f"gs://{BUCKET}/s/results-0.jsonl")
    return sent, gcs.sizes(BUCKET, "s/"), recs


def _state_bytes(record: dict) -> int:
    from gancmp.train.memory import abstract_states
    from gancmp.trial import make_trial

    trial = make_trial(ml_collections.ConfigDict(record["config"]), num_devices=1)
    states = abstract_states(trial.setup, trial.hparams, K)
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
               for x in __import__("jax").tree.leaves(states))


def test_each_checkpoint_sends_its_state_and_only_the_new_events(counted):
    sent, final, recs = counted
    assert len(recs) == K
    group = f"s/{recs[0]['group_dir']}/"
    state = _state_bytes(recs[0])

    def part(prefix: str) -> dict[str, int]:
        return {n: b for n, b in sent.items() if n.startswith(prefix)}

    for step in range(EVERY, STEPS + 1, EVERY):
        ckpt = sum(part(f"{group}checkpoints/{step}/").values())
        assert state / 2 <= ckpt <= 1.1 * state + 64 * 1024, (step, ckpt, state)  # compressed
    tb = part(f"{group}tb/")
    assert len(tb) == CHECKPOINTS  # one object per checkpoint
    for name, size in tb.items():
        assert final[name] <= size <= final[name] + 1024, name  # sent once
    assert max(tb.values()) <= 1.5 * min(tb.values())  # the new events, not the file so far
    once = {**part(f"{group}evals.jsonl.parts/"), **part("s/results-0.jsonl.parts/"),
            **part(f"{group}samples-")}
    assert len(part(f"{group}evals.jsonl.parts/")) == CHECKPOINTS
    assert len(part("s/results-0.jsonl.parts/")) == 1  # the group's records, one object
    for name, size in once.items():
        assert final[name] <= size <= final[name] + 1024, name
    rest = {n: b for n, b in sent.items()
            if not n.startswith((f"{group}checkpoints/", f"{group}tb/", f"{group}samples-",
                                 "s/results-0.jsonl.parts/"))}
    assert sum(rest.values()) <= 8 * 1024 * CHECKPOINTS, rest
    total = sum(sent.values())
    records = sum(part("s/results-0.jsonl.parts/").values())
    pictures = sum(part(f"{group}samples-").values())
    per_checkpoint = (total - records - pictures) / CHECKPOINTS
    assert per_checkpoint <= 1.1 * state + 64 * 1024 + max(tb.values()) + 8 * 1024

"""One line instead of a traceback: a missing config file, a user loss that breaks the loss
contract, a workdir that cannot be written (read-only, full, under a file), a checkpoint step that
does not exist (tests/test_cli_ux.py), more CPU devices than cores."""

import errno
import logging
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from gancmp import losses, methods, storage
from gancmp.config import ConfigError
from gancmp.train import checkpoint
from gancmp.trial import make_trial
from tests.helpers import ROOT, load_config
from tests.test_cli import run


def _one_line_error(out, code=2):
    assert out.returncode == code, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_a_missing_config_file_is_one_line(tmp_path):
    out = run("train", "--config", "/tmp/nonexist.py", "--workdir", str(tmp_path), timeout=60)
    assert _one_line_error(out) == "gancmp train: error: --config: no such file: /tmp/nonexist.py"


@pytest.mark.parametrize("fn, init_state, expected", [
    (lambda r, f: (r, jnp.mean(f)), None,
     "loss 'user_bad': d_loss must be a scalar (the mean over the batch), got shape (4,)"),
    (lambda r, f: (jnp.mean(r), jnp.mean(f), 0.0), None,
     "loss 'user_bad': must return (d_loss, g_loss), returned a tuple of 3"),
    (lambda r, f, k: (jnp.mean(r), jnp.mean(f)), 0.0,
     "loss 'user_bad': must return (d_loss, g_loss, new_state), returned a tuple of 2"),
    (lambda r, f, k: (jnp.mean(r), jnp.mean(f), k + r), 0.0,
     "loss 'user_bad': new_state must have the shape of init_state (), got (4,)"),
    (lambda r: r, None, "loss 'user_bad': calling it on [B] discriminator outputs failed"),
])
def test_a_loss_that_breaks_the_contract_is_named_at_setup(monkeypatch, fn, init_state,
                                                            expected):
    monkeypatch.setattr(losses, "_REGISTRY", dict(losses._REGISTRY))
    monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))
    losses.register("user_bad", fn, init_state=init_state)
    methods.register(methods.Method("USER_BAD", "user_bad"))
    with pytest.raises(ConfigError) as e:
        make_trial(load_config("ring8_mlp", method="USER_BAD"))
    assert str(e.value).startswith(f"config.method: USER_BAD: {expected}")
    for name in losses.names():  # every built-in loss keeps it
        if name != "user_bad":
            losses.check(name)


def test_a_workdir_under_a_file_is_one_line(tmp_path):
    """A portable unwritable path (a chmod'd directory is writable for root): a directory
    below a regular file."""
    (tmp_path / "file").write_text("")
    workdir = tmp_path / "file" / "sub"
    out = run("train", "--config", "configs/ring8_mlp.py", "--workdir", str(workdir),
              timeout=60)
    line = _one_line_error(out, code=1)
    assert line.startswith(f"gancmp train: error: {tmp_path / 'file'}")
    assert "(errno ENOTDIR)" in line


@pytest.mark.parametrize("code, advice", [(errno.ENOSPC, "free some space"),
                                          (errno.EROFS, "can write"),
                                          (errno.EACCES, "can write")])
def test_a_full_or_read_only_disk_is_one_line_naming_path_and_errno(tmp_path, code, advice):
    """Whatever raises the OSError (here the trainer itself), the command line says it in one
    line with the path and the errno's name."""
    script = ("import errno, sys\n"
              "from gancmp import cli\n"
              "from gancmp.train import loop\n"
              "def train_trial(trial, workdir, progress=True):\n"
              f"    raise OSError({code}, 'the disk says no', workdir + '/checkpoints')\n"
              "loop.train_trial = train_trial\n"
              f"sys.argv = ['gancmp', 'train', '--config', 'configs/ring8_mlp.py', "
              f"'--workdir', {str(tmp_path)!r}]\n"
              "cli.main()\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    line = _one_line_error(out, code=1)
    name = errno.errorcode[code]
    assert line.startswith(f"gancmp train: error: {tmp_path}/checkpoints: the disk says no "
                           f"(errno {name}); ")
    assert advice in line


def test_orbax_s_disk_full_error_becomes_an_os_error_and_leaves_no_partial(tmp_path,
                                                                            monkeypatch):
    """orbax (tensorstore) reports a full disk as a ValueError whose text carries the errno;
    the save raises it as OSError ENOSPC naming the directory, and removes the partial
    checkpoint it leaves behind."""
    ckpts = checkpoint.Checkpoints(str(tmp_path / "checkpoints"))

    def full(step, args):
        partial = tmp_path / "checkpoints" / f"{step}.orbax-checkpoint-tmp" / "default"
        partial.mkdir(parents=True)
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "step/0" in OCDBT database: Failed '
                         "to write 209908 bytes to file 7: No space left on device "
                         "[os_error_code='28']")

    monkeypatch.setattr(ckpts._manager, "save", full)
    with pytest.raises(OSError) as e:
        ckpts.save(100, {"w": np.zeros(3)})
    assert e.value.errno == errno.ENOSPC and e.value.filename == ckpts.directory
    assert os.listdir(ckpts.directory) == []
    ckpts.close()
    assert storage.write_error(ValueError("unrelated")) is None


def test_a_save_failing_in_the_background_is_said_once_not_logged_by_orbax(tmp_path,
                                                                         monkeypatch, caplog):
    """A full disk found by orbax's background writers while training goes on: orbax logs the
    failure with its traceback from each of its threads (210-402 lines on stderr); gancmp
    drops those reports and the `wait` that finds the failure raises it once."""
    import time

    from orbax.checkpoint._src.serialization import type_handlers

    async def full(self, value, tspec, ts_context):
        raise ValueError("RESOURCE_EXHAUSTED: Failed to write 4096 bytes to file 7: No space "
                         "left on device [os_error_code='28']")

    monkeypatch.setattr(type_handlers.NumpyHandler, "_open_and_write", full)
    ckpts = checkpoint.Checkpoints(str(tmp_path / "checkpoints"))
    ckpts.save(10, {"w": np.zeros(3, np.float32)})
    deadline = time.monotonic() + 10
    while ckpts._manager.is_saving_in_progress() and time.monotonic() < deadline:
        time.sleep(0.01)  # training goes on while the save fails in the background
    with pytest.raises(OSError) as e:
        ckpts.close()
    assert e.value.errno == errno.ENOSPC and e.value.filename == ckpts.directory
    assert [r.getMessage()[:80] for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert os.listdir(ckpts.directory) == []


def test_a_full_disk_while_recording_or_reporting_names_the_file(tmp_path, monkeypatch):
    """A full disk surfaces at a write, flush or fsync of an open file, as an OSError naming no
    file: the records' append, the report and its plots raise it naming theirs."""
    from gancmp import records
    from gancmp.report import build
    from tests.test_report import make_records, write_records

    workdir = write_records(tmp_path / "sweep", make_records({"A": 0.0}, settings=2, seeds=0))
    results = records.results_path(str(tmp_path / "other"), 0)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        records.append(results, records.Record.from_json({"trial_id": "x"}))
    assert e.value.filename == results
    out = str(tmp_path / "report")
    with pytest.raises(OSError) as e:
        build.build([workdir], out)
    assert os.path.dirname(e.value.filename) == out
    assert storage.describe_write_error(e.value).startswith(
        f"{e.value.filename}: No space left on device (errno ENOSPC); free some space")
    assert os.listdir(out) == []  # nothing half-written


def test_more_cpu_devices_than_cores_is_one_line(tmp_path):
    cores = len(os.sched_getaffinity(0))
    out = run("sweep", "--config", "configs/sweeps/quick.py", "--workdir", str(tmp_path),
              "--cpu_devices=99", timeout=60)
    assert _one_line_error(out) == (f"gancmp sweep: error: --cpu_devices: 99; allowed: 0 (one "
                                    f"device per core) up to {cores}, the CPU cores this process "
                                    "may use")

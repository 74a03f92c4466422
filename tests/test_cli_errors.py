"""One line instead of a traceback: a missing config file, a user loss that breaks the loss
contract, a workdir that cannot be written (read-only, full, under a file), a checkpoint step that
does not exist (tests/test_cli_ux.py), more CPU devices than cores; every bad input of issue 27
(`test_bad_input_is_one_line_exit_2_and_leaves_the_workdir_usable`, the CLI run in this process),
and Ctrl-C turned into the trainer's SIGTERM handling."""

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
from unittest import mock

import jax.numpy as jnp
import numpy as np
import pytest

from gancmp import losses, methods, storage
from gancmp.cli import common
from gancmp.cli import main as gancmp_main  # the console script `gancmp`
from gancmp.config import ConfigError
from gancmp.train import checkpoint, loop
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


def gancmp_here(capsys, *args):
    """`gancmp *args` run in this process (no interpreter and JAX start per command): its exit
    code, stdout and stderr as `subprocess.run` gives them. The command's flags are removed
    afterwards, so the next command defines its own."""
    before, argv, code = set(common.FLAGS), ["gancmp", *map(str, args)], 0
    sys.modules.pop("config_config", None)  # ml_collections' --config module: a new process's
    try:
        with mock.patch.object(sys, "argv", argv):  # ml_collections reads overrides there
            gancmp_main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        for name in set(common.FLAGS) - before:
            delattr(common.FLAGS, name)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ring8 trial of 20 D steps with checkpoints at 10 and 20."""
    workdir = tmp_path_factory.mktemp("trained")
    config = load_config("ring8_mlp", num_d_steps=20, checkpoint_every=10, steps_per_call=10,
                         batch_size=32)
    loop.train_trial(make_trial(config), str(workdir), progress=False)
    return workdir


def _files(tmp, trained):
    """The inputs the cases name: {name: path}."""
    (tmp / "w").mkdir()
    configs = {"syntax": "def get_config(:\n", "import": "import no_such_module_27\n",
               "no_get_config": "x = 1\n",
               "raises": "def get_config():\n    raise ValueError('no ' * 300)\n"}
    for name, text in configs.items():
        (tmp / f"{name}.py").write_text(text)
    stats = tmp / "stats.npz"
    np.savez(stats, mu=np.zeros(8), sigma=np.eye(8), provenance=np.array("{}"))
    stats.write_bytes(stats.read_bytes()[:300])  # truncated
    (tmp / "report.md").write_text("not a folder")
    garbage = tmp / "garbage"
    shutil.copytree(trained, garbage)
    (garbage / "config.json").write_text("{\"method\": \"NS_GAN\", ")  # torn
    sweep = tmp / "sweep"
    sweep.mkdir()
    shutil.copy(os.path.join(ROOT, "tests", "fixtures", "sweep_v1", "results-0.jsonl"), sweep)
    return {"tmp": tmp, "w": tmp / "w", "trained": trained, "stats": stats, "garbage": garbage,
            "sweep": sweep, **{name: tmp / f"{name}.py" for name in configs}}


TRAIN = ("train", "--config", "configs/ring8_mlp.py", "--workdir", "{w}", "--noprogress")
SAMPLE = ("sample", "--workdir", "{trained}", "--out", "{tmp}/s.png")
# (id, command line, what the one line says, the corrected command (run: exit 0) or None)
BAD_INPUT = [
    ("checkpoint_every=0", (*TRAIN, "--config.checkpoint_every=0"),
     "config.checkpoint_every: must be a positive integer, got 0", None),
    ("log_every=0", (*TRAIN, "--config.log_every=0"),
     "config.log_every: must be a positive integer, got 0", None),
    ("steps_per_call=-1", (*TRAIN, "--config.steps_per_call=-1"),
     "config.steps_per_call: must be an integer >= 0, got -1", None),
    ("num_devices=-1", (*TRAIN, "--config.num_devices=-1"),
     "config.num_devices: must be 0 (every device) or a positive integer", None),
    ("keep_checkpoints=0", (*TRAIN, "--config.keep_checkpoints=0"),
     "config.keep_checkpoints: must be None (keep all) or a positive integer, got 0", None),
    ("width_multiplier=0", (*TRAIN, "--config.width_multiplier=0"),
     "config.width_multiplier: must be a number > 0", None),
    ("penalty_weight<0", (*TRAIN, "--config.method=WGAN_GP", "--config.penalty_weight=-1"),
     "config.penalty_weight: must be >= 0 (0: no penalty), got -1", None),
    ("clip<0", (*TRAIN, "--config.method=WGAN", "--config.clip=-0.01"),
     "config.clip: must be > 0", None),
    ("process_id without coordinator", (*TRAIN, "--process_id", "5", "--num_processes", "2"),
     "--num_processes, --process_id: only with --coordinator_address", None),
    ("process_id out of range", (*TRAIN, "--coordinator_address", "localhost:1",
                                 "--process_id", "5", "--num_processes", "2"),
     "--process_id: must be 0 to 1 (--num_processes=2), got 5", None),
    ("config syntax error", ("train", "--config", "{syntax}", "--workdir", "{w}"),
     "--config: {syntax}, line 1: ", None),
    ("config missing import", ("train", "--config", "{import}", "--workdir", "{w}"),
     "--config: {import}, line 1: No module named 'no_such_module_27'", None),
    ("config without get_config", ("train", "--config", "{no_get_config}", "--workdir", "{w}"),
     "--config: {no_get_config}: defines no get_config()", None),
    ("get_config raises", ("train", "--config", "{raises}", "--workdir", "{w}"),
     "--config: {raises}, line 2: get_config() failed: ValueError: no no", None),
    ("fid truncated stats", ("fid", "{stats}", "{stats}"),
     "{stats}: not a readable .npz file", None),
    ("report --out a file", ("report", "{sweep}", "--out", "{tmp}/report.md"),
     "--out: {tmp}/report.md is a file; the report is a folder", None),
    ("report --margin without a value", ("report", "{sweep}", "--margin", "fid"),
     "--margin: METRIC=M with M a positive number, e.g. fid=5; got 'fid'",
     ("report", "{sweep}", "--margin", "modes_covered=1", "--out", "{tmp}/r")),
    ("sample --out a folder", (*SAMPLE[:-1], "{tmp}"), "--out: {tmp} is a folder", SAMPLE),
    ("sample --num -5", (*SAMPLE, "--num", "-5"), "--num: must be 1 to", None),
    ("sample --num 1e8", (*SAMPLE, "--num", "100000000"),
     "--num: must be 1 to 10000 for images (a grid) or to 1000000 for 2-D points (a scatter), "
     "got 100000000",
     (*SAMPLE, "--num", "3000")),
    ("eval garbage config.json", ("eval", "--workdir", "{garbage}"),
     "--workdir: {garbage}/config.json: not a trial config (not JSON: ", None),
    ("sample garbage config.json", ("sample", "--workdir", "{garbage}", "--out", "{tmp}/s.png"),
     "--workdir: {garbage}/config.json: not a trial config (not JSON: ", None),
    ("sample a sweep without --trial", ("sample", "--workdir", "{sweep}", "--out", "{tmp}/s.png"),
     "{sweep} is a sweep workdir of 4 trials: name one (`gancmp sample --trial ID`", None),
]


@pytest.mark.parametrize("args, expected, fixed", [c[1:] for c in BAD_INPUT],
                         ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_leaves_the_workdir_usable(
        capsys, tmp_path, trained, args, expected, fixed):
    """Issue 27, items 9 to 11: each bad input is one line naming the field or path and the
    allowed values, exit code 2, and leaves nothing behind that refuses the corrected command
    (no config.json or lock in a train workdir; where cheap, the corrected command runs)."""
    paths = _files(tmp_path, trained)
    out = gancmp_here(capsys, *(a.format(**paths) for a in args))
    line = _one_line_error(out)
    assert line.startswith(f"gancmp {args[0]}: error: "), line
    assert expected.format(**paths) in line, line
    assert len(line) < 500, line
    assert not os.listdir(paths["w"])  # no config.json, no train.lock: the workdir is as it was
    if args[0] == "train":
        assert out.stdout == ""
    if "{garbage}" in args:  # config.json restored: the same command works
        shutil.copy(trained / "config.json", paths["garbage"] / "config.json")
        assert gancmp_here(capsys, *(a.format(**paths) for a in args)).returncode == 0
    if fixed is not None:
        again = gancmp_here(capsys, *(a.format(**paths) for a in fixed))
        assert again.returncode == 0, again.stderr


def test_ctrl_c_is_the_trainer_s_sigterm_then_a_keyboard_interrupt():
    """Within `CtrlC`, the first Ctrl-C calls the SIGTERM handler that is installed (the
    trainer's, `loop._Preemption`, while a group trains) and the run's status is (130,
    "Ctrl-C"); a second one, or one while no handler is installed, raises KeyboardInterrupt."""
    calls, on_int = [], signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with common.CtrlC() as ctrl_c:
            assert ctrl_c.status() == (143, "SIGTERM")
            os.kill(os.getpid(), signal.SIGINT)
            assert calls == [signal.SIGTERM] and ctrl_c.status() == (130, "Ctrl-C")
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with common.CtrlC(), pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert signal.getsignal(signal.SIGINT) is on_int  # restored

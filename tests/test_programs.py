"""Compiled train programs: one per class of trials, the short last stretch of a budget on the
same program (its iteration count an argument), and the next group's programs compiled ahead
in a thread (`group.precompile`, `sweep.compile_ahead`) so that the group's calls find them."""

import logging
import threading

import jax
import ml_collections
import numpy as np
import pytest

from gancmp.config import ConfigError
from gancmp.data import layout
from gancmp.sweep import runner
from gancmp.sweep.ahead import compile_ahead
from gancmp.train import group as group_lib
from gancmp.train import step as step_lib
from gancmp.train.state import init_states
from gancmp.trial import make_trial
from tests.helpers import group_of, load_config, tiny_image_data, tiny_infogan_config

COMPILING = "Compiling jit(per_device)"  # JAX's compile log, for the train program


def _ring(**kw):
    return load_config("ring8_mlp", **{"batch_size": 32, "parallelism": "trials", **kw})


def _run(config, seeds):
    """(iterations of each call, metrics of each call, final states) of a group run by
    `call_at` to the end of its budget."""
    setup = make_trial(config).setup
    hp = make_trial(config).hparams
    group = group_lib.create_group(group_of(config, seeds, [hp] * len(seeds), like=setup), {})
    step, states, counts, metrics = 0, group.states, [], []
    while step < config.num_d_steps:
        call, iterations = group.call_at(step)
        states, m = call(states, group.arrays)
        counts.append(iterations)
        metrics.append(jax.device_get(jax.block_until_ready(m)))
        step += iterations * setup.disc_iters
    return counts, metrics, jax.device_get(states)


def test_the_last_stretch_runs_on_the_same_program(monkeypatch):
    """25 D updates checkpointing every 10, rolled (an MLP on CPU, up to 50 iterations per call):
    calls of 10, 10 and 5 iterations on one program of 10, whose short call leaves NaN rows
    past its 5; the states equal those of calls of 5 on a program of 5."""
    made = []
    real = step_lib.make_train_fn
    monkeypatch.setattr(step_lib, "make_train_fn",
                        lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    config = _ring(num_d_steps=25, checkpoint_every=10, lr=1e-2)  # a short run that moves
    assert step_lib.plan_calls(make_trial(config)).count_argument
    counts, metrics, states = _run(config, [0, 1, 2, 3])
    assert counts == [10, 10, 5]
    assert len(made) == 1 and made[0]._cache_size() == 1
    short = metrics[-1]["d_loss"]
    assert short.shape == (4, 10)
    assert np.isfinite(short[:, :5]).all() and np.isnan(short[:, 5:]).all()

    five = config.copy_and_resolve_references()
    five.steps_per_call = 5
    counts5, metrics5, states5 = _run(five, [0, 1, 2, 3])
    assert counts5 == [5] * 5
    np.testing.assert_allclose(metrics5[-1]["d_loss"], short[:, :5], rtol=1e-5, atol=1e-6)
    fresh = init_states(make_trial(config).setup, [0, 1, 2, 3], [make_trial(config).hparams] * 4)
    moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
                         jax.device_get(fresh.g_params), states.g_params)
    assert max(jax.tree.leaves(moved)) > 1e-4  # the runs changed G: the comparison is not void
    for a, b in zip(jax.tree.leaves(states), jax.tree.leaves(states5), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("unroll", [False, True])
def test_a_program_traces_the_step_once(unroll, monkeypatch):
    """The step's Python is traced once per program: not again for the rolled loop's metric
    shapes, nor once per iteration of an unrolled call of 3."""
    traced = []
    real = step_lib.train_step
    monkeypatch.setattr(step_lib, "train_step", lambda *a: traced.append(1) or real(*a))
    config = _ring(num_d_steps=10, checkpoint_every=10, batch_size=8)
    setup = make_trial(config).setup
    group = group_lib.create_group(group_of(config, [0], like=setup), {})
    program = step_lib.make_train_fn(setup, group.mesh, 3, unroll, not unroll)
    program.lower(group.states, group.arrays, np.int32(3))
    assert len(traced) == 1


@pytest.fixture
def compiles(caplog, monkeypatch):
    """() -> the threads in which the train program was compiled so far, from JAX's compile
    log (switched on for every thread: `jax.log_compiles()` would be this thread's only)."""
    caplog.set_level(logging.WARNING)
    jax.config.update("jax_log_compiles", True)
    yield lambda: [r.threadName for r in caplog.records if r.getMessage().startswith(COMPILING)]
    jax.config.update("jax_log_compiles", False)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_a_program_compiled_ahead_is_not_compiled_again(kind, compiles):
    """`precompile` from shapes alone, in a thread, on 4 devices with the group's trials
    sharded over them (the accelerator layout): the group's calls then compile nothing (and, on
    the MLP, a group of another shape, not compiled ahead, does: the check can fail)."""
    if kind == "mlp":
        config, data = _ring(num_d_steps=10, checkpoint_every=10, batch_size=24), {}
    else:
        config = tiny_infogan_config(num_d_steps=2, checkpoint_every=2, steps_per_call=1,
                                     batch_size=8, parallelism="trials")
        data = dict(tiny_image_data(64).arrays)
    setup = make_trial(config).setup
    shapes = {name: jax.ShapeDtypeStruct(a.shape, a.dtype)
              for name, a in layout.device_layout(data).items()}
    programs = step_lib.Programs()  # the run's: shared by the thread and the groups
    ahead = threading.Thread(target=group_lib.precompile,
                             args=(make_trial(config), 3, shapes, programs), name="ahead")
    ahead.start()
    ahead.join()
    hp = make_trial(config).hparams
    group = group_lib.create_group(group_of(config, [0, 1, 2], [hp] * 3, like=setup), data,
                                   programs=programs)
    assert jax.tree.leaves(group.states)[0].shape[0] == 4  # padded to the 4 devices
    states, _ = group.train_fn(group.states, group.arrays)
    jax.block_until_ready(group.train_fn(states, group.arrays))
    assert compiles() == ["ahead"]
    if kind == "mlp":  # the same check on the conv net's program would cost a second compile
        other = group_lib.create_group(group_of(config, [0] * 5, [hp] * 5, like=setup),
                                       data, programs=programs)  # K = 8
        jax.block_until_ready(other.train_fn(other.states, other.arrays))
        assert compiles() == ["ahead", "MainThread"]


def _two_class_sweep(mode: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(dict(name="ahead", seed=0, max_trials_per_group=16,
                                       imports="", compile_ahead=mode))
    study = ml_collections.ConfigDict(dict(name="ring8", methods="NS_GAN,LSGAN"))
    study.trial = load_config("ring8_mlp", num_d_steps=10, checkpoint_every=10, batch_size=32)
    study.trial.eval = ml_collections.ConfigDict({"num_samples": 200})
    study.phases = [ml_collections.ConfigDict(dict(
        name="tuned", mode="tuned", range="narrow", num_settings=1, seeds=[0],
        fixed=dict(disc_iters=1, d_batch_norm=False)))]
    c.studies = [study]
    return c


def test_the_sweep_compiles_the_next_group_while_one_trains(tmp_path, compiles):
    """Two groups of different programs (NS_GAN, LSGAN): the first compiles in the main
    thread, the second in the compile-ahead thread (started as the first group starts), each
    once."""
    counts = runner.run_sweep(_two_class_sweep("on"), str(tmp_path), progress=False,
                              log=lambda *_: None)
    assert counts["run"] == 2
    assert sorted(compiles()) == ["MainThread", "gancmp-compile-ahead"]


def test_compile_ahead_setting():
    assert compile_ahead(_two_class_sweep("auto"), "tpu")
    assert compile_ahead(_two_class_sweep("auto"), "gpu")
    assert not compile_ahead(_two_class_sweep("auto"), "cpu")
    assert compile_ahead(_two_class_sweep("on"), "cpu")
    assert not compile_ahead(_two_class_sweep("off"), "tpu")
    with pytest.raises(ConfigError, match="compile_ahead: unknown 'yes'; allowed: auto, on, off"):
        compile_ahead(_two_class_sweep("yes"))


def test_a_failure_to_compile_ahead_is_one_warning(monkeypatch, caplog):
    """The thread never raises: the group compiles (and reports any error) when it runs."""
    from gancmp.sweep import ahead as ahead_lib

    def fail(*_):
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory compiling\nmore detail")

    monkeypatch.setattr(group_lib, "precompile", fail)
    config = _ring(num_d_steps=10, checkpoint_every=10)
    ahead = ahead_lib.CompileAhead(True, step_lib.Programs())
    ahead.start(tuple(group_of(config, [0, 1])), 0)
    ahead.wait()
    assert [r.getMessage() for r in caplog.records if r.name == ahead_lib.__name__] == [
        "compiling ahead failed (the group compiles when it runs): RuntimeError: "
        "RESOURCE_EXHAUSTED: out of memory compiling"]


def test_a_fixed_count_program_computes_the_same():
    """`config.loop_count = "fixed"` (a `lax.scan` of known trip count: no host wait per
    iteration on GPU) computes what the count-argument loop does; a bad value is one line."""
    config = _ring(num_d_steps=10, checkpoint_every=10, batch_size=40)
    setup = make_trial(config).setup
    hp = make_trial(config).hparams
    out = []
    for count_argument in (True, False):
        group = group_lib.create_group(group_of(config, [0, 1, 2, 3], [hp] * 4, like=setup), {})
        program = step_lib.make_train_fn(setup, group.mesh, 5, False, count_argument)
        out.append(jax.device_get(program(group.states, group.arrays, np.int32(5))))
    for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=1e-5, atol=1e-6)
    assert step_lib.plan_calls(make_trial(config)).count_argument
    fixed = _ring(num_d_steps=25, checkpoint_every=10, loop_count="fixed")
    plan = step_lib.plan_calls(make_trial(fixed))
    assert (plan.count_argument, plan.main, plan.tail) == (False, 10, 5)
    with pytest.raises(ConfigError, match="^config.loop_count: unknown 'auto'; allowed: "
                                          "argument, fixed$"):
        bad = _ring(loop_count="auto")
        step_lib.plan_calls(make_trial(bad))

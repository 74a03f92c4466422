"""The layout policy of sweeps (`gancmp.sweep.parallel`), tested on CPU with simulated devices:
the choice from a backend name and memory numbers, padding to a fixed K, memoized programs."""

import types

import jax
import numpy as np
import pytest

from gancmp.config import ConfigError, load_config_file
from gancmp.sweep import parallel, runner
from gancmp.sweep.parallel import Layout, ProgramMemory, choose_layout
from gancmp.train import group as group_lib
from gancmp.train import loop
from gancmp.train import step as step_lib
from gancmp.train.memory import MemoryProbe
from gancmp.trial import make_trial
from tests.helpers import group_of, load_config

GIB, MIB = 2**30, 2**20


def _memory(per_trial: int, data: int = 47_040_000) -> ProgramMemory:
    # one trial: arguments = data + state, outputs aliased to the state, temporaries
    state = per_trial // 2
    return ProgramMemory(trials=1, argument=data + state, output=state, alias=state,
                         temp=per_trial - state, code=0, data=data)


def test_memory_model_arithmetic():
    m = ProgramMemory(trials=4, argument=1000, output=600, alias=500, temp=300, code=40, data=200)
    assert m.peak == 1000 + 600 - 500 + 300 + 40 == 1440
    assert m.fixed == 240 and m.per_trial == (1440 - 240) // 4 == 300


def test_trials_per_device_from_the_cap_the_class_and_memory():
    m = _memory(250 * MIB)
    assert m.per_trial == 250 * MIB and m.fixed == 47_040_000
    # v4-8: 4 chips of 32 GiB; 0.8 · 32 GiB − 47 MB leaves room for 104 trials; cap 16
    tpu = dict(memory=m, device_bytes=32 * GIB)
    assert choose_layout("tpu", 4, 25, **tpu) == Layout("trials", 4, 28, 7, padded=True)
    # 100 trials: K = 48, as 48 + 48 + 4 (a small last chunk at a K of its own: 100 computed),
    # not the cap's K = 64 (64 + 64: 128)
    layout = choose_layout("tpu", 4, 100, **tpu)
    assert layout == Layout("trials", 4, 48, 12, padded=True)
    assert parallel.group_sizes(100, layout) == [48, 48, 4]
    assert [(len(c), g.group_size, g.trials_per_device) for c, g in
            parallel.chunks(list(range(100)), layout)] == [(48, 48, 12), (48, 48, 12), (4, 4, 1)]
    assert parallel.group_sizes(74, layout) == [48, 48]  # a last chunk of ≥ K/2 is padded to K
    assert parallel.group_sizes(70, layout) == [48, 24]  # 22 padded to a multiple of 4
    assert choose_layout("tpu", 4, 100, max_trials_per_device=8, **tpu).group_size == 32
    # v5e-8: 8 chips of 16 GiB; 4 GiB per trial: (12.8 GiB − 47 MB) // 4 GiB = 3 per chip
    big = dict(memory=_memory(4 * GIB), device_bytes=16 * GIB)
    assert choose_layout("tpu", 8, 48, **big) == Layout("trials", 8, 24, 3, padded=True)
    assert choose_layout("tpu", 8, 500, **big).trials_per_device == 3
    # one trial does not fit a chip: data parallelism over all of them, groups as before
    huge = dict(memory=_memory(30 * GIB), device_bytes=32 * GIB)
    assert choose_layout("gpu", 8, 50, **huge) == Layout("data", 8, 16, 0, padded=False)
    # memory unknown: the cap alone
    assert choose_layout("gpu", 1, 64).group_size == 16
    assert parallel.group_sizes(50, choose_layout("gpu", 1, 50)) == [16, 16, 16, 2]


def test_cpu_keeps_the_measured_policy():
    assert choose_layout("cpu", 4, 10, conv=True) == Layout("trials", 4, 4, 1, padded=False)
    assert choose_layout("cpu", 4, 10, conv=True, cpu_conv_trials_per_device=2).group_size == 8
    assert choose_layout("cpu", 4, 10, conv=False) == Layout("trials", 4, 16, 4, padded=False)
    assert choose_layout("cpu", 4, 3, conv=False).num_devices == 1  # fewer trials than devices
    assert choose_layout("cpu", 1, 10, conv=True) == Layout("data", 1, 1, 0, padded=False)
    assert choose_layout("cpu", 4, 10, conv=True, processes=2).parallelism == "data"


def _trial(method, d, bn, phase="wide"):
    return types.SimpleNamespace(study="s", phase=phase, method=method,
                                 hparams={"disc_iters": d, "d_batch_norm": bn})


def test_class_sizes_count_every_phase_and_k_pads_least():
    wide = [_trial("A", 1, True)] * 25 + [_trial("A", 5, False)] * 3
    seeds = [_trial("A", 1, True, "seeds")] * 50
    a, b = parallel.class_key(wide[0]), parallel.class_key(wide[-1])
    assert parallel.class_sizes([(wide, None)]) == {a: (25,), b: (3,)}
    # a seeds phase of 50 re-runs one class of phase 0, not known yet: each is laid out for it
    sizes = parallel.class_sizes([(wide, None)], reruns=[(0, 50)])
    assert sizes == {a: (25, 50), b: (3, 50)}
    layout = choose_layout("tpu", 4, sizes[parallel.class_key(seeds[0])])
    # K = 52: the 50 seeds in one group, the 25 wide trials (under K/2) at a K of their own,
    # 28: 80 computed (K = 28 would compute 28 + 56)
    assert layout.group_size == 52
    assert [(len(c), g.group_size) for c, g in parallel.chunks(seeds, layout)] == [(50, 52)]
    assert [(len(c), g.group_size) for c, g in parallel.chunks(wide[:25], layout)] == [(25, 28)]
    # a class that phases never split (the VAE's): 100 wide + 50 narrow + 50 seeds: K = 48
    # computes 100 + 52 + 52, K = 64 would compute 128 + 64 + 64
    assert parallel.balanced_trials_per_device((100, 50, 50), 4, 16) == 12


def test_accelerator_policy_on_cpu_devices_sizes_k_from_compiled_memory():
    """`sweep.layout = "accelerator"` runs the TPU/GPU policy on the simulated CPU devices: the
    memory probe compiles the one-trial program here, and K per chip follows the chip memory
    the sweep names."""
    sweep = load_config_file("configs/sweeps/quick.py")
    assert parallel.layout_policy(sweep) == "cpu"  # "auto" on a CPU
    sweep.layout = "accelerator"
    study = sweep.studies[0]
    study.methods = "NS_GAN"  # one program class: one probe to compile
    from gancmp.sweep.study import expand_phase
    trials = expand_phase(sweep, study, study.phases[0], [])
    probe = MemoryProbe()  # the sweep's: each kind of program measured once while it lives
    groups = runner.phase_groups(sweep, study, study.phases[0], trials, probe=probe)
    # every method's 16 settings: one class each, ceil(16 / 4 devices) = 4 trials per device
    assert {layout for _, layout in groups} == {Layout("trials", 4, 16, 4, padded=True)}
    setup = parallel.laid_out(groups[0][0][0].trial, groups[0][1], 4).setup
    assert setup.parallelism == "trials" and setup.num_devices == 4
    trial = trials[0].trial
    measured = probe.group(trial)  # every program a group runs, at one trial
    assert probe.group(trial) is measured and len(probe._groups) == 1  # phase_groups' own
    programs = dict(measured.programs)
    assert set(programs) == {"init", "train", "sample"}  # ring8: no Inception pass
    assert all(m.trials == 1 and 0 < m.per_trial <= m.peak for m in programs.values())
    assert measured.peak == max(m.peak for m in programs.values())
    # a chip with room for 2.5 trials of the largest program: 16 trials on 4 chips at 2 per
    # chip, not ceil(16 / 4) = 4
    smallest = min(m.per_trial for m in programs.values())
    room = measured.at(2) + smallest // 2
    sweep.device_memory_gib = room / parallel.MEMORY_FRACTION / GIB
    assert measured.fits(room) == 2
    assert parallel.layout_for(sweep, trial, 16, probe=probe) == Layout("trials", 4, 8, 2,
                                                                        padded=True)
    sweep.device_memory_gib = 0.5 * smallest / GIB  # not one trial: data parallel
    assert parallel.layout_for(sweep, trial, 16, probe=probe).parallelism == "data"
    sweep.layout = "tpu"
    with pytest.raises(ConfigError, match="sweep layout: unknown 'tpu'; allowed: auto, "
                                          "accelerator, cpu"):
        parallel.layout_for(sweep, trial, 16)


def _ring(**kw):
    return load_config("ring8_mlp", num_d_steps=10, checkpoint_every=10, batch_size=32,
                       parallelism="trials", **kw)


def test_padding_trials_never_change_or_join_the_records(tmp_path):
    config = _ring()
    setup = make_trial(config).setup
    hps = [make_trial(config.copy_and_resolve_references()).hparams for _ in range(3)]
    for i, hp in enumerate(hps):
        hp["lr"] = 1e-3 * (i + 1)
    runs = []
    for pad_to in (0, 8):  # 3 trials padded to 4 (the 4 devices), or to K = 8
        group = group_lib.create_group(group_of(config, [0, 1, 2], hps, like=setup), {},
                                       pad_to=pad_to)
        states, metrics = group.train_fn(group.states, group.arrays)
        assert jax.tree.leaves(states)[0].shape[0] == max(4, pad_to) and group.size == 3
        runs.append(jax.device_get(metrics))
    for name, value in runs[0].items():
        np.testing.assert_allclose(runs[1][name][:3], value[:3], rtol=1e-6, atol=1e-7)
    outcomes = loop.train_group(group_of(config, [0, 1, 2], hps, like=setup), str(tmp_path),
                                progress=False, pad_to=8)
    assert [o["seed"] for o in outcomes] == [0, 1, 2]  # the padding is never recorded
    assert [o["hparams"]["lr"] for o in outcomes] == [1e-3, 2e-3, pytest.approx(3e-3)]
    assert all(o["trials_in_group"] == 3 for o in outcomes)
    # every record carries the arithmetic it was trained with
    assert {(o["matmul_precision"], o["compute_dtype"]) for o in outcomes} == {
        ("float32", "float32")}


def test_a_runs_train_programs_are_shared_by_its_groups():
    """One `Programs` per run: an equal setup (made again) and mesh get the same program;
    another iteration count another; another run's `Programs` its own."""
    setup = make_trial(_ring()).setup
    mesh = step_lib.make_mesh(setup)
    programs = step_lib.Programs()
    fn = programs.get(setup, mesh, 4)
    again = programs.get(make_trial(_ring()).setup, step_lib.make_mesh(setup), 4)
    assert fn is again and len(programs) == 1
    assert programs.get(setup, mesh, 2) is not fn and len(programs) == 2
    assert step_lib.Programs().get(setup, mesh, 4) is not fn

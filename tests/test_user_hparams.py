"""A user module's stateful loss with a hyperparameter of its own: settable on the command line,
carried in the train state, and swept, with no edit to gancmp."""

import importlib
import json
import sys

import ml_collections
import pytest

from gancmp import losses, methods, records
from gancmp.generator import load_generator
from gancmp.sweep.study import expand_phase, validate
from tests.helpers import load_config
from tests.test_cli import run

MODULE = "user_clock_loss"
SOURCE = '''"""NS-GAN with a clock: the loss state c advances by `tick` per D update."""
from gancmp import losses, methods


def ns_clock(d_real, d_fake, c, tick):
    d_loss, g_loss = losses.ns(d_real, d_fake)
    return d_loss, g_loss, c + tick


losses.register("ns_clock", ns_clock, init_state=0.0, hparams={"tick": 1.0},
                search={"wide": {"tick": ("uniform", 2.0, 3.0)}})
methods.register(methods.Method("NS_CLOCK", "ns_clock"))
'''


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A directory holding the user module, on sys.path; the module is imported in this process
    too (as `load_generator` and the sweep expansion do through `config.imports`)."""
    path = tmp_path_factory.mktemp("user")
    (path / f"{MODULE}.py").write_text(SOURCE)
    sys.path.insert(0, str(path))
    importlib.import_module(MODULE)
    yield path
    sys.path.remove(str(path))


def test_set_on_the_command_line_and_carried_in_the_state(user_dir, tmp_path):
    workdir = tmp_path / "w"
    out = run("train", "--config", "configs/ring8_mlp.py", "--workdir", str(workdir),
              f"--config.imports={MODULE}", "--config.method=NS_CLOCK", "--config.tick=0.25",
              "--config.num_d_steps=8", "--config.checkpoint_every=4",
              "--config.steps_per_call=4", "--config.batch_size=32", "--noprogress",
              env={"PYTHONPATH": str(user_dir)})
    assert out.returncode == 0, out.stderr
    result = json.loads((workdir / "result.json").read_text())
    assert result["status"] == "finished" and result["config"]["tick"] == 0.25
    assert result["hparams"]["tick"] == 0.25
    # c_t = t·tick: 2.0 after 8 D updates (the default tick 1.0 would give 8.0)
    assert result["final_losses"]["loss_state"] == 2.0
    for step, clock in ((4, 1.0), (8, 2.0)):
        state = load_generator(str(workdir), step=step).state  # as checkpointed
        assert float(state.hparams["tick"]) == 0.25
        assert float(state.loss_state) == clock


def test_a_bad_user_module_is_one_line(tmp_path):
    out = run("train", "--config", "configs/ring8_mlp.py", "--workdir", str(tmp_path),
              "--config.imports=no_such_user_module", "--config.tick=0.5", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "config.imports: cannot import 'no_such_user_module'" in out.stderr


def _sweep(phase):
    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = "user", 0, 16, MODULE
    study = ml_collections.ConfigDict()
    study.name, study.methods = "ring8", "NS_CLOCK,BEGAN"
    study.trial = load_config("ring8_mlp", num_d_steps=40)
    study.phases = [ml_collections.ConfigDict(phase)]
    c.studies = [study]
    return c, study


@pytest.mark.parametrize("range_name, low, high", [("narrow", 0.1, 0.2), ("wide", 0.5, 0.7)])
def test_swept_from_a_study_range(user_dir, range_name, low, high):
    sweep, study = _sweep(dict(name="tuned", mode="tuned", range=range_name, num_settings=6,
                               seeds=[0], ranges=dict(tick=("uniform", low, high))))
    validate(sweep)
    trials = expand_phase(sweep, study, study.phases[0], [])
    clock = [t for t in trials if t.method == "NS_CLOCK"]
    assert len(clock) == 6 and clock[0].hparams["tick"] == 1.0  # setting 0: the default
    ticks = [t.hparams["tick"] for t in clock[1:]]
    assert all(low <= v <= high for v in ticks) and len(set(ticks)) == 5
    assert [t.trial.hparams['tick'] for t in clock[1:]] == ticks  # what the trial trains with
    began = [t for t in trials if t.method == "BEGAN"]
    # not a BEGAN parameter: neither drawn nor carried
    assert began and all("tick" not in t.hparams and "tick" not in t.trial.hparams for t in began)


def test_swept_from_the_loss_s_own_range(user_dir):
    sweep, study = _sweep(dict(name="tuned", mode="tuned", range="wide", num_settings=5,
                               seeds=[0]))
    trials = expand_phase(sweep, study, study.phases[0], [])
    ticks = [t.hparams["tick"] for t in trials if t.method == "NS_CLOCK"][1:]
    assert len(ticks) == 4 and all(2.0 <= v <= 3.0 for v in ticks)  # declared at registration


def test_declarations_name_what_they_declare():
    with pytest.raises(ValueError, match=r"undeclared hyperparameter\(s\) \['rate'\]"):
        losses.register("bad_loss", lambda r, f: (r, f), hparams={"tick2": 1.0},
                        search={"wide": {"rate": ("log", -1, 0)}})
    with pytest.raises(ValueError, match=r"search ranges for \['clip'\], which it does not have"):
        methods.register(methods.Method("BAD", "ns", search={"wide": {"clip": ("log", -1, 0)}}))
    assert "BAD" not in methods.names() and "bad_loss" not in losses.names()
    assert methods.get("BEGAN").uses == ("gamma", "lambda_k")


def test_a_method_carries_only_its_own_hyperparameters(tmp_path, monkeypatch):
    """An NS_GAN trial's state, config and record hold NS_GAN's hyperparameters and no other
    method's (BEGAN's γ and λ_k, a penalty weight, a clip bound); a user module registering a new
    stateful loss afterwards leaves its checkpoint loadable and its record unchanged; and a
    checkpoint of the previous version (every hyperparameter declared then in the state) loads."""
    from gancmp.train import loop, workdir
    from gancmp.train.state import init_states
    from gancmp.trial import make_trial

    config = load_config("ring8_mlp", method="NS_GAN", num_d_steps=10, checkpoint_every=10,
                         steps_per_call=5, batch_size=32)
    trial, w = make_trial(config), str(tmp_path / "w")
    own = set(methods.get("NS_GAN").hparams())
    assert set(trial.hparams) == own and {"gamma", "lambda_k"} <= set(methods.hparam_defaults())
    record = loop.train_trial(trial, w, progress=False)[0]
    saved = json.loads((tmp_path / "w" / workdir.CONFIG_FILE).read_text())
    foreign = {"gamma", "lambda_k", "penalty_weight", "clip"}
    assert set(record.hparams) == own and not foreign & (set(saved) | set(record.config))

    def restored(t):
        ckpts = workdir.checkpoints(w)
        try:
            return ckpts.restore(10, init_states(t.setup, [t.seed], [t.hparams]))
        finally:
            ckpts.close()

    state = restored(trial)
    assert set(state.hparams) == own - set(methods.STATIC_HPARAMS)
    # a user module: a new stateful loss with a hyperparameter of its own
    monkeypatch.setattr(losses, "_REGISTRY", dict(losses._REGISTRY))
    monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))
    losses.register("ns_tock", lambda r, f, c, tock: (*losses.ns(r, f), c + tock),
                    init_state=0.0, hparams={"tock": 1.0})
    methods.register(methods.Method("NS_TOCK", "ns_tock"))
    again = make_trial(config)
    assert again == trial and "tock" not in again.hparams
    assert loop.train_trial(again, w, progress=False) == (workdir.read_result(w), True)
    assert workdir.read_result(w).to_json() == json.loads(records.dumps(record))
    assert set(restored(again).hparams) == set(state.hparams)
    # a checkpoint of the previous version: its state held every declared hyperparameter
    ckpts = workdir.checkpoints(str(tmp_path / "old"))
    try:
        ckpts.save(10, state.replace(hparams={**state.hparams, "gamma": state.hparams["lr"],
                                              "tock": state.hparams["lr"]}))
        ckpts.wait()
        old = ckpts.restore(10, init_states(trial.setup, [0], [trial.hparams]))
    finally:
        ckpts.close()
    assert set(old.hparams) == set(state.hparams)
    assert all((old.hparams[k] == state.hparams[k]).all() for k in state.hparams)

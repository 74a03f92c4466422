"""Every config path refuses a field it does not know, in one line with the close matches: trial
config files and their overrides, sweep, study and phase fields, a phase's `fixed` and `ranges`,
and `--config.<field>` on the command line."""

import json
import os

import ml_collections
import pytest

from gancmp.config import ConfigError, load_config_file
from gancmp.sweep.study import expand_phase, validate
from gancmp.trial import make_trial
from tests.helpers import ROOT, load_config
from tests.test_cli import run

RING8 = os.path.join(ROOT, "configs", "ring8_mlp.py")


def _sweep(**phase):
    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = "typos", 0, 16, ""
    study = ml_collections.ConfigDict()
    study.name, study.methods = "ring8", "NS_GAN"
    study.trial = load_config("ring8_mlp", num_d_steps=40)
    study.phases = [ml_collections.ConfigDict(dict(name="tuned", mode="tuned", range="narrow",
                                                   num_settings=2, seeds=[0], **phase))]
    c.studies = [study]
    return c


def test_a_config_file_override_must_be_a_field():
    with pytest.raises(ConfigError) as e:
        load_config_file(RING8, num_d_step=300)
    message = str(e.value)
    assert "num_d_step" in message and "did you mean num_d_steps?" in message
    assert RING8 in message and "\n" not in message
    assert load_config_file(RING8, num_d_steps=300).num_d_steps == 300  # a field: fine


def test_a_typo_inside_a_trial_config_file_is_refused(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("from gancmp.config import base_config\n\n\n"
                    "def get_config():\n"
                    "    c = base_config()\n"
                    "    c.num_d_step = 300\n"
                    "    c.eval.num_sample = 10\n"
                    "    return c\n")
    config = load_config_file(str(path))
    with pytest.raises(ConfigError, match=r"config\.num_d_step: unknown field; did you mean "
                                          r"num_d_steps\?"):
        make_trial(config)
    del config["num_d_step"]
    with pytest.raises(ConfigError, match=r"config\.eval\.num_sample: unknown field; did you "
                                          r"mean num_samples\?"):
        make_trial(config)


def test_a_phase_s_fixed_hyperparameters_must_exist():
    with pytest.raises(ConfigError) as e:
        validate(_sweep(fixed=dict(learning_rate=0.1)))
    message = str(e.value)
    assert "study 'ring8' phase 'tuned' fixed.learning_rate: unknown hyperparameter" in message
    assert "allowed: lr, beta1" in message
    with pytest.raises(ConfigError, match=r"fixed\.beta_1: unknown hyperparameter; did you mean "
                                          r"beta1\?"):
        validate(_sweep(fixed=dict(beta_1=0.5)))
    sweep = _sweep(fixed=dict(lr=0.1))  # a hyperparameter: pinned
    validate(sweep)
    study = sweep.studies[0]
    trials = expand_phase(sweep, study, study.phases[0], [])
    assert {t.trial.hparams['lr'] for t in trials} == {0.1}


def test_a_phase_s_ranges_and_overrides_suggest_the_field():
    with pytest.raises(ConfigError, match=r"ranges\.lrr: unknown hyperparameter; did you mean "
                                          r"lr\?"):
        validate(_sweep(ranges=dict(lrr=("log", -4, -3))))
    with pytest.raises(ConfigError, match=r"overrides\.batchsize: unknown field; did you mean "
                                          r"batch_size\?"):
        validate(_sweep(overrides=dict(batchsize=32)))


@pytest.mark.parametrize("where, field, expected", [
    ("sweep", "max_trial_per_group", r"sweep\.max_trial_per_group: unknown field; did you mean "
                                     r"max_trials_per_group\?"),
    ("study", "method", r"study 'ring8'\.method: unknown field; did you mean methods\?"),
    ("phase", "num_setting", r"study 'ring8' phase 'tuned'\.num_setting: unknown field; did "
                             r"you mean num_settings\?"),
])
def test_sweep_study_and_phase_fields_must_exist(where, field, expected):
    sweep = _sweep()
    target = {"sweep": sweep, "study": sweep.studies[0],
              "phase": sweep.studies[0].phases[0]}[where]
    target[field] = 4
    with pytest.raises(ConfigError, match=expected):
        validate(sweep)


def test_the_command_line_says_it_as_text(tmp_path):
    out = run("train", "--config", "configs/ring8_mlp.py", "--workdir", str(tmp_path),
              "--config.num_steps=10", timeout=120)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line == ("gancmp train: error: --config.num_steps: unknown field; did you mean "
                    "--config.num_d_steps?")


def test_records_of_the_previous_version_keep_their_trials():
    """Real lines of the quick sweep's results as gancmp wrote them before each method carried
    only its own hyperparameters (commit 2fb4bb6: every trial config held every declared
    hyperparameter, and its id's digest counted them): each is the trial the same config expands
    to now (`study.current_id`), so a sweep started then resumes without re-running them."""
    from gancmp.sweep.study import current_id

    sweep = load_config_file(os.path.join(ROOT, "configs", "sweeps", "quick.py"))
    validate(sweep)
    with open(os.path.join(ROOT, "tests", "fixtures", "sweep_v1", "results-0.jsonl")) as f:
        old = [json.loads(line) for line in f]
    now = {t.trial_id: t for s in sweep.studies for t in expand_phase(sweep, s, s.phases[0], [])}
    for record in old:
        assert record["trial_id"] not in now  # the recorded id: another digest
        trial = now[current_id(record)]
        assert (trial.method, trial.setting, trial.seed) == (
            record["method"], record["setting"], record["seed"])
        assert set(record["hparams"]) > set(trial.trial.hparams)  # it carried every method's
    # the runner reads such a results file under today's ids (the fixture as a sweep directory)
    from gancmp.sweep import runner

    fixture = os.path.join(ROOT, "tests", "fixtures", "sweep_v1")
    assert {r.trial_id for r in runner._recorded(fixture)} == {current_id(r) for r in old}

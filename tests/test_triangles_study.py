"""configs/sweeps/lucic2018.py's triangles study: compare_gan v1's
`phase1_gan8_triangles_sample100_rep1` (the 8 models, 100 wide-range settings each, seed 0, the
MNIST budget, InfoGAN), scored by polygon precision/recall/F1."""

import collections
import math
import os

import pytest

from gancmp import methods
from gancmp.config import load_config_file
from gancmp.data import synthetic
from gancmp.sweep import space
from gancmp.sweep.study import expand_phase, validate
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def sweep():
    return load_config_file(os.path.join(ROOT, "configs", "sweeps", "lucic2018.py"))


def test_triangles_study_expands_to_v1s_phase1(sweep):
    validate(sweep)
    studies = {s.name: s for s in sweep.studies}
    tri = studies["triangles"]
    assert [p.name for p in tri.phases] == ["wide"]  # v1 ran phase 1 only on triangles
    trials = expand_phase(sweep, tri, tri.phases[0], [])
    per_method = collections.Counter(t.method for t in trials)
    eight = [*methods.PAPER_METHODS, "VAE"]
    assert per_method == {m: 100 for m in eight} and len(trials) == 800
    mnist = studies["mnist"].trial
    for t in trials:
        c = t.trial.config()
        assert (c.dataset, c.arch, c.batch_size, c.z_dim) == ("triangles", "infogan", 64, 64)
        assert c.num_d_steps == mnist.num_d_steps == 15_625  # 20 "epochs" of 50k at batch 64
        assert c.checkpoint_every == mnist.checkpoint_every and t.seed == 0
        assert space.check_range(methods.get(t.method), "wide", t.hparams) == []
        assert -5 <= math.log10(t.hparams["lr"]) <= -2
    for name in eight:
        mine = sorted((t for t in trials if t.method == name), key=lambda t: t.setting)
        assert [t.setting for t in mine] == list(range(100))
        assert mine[0].hparams == methods.get(name).hparams()  # the authors' default first
        setup = mine[0].trial.setup
        assert setup.dataset in synthetic.POLYGON_DATASETS  # scored by polygon P/R/F1
        disc_iters = {t.hparams["disc_iters"] for t in mine}
        assert disc_iters == ({1} if name == "VAE" else {1, 5})
    assert len({t.trial_id for t in trials}) == 800

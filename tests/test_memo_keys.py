"""The process-wide program tables key by the trial setup itself (no `repr`/`id`): a `Method`
and so a `TrialSetup` hash consistently with their equality."""

from __future__ import annotations

import dataclasses

from gancmp import methods
from gancmp.config import base_config
from gancmp.trial import make_trial


def test_equal_setups_are_one_key():
    a, b = make_trial(base_config()).setup, make_trial(base_config()).setup
    assert a is not b and a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    other = dataclasses.replace(a, z_dim=a.z_dim + 1)
    assert other != a and other not in {a: 1}


def test_method_hash_follows_equality():
    m = methods.get("WGAN_GP")
    same = dataclasses.replace(m, defaults=dict(m.defaults), search=dict(m.search))
    assert same == m and hash(same) == hash(m)
    changed = dataclasses.replace(m, defaults={**m.defaults, "lr": 1.0})
    assert changed != m and len({m: 0, changed: 1}) == 2  # one hash, two keys
    assert dataclasses.replace(m, prior="normal") not in {m: 0}


def test_a_trial_is_a_hashable_value():
    """Equal configs make equal trials (one key); another seed or lr is another trial; the
    config text it carries is not part of its identity."""
    a, b = make_trial(base_config()), make_trial(base_config())
    assert a == b and hash(a) == hash(b)
    assert len({a, a.variant(seed=1), a.variant(lr=1e-3)}) == 3
    assert a.variant(seed=1).config().seed == 1 and a.variant(lr=1e-3).hparams["lr"] == 1e-3
    assert dataclasses.replace(a, config_json="{}") == a

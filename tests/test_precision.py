"""Precision as a recorded setting: per-backend defaults, the program traced at it, bf16 compute,
every record carrying it, and the report refusing to merge records that differ."""

import dataclasses

import jax
import numpy as np
import pytest

from gancmp import precision
from gancmp import records as records_lib
from gancmp.config import ConfigError
from gancmp.train import group as group_lib
from gancmp.train import step as step_lib
from gancmp.train.state import abstract_states
from gancmp.trial import make_trial
from tests.helpers import group_of, load_config, tiny_infogan_config


def test_auto_is_per_backend_and_names_are_checked():
    assert precision.resolve("auto", "cpu") == "float32"
    assert precision.resolve("auto", "tpu") == "bfloat16"  # one pass, float32 accumulation
    assert precision.resolve("auto", "cuda") == "tensorfloat32"
    assert precision.resolve("bfloat16", "tpu") == "bfloat16"
    with pytest.raises(ValueError, match="'bfloat16' on cpu; allowed on cpu: auto, float32$"):
        precision.resolve("bfloat16", "cpu")
    with pytest.raises(ValueError, match="unknown 'fp8'"):
        precision.resolve("fp8", "tpu")


def test_bad_precision_fields_are_one_line():
    with pytest.raises(ConfigError, match=r"^config.matmul_precision: 'tensorfloat32' on cpu; "
                                          r"allowed on cpu: auto, float32, emulated_bfloat16, "
                                          r"emulated_tensorfloat32$"):
        make_trial(tiny_infogan_config(matmul_precision="tensorfloat32"))
    with pytest.raises(ConfigError, match=r"^config.compute_dtype: unknown 'float16'; allowed: "
                                          r"float32, bfloat16$"):
        make_trial(tiny_infogan_config(compute_dtype="float16"))
    setup = make_trial(tiny_infogan_config()).setup
    assert (setup.matmul_precision, setup.compute_dtype) == ("float32", "float32")


def _ring(**kw):
    return load_config("ring8_mlp", num_d_steps=4, checkpoint_every=4, batch_size=32,
                       num_devices=1, **kw)


def _lowered(setup, config):
    fn = step_lib.make_train_fn(setup, step_lib.make_mesh(setup), 1)
    states = abstract_states(setup, make_trial(config).hparams, 1)
    return fn.lower(states, {}, np.int32(1)).as_text()


def test_the_program_is_traced_at_the_setting():
    config = _ring()
    setup = make_trial(config).setup
    text = _lowered(setup, config)
    assert "HIGHEST" in text  # float32: every product at full precision
    tpu_default = _lowered(dataclasses.replace(setup, matmul_precision="bfloat16"), config)
    assert "HIGHEST" not in tpu_default and "HIGH" not in tpu_default
    bf16 = _lowered(dataclasses.replace(setup, compute_dtype="bfloat16"), config)
    assert "stablehlo.dot_general" in bf16 and "bf16>" in bf16
    assert "bf16>" not in text


def test_bf16_compute_trains_close_to_float32():
    out = {}
    for dtype in ("float32", "bfloat16"):
        config = _ring(compute_dtype=dtype)
        setup = make_trial(config).setup
        assert setup.compute_dtype == dtype
        group = group_lib.create_group(group_of(config, [0], like=setup), {})
        states, metrics = group.train_fn(group.states, group.arrays)
        assert jax.tree.leaves(states.d_params)[0].dtype == np.float32  # master params
        out[dtype] = jax.device_get(metrics)
    for name, value in out["float32"].items():
        assert np.all(np.isfinite(out["bfloat16"][name]))
        np.testing.assert_allclose(out["bfloat16"][name], value, rtol=0.05, atol=0.02)


def _rec(trial, **fields):
    return records_lib.Record.from_json({"study": "s", "dataset": "mnist", "trial_id": trial,
                                         "metric_setup": {"m": 1}, **fields})


def test_report_refuses_records_of_different_precision():
    cpu = _rec("a", matmul_precision="float32", compute_dtype="float32")
    tpu = _rec("b", matmul_precision="bfloat16_3x", compute_dtype="float32")
    with pytest.raises(records_lib.MixedSetupError,
                       match=r"^study s \(mnist\): trial b was trained with matmul_precision="
                             r"bfloat16_3x, compute_dtype=float32, trial a with matmul_precision="
                             r"float32, compute_dtype=float32; merge only records of one "
                             r"precision$"):
        records_lib.check_setups([cpu, tpu])
    bf16 = _rec("c", matmul_precision="float32", compute_dtype="bfloat16")
    with pytest.raises(records_lib.MixedSetupError, match="compute_dtype=bfloat16"):
        records_lib.check_setups([cpu, bf16])
    # a record from before the fields existed: what its backend computed then
    old_cpu = _rec("d", provenance={"backend": "cpu"})
    old_tpu = _rec("e", provenance={"backend": "tpu"})
    records_lib.check_setups([cpu, old_cpu])
    with pytest.raises(records_lib.MixedSetupError, match="matmul_precision=bfloat16,"):
        records_lib.check_setups([cpu, old_tpu])
    records_lib.check_setups([cpu, _rec("f", study="other", matmul_precision="bfloat16_3x")])


def test_the_fid_network_takes_every_matmul_precision_name():
    """A trial hands its resolved `matmul_precision` to the FID Inception: every name a config
    may give runs there at the same JAX precision (`bfloat16_3x` crashed every image study:
    issue 22, item 6)."""
    from gancmp.metrics import features

    for name, jax_name in precision.JAX_NAMES.items():
        assert features.precision_name(name) == jax_name


def test_metric_network_precision_is_its_own_setting():
    """The FID Inception runs at `fid.matmul_precision` (default float32, `bfloat16_3x` accepted,
    3 passes on a TPU only), never at the trial's training precision (issue 24, item 1)."""
    assert precision.resolve_metric("float32", "tpu") == "float32"
    assert precision.resolve_metric("bfloat16_3x", "tpu") == "bfloat16_3x"
    # elsewhere float32: XLA:CPU computes float32 anyway; JAX's "high" on a GPU is TF32
    assert precision.resolve_metric("bfloat16_3x", "cpu") == "float32"
    assert precision.resolve_metric("bfloat16_3x", "cuda") == "float32"
    for bad in ("bfloat16", "tensorfloat32", "auto"):
        with pytest.raises(ValueError, match=rf"^unknown '{bad}'; allowed: float32, bfloat16_3x"):
            precision.resolve_metric(bad, "tpu")
    with pytest.raises(ConfigError, match=r"^config.fid.matmul_precision: unknown 'bfloat16'; "
                                          r"allowed: float32, bfloat16_3x$"):
        config = tiny_infogan_config(dataset="mnist")
        config.fid.matmul_precision = "bfloat16"
        make_trial(config)


class _Built(Exception):
    pass


@pytest.mark.parametrize("backend,requested,expected", [
    ("cpu", None, "float32"), ("tpu", None, "float32"), ("tpu", "bfloat16_3x", "bfloat16_3x"),
    ("cpu", "bfloat16_3x", "float32")])
def test_the_fid_inception_ignores_the_trials_precision(monkeypatch, backend, requested,
                                                        expected):
    from gancmp.metrics import resources
    from gancmp.train import evaluation

    config = tiny_infogan_config(dataset="mnist")
    if requested:
        config.fid.matmul_precision = requested
    trial = make_trial(config)
    # a TPU trial trained with one bf16 pass (`auto` there)
    tpu_trial = dataclasses.replace(
        trial, setup=dataclasses.replace(trial.setup, matmul_precision="bfloat16"))
    asked = []

    def extractor(self, cls, path, preprocess, batch_size, cache_dir, precision_name):
        asked.append(precision_name)
        raise _Built

    monkeypatch.setattr(resources.EvalResources, "extractor", extractor)
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    with pytest.raises(_Built):
        evaluation.make_evaluator(tpu_trial)
    assert asked == [expected]


def test_the_metric_precision_field_keeps_trial_ids():
    """`fid.matmul_precision` at its default leaves a trial's id as it was before the field
    existed (records of earlier sweeps keep matching their trials); another value changes it."""
    from gancmp import methods
    from gancmp.sweep import study

    config = tiny_infogan_config(dataset="mnist").to_dict()
    before = {**config, "fid": {k: v for k, v in config["fid"].items()
                                if k != "matmul_precision"}}
    method = methods.get(config["method"])
    assert config["fid"]["matmul_precision"] == "float32"
    assert study.trial_digest(config, method) == study.trial_digest(before, method)
    other = {**config, "fid": {**config["fid"], "matmul_precision": "bfloat16_3x"}}
    assert study.trial_digest(other, method) != study.trial_digest(config, method)


def test_every_fid_records_the_inceptions_precision(tmp_path, monkeypatch):
    """The metric setup of every FID (what a Record carries as `metric_setup`) names the
    precision the Inception ran at, which is what `fid.matmul_precision` resolves to."""
    from gancmp.data import source
    from gancmp.metrics import features, fid
    from gancmp.train import evaluation

    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
    fake = source.DataSource("mnist", (28, 28, 1), "array", {"train": images}, images)
    monkeypatch.setattr(source, "load", lambda name, data_dir=None, seed=0: fake)

    class Pool:
        has_logits, batch_size = False, 50

        def __init__(self, precision_name):
            self.precision = features.precision_name(precision_name)

        @property
        def provenance(self):
            return {"weights_sha256": "0" * 64, "weights_source": "test", "network": "pool",
                    "preprocess": "tf1_legacy", "feature_dim": 16, "precision": self.precision}

        def __call__(self, x):
            x = np.asarray(x, np.float32)
            return x.mean(-1).reshape(len(x), 4, 7, 4, 7).mean((2, 4)).reshape(len(x), 16)

    class Extractors:
        @staticmethod
        def from_file(*args, precision="highest", **kwargs):
            return Pool(precision)

    monkeypatch.setattr(fid, "FeatureExtractor", Extractors)
    config = tiny_infogan_config(dataset="mnist")
    config.eval.num_samples = 32
    config.fid.update(num_real=64, cache_dir=str(tmp_path), matmul_precision="bfloat16_3x")
    with pytest.warns(UserWarning, match="no classifier layer"):
        evaluator = evaluation.make_evaluator(make_trial(config))
    assert evaluator.setup["precision"] == "highest"  # 3 passes on a TPU only; float32 here
    assert evaluator.setup["precision"] == features.precision_name(
        evaluation.evaluators.metric_precision(make_trial(config).fid))

"""What a config may say, and where configs come from.

`base_config()` is the schema of a trial config (every field, with its default); config files are
Python files whose `get_config()` returns an `ml_collections.ConfigDict` (big_vision's
convention), for trials (configs/*.py) and sweeps (configs/sweeps/*.py); `config.imports` names
the user modules (losses, methods) a config needs, imported once per process. A bad field is a
`ConfigError` naming the field and the allowed values: the CLI turns it into one line on stderr
and exit code 2.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder

from gancmp import methods


class ConfigError(ValueError):
    """A config field has a value the program cannot use."""


def check_fields(given: Iterable[str], allowed: Iterable[str], where: str,
                 what: str = "field") -> None:
    """Refuses the first name of `given` that is not in `allowed`: ConfigError
    "<where>.<name>: unknown <what>; did you mean <the closest match>? (allowed: ...)"
    (`difflib`), so a typo never passes as a new, dead field."""
    allowed = list(allowed)
    for name in given:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{where}.{name}: unknown {what}{hint} (allowed: "
                              f"{', '.join(allowed)})")


def env_seconds(name: str, default: float, what: str) -> float:
    """The positive number of seconds in environment variable `name` (`default` when unset or
    empty); ConfigError naming the variable and `what` it sets otherwise."""
    text = os.environ.get(name) or ""
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"${name}: {what}, a positive number; got {text!r}")
    return value


def base_config() -> ml_collections.ConfigDict:
    """Every field a trial config has, with its default. Config files start from this.

    One field per hyperparameter declared when it is called (`gancmp.methods.hparam_defaults`:
    shared, penalty weight, clip bound, every registered loss's and method's own), None by
    default: the method's authors' default (`gancmp.methods`). A user module's hyperparameters
    are fields only if the module was imported first: `gancmp train` imports the modules named
    by `--config.imports=…` before it loads the config file (so `--config.<name>=…` can set
    them), and a config file that names its modules in `c.imports` also imports them itself,
    above its `get_config`.
    """
    c = ml_collections.ConfigDict()
    c.method = "NS_GAN"
    c.dataset = "ring8"
    c.data_dir = placeholder(str)  # TFDS data_dir or dataset cache (local path or gs://)
    c.data_seed = 0  # seed of the synthetic datasets (the paper's fixed polygon set: 0)
    c.arch = "mlp"
    c.width_multiplier = 1.0  # scales every channel count of the paper's networks
    c.z_dim = 64
    c.batch_size = 64
    c.num_d_steps = 15_625  # the budget, in discriminator updates (compare_gan v1)
    c.seed = 0
    # The order of the training batches: None follows `seed` (as compare_gan v1, whose
    # tf.data shuffle is seeded by the graph seed `tf_seed` and DEFAULT_DATASET_SEED together);
    # an int fixes it, so that trials of different seeds see the same batches.
    c.data_order_seed = placeholder(int)
    # The generator update's z: None, the method's (`Method.resample_z_for_g`: fresh z for
    # WGAN_GP only, the last D update's z otherwise, as v1); True/False override it.
    c.resample_z_for_g = placeholder(bool)
    declared = methods.hparam_defaults()
    for name in methods.numeric_names():
        c[name] = placeholder(float)
    for name in methods.STATIC_HPARAMS:
        c[name] = placeholder(type(declared[name]))
    c.bn_momentum = 0.999  # the paper's; short runs need less, or running stats stay at init
    # β of an exponential moving average of G's params, kept in the train state and evaluated
    # beside G (evals carry `ema/<metric>`, records `best_ema`); None or 0: no EMA (v1). Static:
    # trials of one group share it.
    c.g_ema_decay = placeholder(float)
    c.num_devices = 0  # 0: all devices
    # "data": every trial's batch is split over the devices (gradients averaged with pmean);
    # "trials": a group's trials are spread over the devices, each device training its share
    # (vmapped) on whole batches — for models too small to fill a device with one trial.
    c.parallelism = "data"
    c.steps_per_call = 0  # iterations per device call; 0: chosen per backend
    c.scan_unroll = "auto"  # the per-call scan: "auto" (unrolled on CPU), "unrolled", "rolled"
    c.loop_count = "argument"  # a rolled loop's count: "argument" or "fixed" (`step.plan_calls`)
    # How float32 products are computed (`gancmp.precision`; "auto": per backend) and the
    # dtype of G and D; both recorded, and `gancmp report` refuses to merge records that differ.
    c.matmul_precision = "auto"
    c.compute_dtype = "float32"
    c.log_every = 100
    c.checkpoint_every = 1_000
    c.keep_checkpoints = placeholder(int)  # None: keep all
    # comma-separated modules to import first (user losses and methods), found on PYTHONPATH,
    # next to the config file or in the current directory
    c.imports = ""
    # Evaluation. `gancmp train` evaluates every `eval_every` D updates (a multiple of
    # checkpoint_every; 0: only when asked, by `gancmp eval`); sweeps evaluate every checkpoint.
    c.eval_every = 0
    c.eval = ml_collections.ConfigDict()
    c.eval.num_samples = placeholder(int)  # generated samples per evaluation (metric's default)
    # image datasets: the metrics a study records, comma-separated names of
    # gancmp.metrics.suite (`gancmp list metrics`; None: "fid", the paper's), the one trials are
    # ranked by (a value they record; None: fid when chosen, else the first metric's), and
    # weights files of feature networks other than the Inception ("dinov2=PATH,clip=PATH";
    # None: the published weights from the cache)
    c.eval.metrics = placeholder(str)
    c.eval.main_metric = placeholder(str)
    c.eval.feature_weights = placeholder(str)
    # polygons (gancmp.metrics.polygons.PolygonMetricsConfig; None: its default)
    for name in ("bank_size", "calibration_size", "recall_size", "steps", "restarts"):
        c.eval[name] = placeholder(int)
    c.eval.quantile = placeholder(float)
    c.eval.lr = placeholder(float)
    # FID (image datasets): weights, preprocessing and sample counts, recorded with every FID.
    c.fid = ml_collections.ConfigDict()
    c.fid.preprocess = "tf1_legacy"  # the paper's pipeline; or "pytorch_fid"
    c.fid.inception_weights = placeholder(str)  # converted .npz or pytorch-fid .pth; None: cache
    c.fid.cache_dir = placeholder(str)  # weights and reference statistics (~/.cache/gancmp)
    c.fid.num_real = 10_000  # real test images for the reference statistics (compare_gan v1)
    c.fid.batch_size = 50
    # the Inception's matmul precision, independent of the trial's `matmul_precision`:
    # "float32" (v1's and the reference features') or "bfloat16_3x" (TPU; `gancmp.precision`)
    c.fid.matmul_precision = "float32"
    return c


def add_module_dirs(dirs: Iterable[str]) -> None:
    """Appends `dirs` to `sys.path` (after everything already there, so they never hide an
    installed package), once each: where `config.imports` modules are found besides PYTHONPATH."""
    for d in dirs:
        if d not in sys.path:
            sys.path.append(d)


def user_modules(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The module names of `config.imports` (comma-separated or a list), in order."""
    mods = config.get("imports") or ()
    if isinstance(mods, str):
        mods = [m.strip() for m in mods.split(",")]
    return tuple(m for m in mods if m)


def import_user_modules(config: Mapping[str, Any], search: Sequence[str] = ()) -> None:
    """Imports `config.imports` (`user_modules`) that this process has not imported yet:
    importing a module registers the losses and methods it defines, once per process.

    A module is found on PYTHONPATH, in `search` (the directory of the config file: config files
    add theirs, `load_config_file`) or in the current directory, in this order.
    """
    todo = [name for name in user_modules(config) if name not in sys.modules]
    if todo:
        add_module_dirs([*search, os.getcwd()])
    for name in todo:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"config.imports: cannot import {name!r}: {e} (looked on "
                              "PYTHONPATH, next to the config file and in the current "
                              "directory)") from None


def import_from_argv(argv: Sequence[str], flag: str = "config",
                     search: Sequence[str] = ()) -> None:
    """Imports the modules of `--<flag>.imports=…` (or `--<flag>.imports …`) on a command line,
    looking in `search` too (`import_user_modules`). Called before the config file is loaded, it
    makes the hyperparameters those modules register fields of `base_config()`, so that
    `--<flag>.<name>=…` overrides can set them."""
    pattern = re.compile(rf"^--?{re.escape(flag)}\.imports(?:=(.*))?$")
    for i, arg in enumerate(argv):
        match = pattern.match(arg)
        if match and (match.group(1) is not None or i + 1 < len(argv)):
            value = match.group(1) if match.group(1) is not None else argv[i + 1]
            import_user_modules({"imports": value}, search)


def load_config_file(path: str, **overrides) -> ml_collections.ConfigDict:
    """`get_config()` of the Python config file at `path` (absolute, or relative to the working
    directory), with the fields in `overrides` replaced (`ConfigDict.update`).

    The file runs as a module registered in `sys.modules` under a name unique to its path, so
    what it defines (dataclasses, pickled functions) can be found by module name. Its directory
    joins the places modules are imported from (`add_module_dirs`), so the
    file, and the modules its `imports` field names, can import modules that sit next to it.
    Raises FileNotFoundError naming `path` when there is no such file, ConfigError when the file
    defines no `get_config` or an override names a field the config does not have (with the
    close matches: a typo never becomes a dead field).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path}: no such file")
    stem = os.path.splitext(os.path.basename(path))[0]
    # local only: config files are Python code, imported from local disk (never gs://)
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:8]
    name = f"gancmp_config_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"config file {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # local only, as above: the file's own folder is searched for the modules it imports
    add_module_dirs([os.path.dirname(os.path.abspath(path))])
    sys.modules[name] = module
    spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config file {path}: defines no get_config()")
    config = get_config()
    check_fields(overrides, config, f"config file {path}: config")
    config.update(overrides)
    return config

"""From a config to a validated, static trial description (everything that shapes the program).

Bad input is caught here, before JAX sees it: `ConfigError` names the field and the allowed
values, and the CLI turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import importlib
import numbers
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
from ml_collections.config_dict import placeholder

from gancmp import losses, methods, nets
from gancmp.data import source as data_source
from gancmp.data import synthetic
from gancmp.train import precision
from gancmp.train.errors import ConfigError, check_fields

AXIS = "devices"  # the named device axis of the data-parallel step
TRIALS = "trials"  # the mesh axis that trial-parallel groups spread their trials over
PARALLELISM = ("data", "trials")


@dataclasses.dataclass(frozen=True)
class TrialSetup:
    """The static part of a trial: what the compiled program depends on.

    Trials that share a setup differ only in numbers (hyperparameters and seed), so they can be
    stacked and trained together in one vmapped program.
    """

    method: methods.Method
    dataset: str
    example_shape: tuple[int, ...]
    arch: str
    width: float
    batch_size: int
    z_dim: int
    disc_iters: int
    d_batch_norm: bool
    bn_momentum: float
    num_devices: int
    parallelism: str = "data"
    data_kind: str = "array"  # `DataSource.kind`: "array" (a finite set) or "mixture"
    g_ema_decay: float = 0.0  # β of the generator EMA (`gancmp.train.state`); 0: none
    resample_z_for_g: bool = False  # G's update draws fresh z (else: the last D update's z)
    data_order_seed: int | None = None  # None: each trial's data order follows its seed
    matmul_precision: str = "float32"  # `gancmp.train.precision`: a resolved name, not "auto"
    compute_dtype: str = "float32"  # what G and D compute in ("bfloat16": cast in and out)

    def networks(self, bn_axis: str | None = None) -> tuple[nn.Module, nn.Module]:
        """(G, D) Linen modules; `bn_axis` = AXIS inside the device-mapped train step."""
        return nets.build(
            self.arch, self.example_shape, discriminator=self.method.discriminator,
            d_batch_norm=self.d_batch_norm, bn_momentum=self.bn_momentum, bn_axis=bn_axis,
            width=self.width, z_dim=self.z_dim,
        )

    @property
    def sampler(self) -> data_source.DataSource:
        """The array-free data source whose `batch` the train step calls."""
        return data_source.DataSource(self.dataset, self.example_shape, self.data_kind)

    @property
    def data_devices(self) -> int:
        """Devices that split each trial's batch (the size of the `AXIS` mesh axis)."""
        return self.num_devices if self.parallelism == "data" else 1

    @property
    def trial_devices(self) -> int:
        """Devices that the trials of a group are spread over (the `TRIALS` mesh axis)."""
        return self.num_devices if self.parallelism == "trials" else 1

    @property
    def per_device_batch(self) -> int:
        return self.batch_size // self.data_devices


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
    # How float32 products are computed (`gancmp.train.precision`; "auto": per backend) and the
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
    return c


def add_module_dirs(dirs: Iterable[str]) -> None:
    """Appends `dirs` to `sys.path` (after everything already there, so they never hide an
    installed package), once each: where `config.imports` modules are found besides PYTHONPATH."""
    for d in dirs:
        if d not in sys.path:
            sys.path.append(d)


def import_user_modules(config: Mapping[str, Any], search: Sequence[str] = ()) -> None:
    """Imports `config.imports` (module names, comma-separated or a list); importing a module
    registers the losses and methods it defines.

    A module is found on PYTHONPATH, in `search` (the directory of the config file: config files
    add theirs, `gancmp.configfile.load_config_file`) or in the current directory, in this order.
    """
    mods = config.get("imports") or ()
    if isinstance(mods, str):
        mods = [m.strip() for m in mods.split(",") if m.strip()]
    if mods:
        add_module_dirs([*search, os.getcwd()])
    for name in mods:
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


def trial_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Every declared hyperparameter of the config's trial (`methods.hparam_defaults()`, once
    `config.imports` is imported): the method's defaults overridden by the config's non-None
    hyperparameter fields."""
    import_user_modules(config)
    method = _method(config)
    return method.hparams({k: config.get(k) for k in methods.hparam_defaults()})


def make_setup(config: ml_collections.ConfigDict, num_devices: int | None = None) -> TrialSetup:
    """Validates `config` and returns its static trial description."""
    import_user_modules(config)
    method = _method(config)
    hp = trial_hparams(config)
    shape = _dataset_shape(config)
    _check_choice("arch", config.arch, nets.names())
    if "optimizer" in config:
        raise ConfigError("config.optimizer: not a field any more; Adam (the paper's optimizer, "
                          "with config.lr, beta1, beta2) is the only one: delete the line")
    _check_known_fields(config)
    if not nets.supports(config.arch, shape):
        raise ConfigError(
            f"config.arch: {config.arch!r} cannot take examples of shape {shape} from dataset "
            f"{config.dataset!r}; {config.arch!r} takes {nets.get(config.arch).data}")
    check_method(method, config.dataset, config.arch)
    for field in ("batch_size", "num_d_steps", "z_dim"):
        _check_positive_int(field, config.get(field))
    _check_positive_int("disc_iters", hp["disc_iters"])
    if config.num_d_steps % hp["disc_iters"]:
        raise ConfigError(
            f"config.num_d_steps: {config.num_d_steps} is not a multiple of disc_iters="
            f"{hp['disc_iters']} (the budget counts D updates, one G update per disc_iters)")
    _check_hparams(hp)
    n_dev = num_devices or config.get("num_devices") or jax.device_count()
    if n_dev > jax.device_count():
        raise ConfigError(
            f"config.num_devices: {n_dev} requested, {jax.device_count()} available")
    parallelism = config.get("parallelism", "data")
    _check_choice("parallelism", parallelism, PARALLELISM)
    if parallelism == "data" and config.batch_size % n_dev:
        raise ConfigError(
            f"config.batch_size: {config.batch_size} is not divisible by the device count "
            f"{n_dev}; use a multiple of {n_dev}, set config.num_devices, or use "
            f"config.parallelism='trials'")
    if not 0 < config.get("bn_momentum", 0.999) < 1:
        raise ConfigError(f"config.bn_momentum: must be in (0, 1), got {config.bn_momentum}")
    _check_eval(config)
    ema = config.get("g_ema_decay") or 0.0
    if isinstance(ema, bool) or not isinstance(ema, numbers.Real) or not 0 <= ema < 1:
        raise ConfigError(f"config.g_ema_decay: must be a number in [0, 1) (0 or None: no "
                          f"generator EMA), got {ema!r}")
    resample = config.get("resample_z_for_g")
    if resample is None:
        resample = method.resample_z_for_g
    if not isinstance(resample, bool):
        raise ConfigError(f"config.resample_z_for_g: must be None, True or False, got {resample!r}")
    order_seed = config.get("data_order_seed")
    if order_seed is not None and (isinstance(order_seed, bool) or not isinstance(order_seed, int)
                                   or order_seed < 0):
        raise ConfigError(f"config.data_order_seed: must be None (the trial seed's order) or an "
                          f"integer >= 0, got {order_seed!r}")
    matmul = _via("matmul_precision", precision.resolve, config.get("matmul_precision", "auto"),
                  jax.default_backend())
    compute = _via("compute_dtype", precision.check_compute_dtype,
                   config.get("compute_dtype", "float32"))
    return TrialSetup(
        method=method, dataset=config.dataset, example_shape=shape, arch=config.arch,
        width=float(config.get("width_multiplier", 1.0)), batch_size=config.batch_size,
        z_dim=config.z_dim, disc_iters=int(hp["disc_iters"]),
        d_batch_norm=bool(hp["d_batch_norm"]), bn_momentum=float(config.bn_momentum),
        num_devices=n_dev, parallelism=parallelism,
        data_kind="mixture" if config.dataset in synthetic.MIXTURES else "array",
        g_ema_decay=float(ema),
        resample_z_for_g=resample, data_order_seed=order_seed, matmul_precision=matmul,
        compute_dtype=compute,
    )


def _dataset_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """The example shape of `config.dataset`: a built-in name, or a user's `folder:PATH[@HxW]` /
    `npz:PATH[@HxW]` whose files exist and are readable (headers only) and hold at least one
    batch of training images. ConfigError naming config.dataset (or batch_size) otherwise."""
    name = config.dataset
    if not data_source.is_user_dataset(name):
        if name not in data_source.names():
            raise ConfigError(f"config.dataset: unknown {name!r}; allowed: "
                              f"{', '.join(data_source.names())}, or your own images: "
                              f"{data_source.USER_HELP}")
        return data_source.example_shape(name)
    try:
        shape = data_source.example_shape(name)
        n = data_source.train_size(name)
    except ValueError as e:
        raise ConfigError(f"config.dataset: {e}") from None
    if isinstance(config.batch_size, int) and n is not None and config.batch_size > n:
        raise ConfigError(f"config.batch_size: {config.batch_size} is more than the {n} training "
                          f"images of {name} (the held-out 10 % excluded); lower it")
    return shape


def check_method(method: methods.Method, dataset: str, arch: str) -> None:
    """Raises ConfigError (naming config.method or config.arch) when `method` cannot train on
    `dataset` (a known name) with `arch` (a known name that takes its examples): BEGAN needs an
    auto-encoder D, the VAE images (a Bernoulli decoder on pixels in [0, 1]) and an
    architecture with a VAE encoder and decoder."""
    shape = data_source.example_shape(dataset)
    if method.trainer == "vae" and len(shape) != 3:
        raise ConfigError(f"config.method: {method.name} trains on images (a Bernoulli decoder "
                          f"on pixels in [0, 1]); dataset {dataset!r} has examples of shape "
                          f"{shape}")
    try:
        nets.check_discriminator(arch, method.discriminator)
    except ValueError as e:
        need = {"autoencoder": "an auto-encoder discriminator",
                "encoder": "a VAE encoder and decoder"}.get(method.discriminator, "its networks")
        raise ConfigError(f"config.arch: method {method.name} needs {need}: {e}") from None


def method_fits(method: methods.Method, dataset: str, arch: str) -> bool:
    """Whether `check_method` accepts `method` on `dataset` with `arch` (False for an unknown
    dataset)."""
    try:
        check_method(method, dataset, arch)
    except (ConfigError, KeyError):
        return False
    return True


def _check_known_fields(config: Mapping[str, Any]) -> None:
    """Every field (and every field of `eval` and `fid`) is one of `base_config()`'s."""
    base = base_config()
    check_fields(config, base, "config")
    for group in ("eval", "fid"):
        if isinstance(config.get(group), Mapping | ml_collections.ConfigDict):
            check_fields(config[group], base[group], f"config.{group}")


def _method(config: Mapping[str, Any]) -> methods.Method:
    name = config.get("method")
    _check_choice("method", name, methods.names())
    method = methods.get(name)
    try:
        losses.check(method.loss)
    except ValueError as e:
        raise ConfigError(f"config.method: {name}: {e}") from None
    return method


def _check_hparams(hp: Mapping[str, Any]) -> None:
    """Numeric hyperparameters are real numbers; Adam's lr, β2 > 0 and β1 in [0, 1) (disc_iters
    is checked with the budget)."""
    for name in methods.numeric_names():
        value = hp[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"config.{name}: must be a number, got {value!r}")
    for name in ("lr", "beta2"):
        if not hp[name] > 0:
            raise ConfigError(f"config.{name}: must be > 0, got {hp[name]}")
    if not 0 <= hp["beta1"] < 1:
        raise ConfigError(f"config.beta1: must be in [0, 1), got {hp['beta1']}")


def _check_eval(config: ml_collections.ConfigDict) -> None:
    every = config.get("eval_every") or 0
    if not isinstance(every, int) or every < 0 or every % config.get("checkpoint_every", 1):
        raise ConfigError(
            f"config.eval_every: must be 0 (no evaluation during `gancmp train`) or a positive "
            f"multiple of checkpoint_every={config.get('checkpoint_every')}, got {every!r}")
    fid = config.get("fid")
    if fid is not None:
        from gancmp.nets.inception import PREPROCESS_MODES  # noqa: PLC0415

        _check_choice("fid.preprocess", fid.get("preprocess"), PREPROCESS_MODES)


def _via(field: str, check, *args: Any) -> Any:
    """`check(*args)`, its ValueError as ConfigError naming config.<field>."""
    try:
        return check(*args)
    except ValueError as e:
        raise ConfigError(f"config.{field}: {e}") from None


def _check_choice(field: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ConfigError(
            f"config.{field}: unknown {value!r}; allowed: {', '.join(map(str, allowed))}")


def _check_positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"config.{field}: must be a positive integer, got {value!r}")

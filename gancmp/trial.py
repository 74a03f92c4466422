"""What one trial is: `Trial`, frozen and hashable, built and validated once from a config.

A trial is one GAN (one method, architecture, dataset, hyperparameter setting and seed) trained
for a fixed budget of D updates and then measured. `make_trial(config)` checks every field once
(bad input is a `ConfigError` naming the field and the allowed values, before JAX sees it) and
returns the `Trial` that everything below the command line receives: its `TrialSetup` (what the
compiled program depends on), its `Budget`, how the budget is cut into device calls (`Calls`),
its evaluation options, its seed and its method's hyperparameters. Trials that share a setup
(differing only in numbers) train together as one vmapped program: a group.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from gancmp import losses, methods, nets, precision
from gancmp.config import ConfigError, base_config, check_fields, import_user_modules
from gancmp.data import registry as data_registry
from gancmp.data import source as data_source

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
    matmul_precision: str = "float32"  # `gancmp.precision`: a resolved name, not "auto"
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


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long a trial trains and when it saves, in D updates (the budget compare_gan v1
    counts): `num_d_steps` in all, a checkpoint every `checkpoint_every` (and at the end), the
    losses logged every `log_every`, `gancmp train` evaluating every `eval_every` (a multiple of
    `checkpoint_every`; 0: only when asked); `keep_checkpoints` None keeps all."""

    num_d_steps: int
    checkpoint_every: int
    log_every: int = 100
    eval_every: int = 0
    keep_checkpoints: int | None = None


@dataclasses.dataclass(frozen=True)
class Calls:
    """How the budget is cut into device calls (`gancmp.train.step.plan_calls`): iterations per
    call (0: per backend), the per-call loop's unrolling ("auto", "unrolled", "rolled") and
    whether a rolled loop's count is an "argument" of the program or "fixed"."""

    steps_per_call: int = 0
    scan_unroll: str = "auto"
    loop_count: str = "argument"


Items = tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial, validated (`make_trial`): frozen and hashable, so that it keys caches and a
    group is a tuple of them.

    Attributes:
      setup: the static part, what the compiled program depends on (shared by a group).
      seed: the trial's seed (initialisation, noise and, unless `setup.data_order_seed`, data
        order).
      hparam_items: its method's hyperparameters as (name, value) pairs (`hparams`).
      budget: D updates, checkpoint, log and evaluation intervals.
      calls: how the budget is cut into device calls.
      eval_items, fid_items: the non-None fields of `config.eval` and `config.fid` (`eval`,
        `fid`): how the trial is measured.
      data_dir, data_seed: where the dataset is read or cached, and the synthetic sets' seed.
      config_json: the config it was made from (JSON), for config.json and its record; not part
        of its identity (equality and hash).
    """

    setup: TrialSetup
    seed: int
    hparam_items: Items
    budget: Budget
    calls: Calls = Calls()
    eval_items: Items = ()
    fid_items: Items = ()
    data_dir: str | None = None
    data_seed: int = 0
    config_json: str = dataclasses.field(default="{}", compare=False, repr=False)

    @property
    def hparams(self) -> dict[str, Any]:
        """{name: value} of the method's hyperparameters (numeric and static)."""
        return dict(self.hparam_items)

    @property
    def eval(self) -> dict[str, Any]:
        """The evaluation options given (`config.eval`: num_samples, the polygon metrics')."""
        return dict(self.eval_items)

    @property
    def fid(self) -> dict[str, Any]:
        """The FID options (`config.fid`: preprocess, inception_weights, cache_dir, num_real,
        batch_size)."""
        return dict(self.fid_items)

    def config(self) -> ml_collections.ConfigDict:
        """The config the trial was made from."""
        return ml_collections.ConfigDict(json.loads(self.config_json))

    def variant(self, seed: int | None = None, **hparams: Any) -> Trial:
        """The same trial with another seed or other numeric hyperparameters (its config
        too): a trial of the same group. ConfigError for a static or unknown hyperparameter."""
        check_fields(hparams, self.setup.method.numeric_names(), "config",
                     "numeric hyperparameter")
        hp = {**self.hparams, **hparams}
        _check_hparams(hp)
        config = json.loads(self.config_json)
        config.update(hparams)
        config["seed"] = self.seed if seed is None else seed
        return dataclasses.replace(self, seed=config["seed"], hparam_items=tuple(hp.items()),
                                   config_json=json.dumps(config))

    def on_devices(self, num_devices: int, parallelism: str) -> Trial:
        """The same trial laid out on `num_devices` devices by `parallelism` (a sweep's group
        layout: the same arithmetic, to float rounding)."""
        setup = dataclasses.replace(self.setup, num_devices=num_devices, parallelism=parallelism)
        return dataclasses.replace(self, setup=setup)


def make_trial(config: ml_collections.ConfigDict, num_devices: int | None = None) -> Trial:
    """Validates `config` (importing `config.imports` first, once per process) and returns its
    trial. `num_devices` overrides `config.num_devices` (0 or None there: every device)."""
    import_user_modules(config)
    method = _method(config)
    hp = method.hparams({k: config.get(k) for k in methods.hparam_defaults()})
    setup = _setup(config, method, hp, num_devices)
    _check_hparams(hp)
    return Trial(
        setup=setup, seed=_check_int("seed", config.get("seed", 0)),
        hparam_items=tuple(hp.items()), budget=_budget(config, int(hp["disc_iters"])),
        calls=_calls(config), eval_items=_given(config.get("eval")),
        fid_items=_given(config.get("fid")), data_dir=config.get("data_dir"),
        data_seed=int(config.get("data_seed", 0)), config_json=_own_config(config, method))


def _own_config(config: ml_collections.ConfigDict, method: methods.Method) -> str:
    """The config as JSON without the unset (None) hyperparameter fields of other methods: what
    a trial's config.json and record keep (`base_config` has a field for every hyperparameter
    declared in the process; a trial carries only its method's)."""
    own, declared = method.hparams(), methods.hparam_defaults()
    fields = json.loads(config.to_json(sort_keys=True))
    return json.dumps({k: v for k, v in fields.items()
                       if not (k in declared and k not in own and v is None)}, sort_keys=True)


def as_group(trials: Sequence[Trial]) -> tuple[Trial, ...]:
    """`trials` as a group: a tuple of trials of one setup (ValueError otherwise)."""
    if not trials or any(t.setup != trials[0].setup for t in trials):
        raise ValueError("a group is one or more trials of one setup (one program)")
    return tuple(trials)


def _setup(config: ml_collections.ConfigDict, method: methods.Method, hp: Mapping[str, Any],
           num_devices: int | None) -> TrialSetup:
    """The static part of the trial of `config` (its dataset, network, devices, arithmetic)."""
    dataset = _dataset(config)
    shape = dataset.shape
    _check_choice("arch", config.arch, nets.names())
    _check_known_fields(config)
    _check_network(config, method, shape)
    for field in ("batch_size", "z_dim"):
        _check_int(field, config.get(field), positive=True)
    n_dev, parallelism = _devices(config, num_devices)
    width = config.get("width_multiplier", 1.0)
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not width > 0:
        raise ConfigError(f"config.width_multiplier: must be a number > 0 (1: the paper's "
                          f"channel counts), got {width!r}")
    if not 0 < config.get("bn_momentum", 0.999) < 1:
        raise ConfigError(f"config.bn_momentum: must be in (0, 1), got {config.bn_momentum}")
    return TrialSetup(
        method=method, dataset=config.dataset, example_shape=shape, arch=config.arch,
        width=float(width), batch_size=config.batch_size,
        z_dim=config.z_dim, disc_iters=int(hp["disc_iters"]),
        d_batch_norm=bool(hp["d_batch_norm"]), bn_momentum=float(config.bn_momentum),
        num_devices=n_dev, parallelism=parallelism,
        data_kind=dataset.data_kind,
        g_ema_decay=_ema(config), resample_z_for_g=_resample(config, method),
        data_order_seed=_order_seed(config),
        matmul_precision=_via("matmul_precision", precision.resolve_training,
                              config.get("matmul_precision", "auto"), jax.default_backend()),
        compute_dtype=_via("compute_dtype", precision.check_compute_dtype,
                           config.get("compute_dtype", "float32")),
    )


def _check_network(config: ml_collections.ConfigDict, method: methods.Method,
                   shape: tuple[int, ...]) -> None:
    if not nets.supports(config.arch, shape):
        raise ConfigError(
            f"config.arch: {config.arch!r} cannot take examples of shape {shape} from dataset "
            f"{config.dataset!r}; {config.arch!r} takes {nets.get(config.arch).data}")
    check_method(method, config.dataset, config.arch)


def _devices(config: ml_collections.ConfigDict, num_devices: int | None) -> tuple[int, str]:
    """(devices, parallelism) of the trial: the batch is split over the devices ("data") or a
    group's trials are spread over them ("trials")."""
    given = config.get("num_devices") or 0
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise ConfigError(f"config.num_devices: must be 0 (every device) or a positive integer "
                          f"(at most {jax.device_count()}), got {given!r}")
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
    return n_dev, parallelism


def _ema(config: ml_collections.ConfigDict) -> float:
    ema = config.get("g_ema_decay") or 0.0
    if isinstance(ema, bool) or not isinstance(ema, numbers.Real) or not 0 <= ema < 1:
        raise ConfigError(f"config.g_ema_decay: must be a number in [0, 1) (0 or None: no "
                          f"generator EMA), got {ema!r}")
    return float(ema)


def _resample(config: ml_collections.ConfigDict, method: methods.Method) -> bool:
    resample = config.get("resample_z_for_g")
    if resample is None:
        resample = method.resample_z_for_g
    if not isinstance(resample, bool):
        raise ConfigError(f"config.resample_z_for_g: must be None, True or False, got {resample!r}")
    return resample


def _order_seed(config: ml_collections.ConfigDict) -> int | None:
    order_seed = config.get("data_order_seed")
    if order_seed is not None and (isinstance(order_seed, bool) or not isinstance(order_seed, int)
                                   or order_seed < 0):
        raise ConfigError(f"config.data_order_seed: must be None (the trial seed's order) or an "
                          f"integer >= 0, got {order_seed!r}")
    return order_seed


def _budget(config: ml_collections.ConfigDict, disc_iters: int) -> Budget:
    """The budget, with its checks: positive D updates, a multiple of `disc_iters`, positive
    checkpoint and log intervals, an evaluation interval that is a multiple of the checkpoint
    interval, and None or a positive count of checkpoints to keep."""
    total = _check_int("num_d_steps", config.get("num_d_steps"), positive=True)
    _check_int("disc_iters", disc_iters, positive=True)
    if total % disc_iters:
        raise ConfigError(
            f"config.num_d_steps: {total} is not a multiple of disc_iters={disc_iters} (the "
            "budget counts D updates, one G update per disc_iters)")
    every = _check_int("checkpoint_every", config.get("checkpoint_every", 1_000), positive=True)
    _check_eval(config)
    keep = config.get("keep_checkpoints")
    if keep is not None:  # 0 would keep no checkpoint at all: a "finished" run with nothing
        _check_int("keep_checkpoints", keep, positive=True, allowed="None (keep all) or ")
    return Budget(num_d_steps=total, checkpoint_every=every,
                  log_every=_check_int("log_every", config.get("log_every", 100), positive=True),
                  eval_every=int(config.get("eval_every") or 0), keep_checkpoints=keep)


def _calls(config: ml_collections.ConfigDict) -> Calls:
    unroll = config.get("scan_unroll", "auto")
    _check_choice("scan_unroll", unroll, ("auto", "unrolled", "rolled"))
    count = config.get("loop_count", "argument")
    _check_choice("loop_count", count, ("argument", "fixed"))
    per_call = config.get("steps_per_call", 0) or 0
    return Calls(steps_per_call=_check_int("steps_per_call", per_call), scan_unroll=unroll,
                 loop_count=count)


def _given(group: Any) -> Items:
    """The non-None fields of a config group (`eval`, `fid`) as (name, value) pairs."""
    if group is None:
        return ()
    items = group.items() if hasattr(group, "items") else ()
    return tuple((k, v) for k, v in items if v is not None)


def _dataset(config: ml_collections.ConfigDict) -> data_registry.Dataset:
    """The dataset of `config.dataset` (`gancmp.data.registry`): a registered name, or a user's
    `folder:PATH[@HxW]` / `npz:PATH[@HxW]` whose files exist and are readable (headers only) and
    hold at least one batch of training images. ConfigError naming config.dataset (or
    batch_size) otherwise."""
    name = config.dataset
    if not data_registry.is_user_dataset(name) and name not in data_registry.names():
        raise ConfigError(f"config.dataset: unknown {name!r}; allowed: "
                          f"{', '.join(data_registry.names())}, or your own images: "
                          f"{data_source.USER_HELP}")
    try:
        dataset = data_registry.get(name)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"config.dataset: {e.args[0] if e.args else e}") from None
    n = dataset.size("train")
    if data_registry.is_user_dataset(name) and isinstance(config.batch_size, int) and (
            n is not None and config.batch_size > n):
        raise ConfigError(f"config.batch_size: {config.batch_size} is more than the {n} training "
                          f"images of {name} (the held-out 10 % excluded); lower it")
    return dataset


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
    if "optimizer" in config:
        raise ConfigError("config.optimizer: not a field any more; Adam (the paper's optimizer, "
                          "with config.lr, beta1, beta2) is the only one: delete the line")
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
    """Numeric hyperparameters are real numbers; Adam's lr, β2 > 0 and β1 in [0, 1); a penalty
    weight >= 0 and a clip bound > 0 (disc_iters is checked with the budget)."""
    for name, value in hp.items():
        if name in methods.STATIC_HPARAMS:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"config.{name}: must be a number, got {value!r}")
    for name in ("lr", "beta2"):
        if not hp[name] > 0:
            raise ConfigError(f"config.{name}: must be > 0, got {hp[name]}")
    if not 0 <= hp["beta1"] < 1:
        raise ConfigError(f"config.beta1: must be in [0, 1), got {hp['beta1']}")
    if not hp.get("penalty_weight", 0) >= 0:
        raise ConfigError(f"config.penalty_weight: must be >= 0 (0: no penalty), got "
                          f"{hp['penalty_weight']}")
    if not hp.get("clip", 1) > 0:
        raise ConfigError(f"config.clip: must be > 0 (D's weights are clipped to [-clip, clip]), "
                          f"got {hp['clip']}")


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
        _check_choice("fid.matmul_precision", fid.get("matmul_precision", "float32"),
                      precision.METRIC_NAMES)
    _check_metrics(config.get("eval") or {})


def _check_metrics(ev: Mapping[str, Any]) -> None:
    """`eval.metrics` names metrics of `gancmp.metrics.suite` and `eval.main_metric` is one of
    the values they record (a ConfigError naming the field and the allowed values)."""
    if not (ev.get("metrics") or ev.get("main_metric")):
        return
    from gancmp.metrics import suite  # noqa: PLC0415 (light: no JAX)

    try:
        chosen = suite.parse(ev.get("metrics"))
    except ValueError as e:
        raise ConfigError(f"config.eval.metrics: {e}") from None
    main, allowed = ev.get("main_metric"), suite.directions(chosen)
    if main and main not in allowed:
        raise ConfigError(f"config.eval.main_metric: {main!r} is not a value of the chosen "
                          f"metrics; allowed: {', '.join(allowed)}")


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


def _check_int(field: str, value: Any, positive: bool = False, allowed: str = "") -> int:
    """`value` when it is an integer (> 0 with `positive`, else >= 0); ConfigError naming
    config.<field> and the allowed values (`allowed`, then the integers) otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < int(positive):
        kind = "a positive integer" if positive else "an integer >= 0"
        raise ConfigError(f"config.{field}: must be {allowed}{kind}, got {value!r}")
    return value

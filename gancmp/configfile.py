"""Config files: a Python file whose `get_config()` returns an `ml_collections.ConfigDict`
(big_vision's convention), for trials (configs/*.py) and sweeps (configs/sweeps/*.py)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys

import ml_collections

from gancmp.train.config import ConfigError, add_module_dirs, check_fields


def load_config_file(path: str, **overrides) -> ml_collections.ConfigDict:
    """`get_config()` of the Python config file at `path` (absolute, or relative to the working
    directory), with the fields in `overrides` replaced (`ConfigDict.update`).

    The file runs as a module registered in `sys.modules` under a name unique to its path, so
    what it defines (dataclasses, pickled functions) can be found by module name. Its directory
    joins the places modules are imported from (`gancmp.train.config.add_module_dirs`), so the
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

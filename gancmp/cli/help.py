"""Text the `gancmp` command line prints about itself: a command's flags (`gancmp <command> --help`)
and the one line that replaces the traceback of a bad flag or of an error of the user's input or
environment."""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Iterable, Sequence

from absl import flags

HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")
CONFIG_FLAG_NOTE = ("Any field of the config file can be set on the command line as "
                    "--{name}.FIELD=VALUE (the fields: gancmp/config.py:base_config; their "
                    "names: `gancmp list methods` for the hyperparameters).")


def wants_help(args: Sequence[str]) -> bool:
    """Whether a command's arguments ask for its help."""
    return any(a in HELP_FLAGS for a in args)


def _flag_line(flag: flags.Flag) -> str:
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    values = getattr(flag.parser, "enum_values", None)
    choices = f" One of: {', '.join(values)}." if values else ""
    # a config file flag's default is the loaded config: show its file instead
    default = getattr(flag, "default_unparsed", flag.default)
    if isinstance(default, bool):
        default = str(default).lower()
    elif isinstance(default, list):
        default = ",".join(map(str, default))
    shown = default is not None and default != ""
    text = f"{flag.help}{choices}" + (f" (default: {default})" if shown else "")
    if flag.name == "config" or flag.name.endswith("_config"):
        text += " " + CONFIG_FLAG_NOTE.format(name=flag.name)
    body = textwrap.fill(text, width=96, initial_indent="    ", subsequent_indent="    ")
    return f"  {name}\n{body}"


def command_help(command: str, usage: str, names: Iterable[str],
                 values: flags.FlagValues = flags.FLAGS) -> str:
    """The help of `gancmp <command>`: its lines of the general `usage` text, then each of its
    flags (`names`, as defined by the command) with its help text and default."""
    lines = [line.strip() for line in usage.splitlines()
             if re.search(rf"(^\s+{re.escape(command)}\s)|gancmp {re.escape(command)}\b", line)]
    out = [f"usage: gancmp {command} [flags]", *(f"  {line}" for line in lines), "", "flags:"]
    out.extend(_flag_line(values[name]) for name in sorted(names))
    return "\n".join(out)


def _unwrap(error: BaseException) -> BaseException:
    """The innermost exception of exceptions that only carry another one as their argument
    (ml_collections raises AttributeError(KeyError(...)) for an unknown override)."""
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    return error


def message(error: BaseException) -> str:
    """An exception's text as one readable line: a KeyError's message, not its repr."""
    error = _unwrap(error)
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return text or type(error).__name__


def flag_error(error: BaseException, args: Sequence[str]) -> str:
    """The one line for an error parsing a command's flags `args`. An unknown config field
    (`--config.num_steps=10`) reads "--config.num_steps: unknown field; did you mean
    --config.num_d_steps?"."""
    inner = _unwrap(error)
    if isinstance(inner, KeyError) and inner.args and isinstance(inner.args[0], str):
        key, *rest = inner.args[0].splitlines()
        key = key.strip().strip("'\"")
        flag = next((a.lstrip("-").split("=")[0] for a in args if a.startswith("-")
                     and a.lstrip("-").split("=")[0].endswith(f".{key}")), key)
        close = re.search(r'Did you mean "([^"]+)"', " ".join(rest))
        prefix = flag.rsplit(".", 1)[0] + "." if "." in flag else ""
        hint = f"; did you mean --{prefix}{close.group(1)}?" if close else ""
        return f"--{flag}: unknown field{hint}"
    return message(error)


def config_file_error(error: BaseException, path: str | None) -> str | None:
    """The one line for an error raised while the config file `path` was loaded (a flag parse of
    --config): its syntax error, an import it cannot make, no `get_config`, or what its
    `get_config()` raised, each with the file and line; None when `error` did not come from the
    file. (ml_collections reports these as a traceback, or flattened into one long line.)"""
    if not path:
        return None
    path = path.split(":", 1)[0]  # config.py:ARG passes ARG to get_config
    where, chain = f"--config: {path}", []
    while error is not None and error not in chain:  # absl and ml_collections wrap the error
        chain.append(error)
        error = error.__cause__ or error.__context__
    for err in chain:
        if isinstance(err, SyntaxError) and err.filename:
            same = os.path.realpath(err.filename) == os.path.realpath(path)
            return (f"{where}{'' if same else ': ' + err.filename}, line {err.lineno}: "
                    f"{err.msg} (a config file is Python: fix the line)")
        line = _line_in(err, path)
        if line is None:
            continue
        text = message(err)
        if isinstance(err, ImportError):
            return (f"{where}, line {line}: {text} (modules are found on PYTHONPATH, next to "
                    "the config file and in the current directory)")
        text = text if len(text) <= 300 else text[:300] + " ..."
        return f"{where}, line {line}: get_config() failed: {type(err).__name__}: {text}"
    if any(isinstance(e, AttributeError) and "get_config" in str(e) for e in chain):
        return (f"{where}: defines no get_config() (a config file is a Python file whose "
                "get_config() returns an ml_collections.ConfigDict, e.g. configs/ring8_mlp.py)")
    return None


def _line_in(error: BaseException, path: str) -> int | None:
    """The line of the last frame of `error`'s traceback that runs the file `path`, or None."""
    target, line = os.path.realpath(path), None
    tb = error.__traceback__
    while tb is not None:
        if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line

"""Experiment files and command-line overrides.

An experiment is a Python file with `get_config(arg: str | None = None) -> ml_collections.ConfigDict`
(big_vision style, see configs/). `audiorep pretrain --config configs/x.py[:arg] --config.train.steps=100`
loads the file and applies `--config.<dotted.path>=<value>` overrides, each parsed by the type of the
field it replaces. A path that is not in the config is an error that lists the nearest field names.

Used by audiorep/cli/pretrain.py (`audiorep pretrain`) and by tests; knows nothing about training itself.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from audiorep.errors import AudiorepError


class ConfigError(AudiorepError, ValueError):
    """A config file or an override that cannot be used; the message says how to fix it."""


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Run `get_config` of an experiment file.  'configs/x.py' or 'configs/x.py:arg' -> ConfigDict."""
    path, arg = spec, None
    if ":" in spec and not Path(spec).exists():
        path, arg = spec.rsplit(":", 1)
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path} not found. Pass a Python file with get_config(), e.g. "
                          f"--config configs/tiny_ssast.py")
    name = f"_audiorep_config_{abs(hash(str(file.resolve())))}"
    spec_ = importlib.util.spec_from_file_location(name, file)
    if spec_ is None or spec_.loader is None:
        raise ConfigError(f"cannot import {path}: not a Python file.")
    module = importlib.util.module_from_spec(spec_)
    sys.path.insert(0, str(file.resolve().parent))  # tiny_*.py import their big sibling by name
    try:
        spec_.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config() function; an experiment file defines "
                          f"`def get_config(arg=None) -> ml_collections.ConfigDict`.")
    config = module.get_config(arg) if arg is not None else module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() returned {type(config).__name__}, expected ConfigDict.")
    return config


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """An experiment file's argument (big_vision style): 'steps=50,seed=1' over typed defaults.

    `configs/x.py:steps=50` hands 'steps=50' to get_config; each value is parsed by the type of its default
    (as --config overrides are), and a key without a default is an error listing the known ones.
    """
    out = ml_collections.ConfigDict(defaults)
    for item in (arg or "").split(","):
        if not item.strip():
            continue
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in defaults:
            raise ConfigError(f"config argument {item.strip()!r}: write key=value with key one of {sorted(defaults)} "
                              f"(e.g. --config configs/x.py:{next(iter(defaults), 'key')}=...).")
        out[key] = parse_value(text.strip(), defaults[key], key)
    return out


def load_named_directory(field: str, path: str | None, load: Callable[[str], Any], *, what: str, missing: str,
                         errors: tuple[type[Exception], ...]) -> Any:
    """`load(path)` for the directory a config field names (a teacher, a tokenizer); an empty field raises
    ConfigError(`missing`), a directory `load` refuses (with one of `errors`, or as missing) a ConfigError that
    names `field` and says why."""
    if not path:
        raise ConfigError(missing)
    try:
        return load(path)
    except (FileNotFoundError, *errors) as err:
        raise ConfigError(f"{field}={path!r} is not a usable {what} directory: {err}") from err


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    """Every leaf field as {'train.steps': 100, ...}."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _all_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, ml_collections.ConfigDict):
            paths.extend(_all_paths(value, path + "."))
    return paths


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_value(text: str, current: Any, path: str = "") -> Any:
    """Parse `text` as the type of `current` (the field's present value).

    bool accepts true/false/1/0/yes/no; int accepts 400_000 and 1e5 when whole; tuples and lists take
    Python literals or comma lists; a None field takes any Python literal, else the raw string.
    """
    where = f"--config.{path}" if path else "value"
    low = text.strip().lower()
    if isinstance(current, bool):
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{where}={text!r}: expected a boolean (true/false).")
    if isinstance(current, int):
        try:
            return int(text.replace("_", ""))
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = None
            if f is not None and f.is_integer():
                return int(f)
            raise ConfigError(f"{where}={text!r}: expected an integer (e.g. 100 or 400_000).") from None
    if isinstance(current, float):
        try:
            return float(text.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{where}={text!r}: expected a number (e.g. 1e-4).") from None
    if isinstance(current, str):
        return text
    if isinstance(current, tuple | list):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, tuple | list):
            value = [value]
        if current:  # coerce items to the type of the existing items
            value = [parse_value(str(v), current[0], path) if not isinstance(v, type(current[0])) else v
                     for v in value]
        return type(current)(value)
    if current is None:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    raise ConfigError(f"{where}: fields of type {type(current).__name__} cannot be set from the command line.")


def _unknown(config: ml_collections.ConfigDict, path: str) -> ConfigError:
    paths = _all_paths(config)
    near = difflib.get_close_matches(path, paths, n=5, cutoff=0.5)
    last = path.rsplit(".", 1)[-1]
    near += [p for p in paths if p.rsplit(".", 1)[-1] == last and p not in near][:3]
    hint = f" Did you mean: {', '.join('--config.' + p for p in near)}?" if near else ""
    return ConfigError(f"--config.{path}: no such field in this config.{hint} "
                       f"(`audiorep pretrain --config FILE --show-config` lists every field.)")


def set_field(config: ml_collections.ConfigDict, path: str, text: str) -> None:
    """Apply one override, parsing `text` by the type of the field at dotted `path`."""
    node = config
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
            raise _unknown(config, ".".join(parts[: i + 1]) if part not in node else path)
        node = node[part]
    leaf = parts[-1]
    if leaf not in node:
        raise _unknown(config, path)
    if isinstance(node[leaf], ml_collections.ConfigDict):
        raise ConfigError(f"--config.{path} is a group of fields, not one value; set one of its fields, "
                          f"e.g. --config.{path}.{next(iter(node[leaf].keys()), 'x')}=...")
    node[leaf] = parse_value(text, node[leaf], path)


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate `--config.a.b=v` / `--config.a.b v` overrides from the other arguments."""
    rest, overrides = [], []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" in body:
                path, value = body.split("=", 1)
            else:
                if i + 1 >= len(args):
                    raise ConfigError(f"{arg} has no value; write {arg}=VALUE.")
                path, value = body, args[i + 1]
                i += 1
            overrides.append((path, value))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[tuple[str, str] | str]) -> None:
    """Apply overrides in order; strings may be 'a.b=v' or '--config.a.b=v'."""
    for item in overrides:
        if isinstance(item, str):
            body = item.removeprefix("--config.")
            if "=" not in body:
                raise ConfigError(f"override {item!r} needs the form a.b=value.")
            item = tuple(body.split("=", 1))
        set_field(config, item[0], item[1])

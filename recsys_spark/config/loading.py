"""Building the Config: a parsed YAML mapping plus `section.key=value` overrides, each key and value
checked by name (ConfigError) before Spark starts; the one override parser (`--set`, `--param`,
tune.params)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Optional

import yaml

from recsys_spark.config.checks import ConfigError
from recsys_spark.config.secrets import shown
from recsys_spark.config.sections import Config
from recsys_spark.config.yaml_text import LEADING_ZERO, load_yaml


def load_config(data: Optional[dict] = None, overrides: Optional[list[str]] = None) -> Config:
    """Build the Config from a parsed YAML mapping (storage.readers.read_config_file reads one)
    and `section.key=value` overrides, checked field by field and across fields
    (Config.validate), before anything starts.

    Without a mapping the defaults below apply; `conf/local.yaml` spells them out.
    """
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections; got {type(data).__name__}")
    data = dict(data or {})
    for item in overrides or []:
        set_key(data, *parse_override(item))
    _merge_mapping_defaults(data)
    cfg = build(Config, data, "")
    cfg.validate()
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value` (a `--set` option) -> (key, value read as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set takes section.key=value; got {text!r}")
    if not raw.strip():
        return key.strip(), None
    try:
        return key.strip(), load_yaml(raw)
    except yaml.YAMLError:  # not YAML (`***`, `|`): the text as written
        return key.strip(), raw.strip()


def parse_param(text: str) -> tuple[str, list]:
    """`model.rank=32,64` (a `tune --param` option) -> ("model.rank", [32, 64]); values read as YAML."""
    key, sep, raw = text.partition("=")
    values = load_yaml(f"[{raw}]") if sep and raw.strip() else None
    if not key.strip() or not values:
        raise ConfigError(f"--param takes section.key=value1,value2,...; got {text!r}")
    return key.strip(), values


def set_key(data: dict, key: str, value: Any, must_exist: bool = False) -> None:
    """Set `section.key` in a nested config dict (the one way every override is applied);
    with must_exist, a key that is not already there is an error (tune.params name keys of a
    complete config).

    Below a mapping key (spark.conf, tune.params) the rest is one entry, dots and all:
    `spark.conf.spark.driver.memory` sets the entry spark.driver.memory, and a mapping given for
    the whole key merges into the one already there.
    """
    parts = key_parts(key)
    node = data
    for part in parts[:-1]:
        if must_exist and not isinstance(node.get(part), dict):
            raise ConfigError(f"tune.params: {key} is not a conf key (no section {part})")
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
    entry = ".".join(parts[:-1]) in MAPPING_KEYS
    if must_exist and not entry and parts[-1] not in node:
        raise ConfigError(f"tune.params: unknown conf key {key}")
    if key in MAPPING_KEYS and isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
        value = {**node[parts[-1]], **value}
    node[parts[-1]] = value


def _mapping_keys(cls, prefix: str = "") -> set[str]:
    """Dotted names of the mapping-valued keys of a config dataclass (spark.conf, tune.params)."""
    found = set()
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            found |= _mapping_keys(hint, f"{prefix}{f.name}.")
        elif hint is dict or typing.get_origin(hint) is dict:
            found.add(prefix + f.name)
    return found


def key_parts(key: str) -> list[str]:
    """`spark.conf.spark.driver.memory` -> [spark, conf, spark.driver.memory]; `model.wals.reg` -> 3 parts."""
    parts = key.split(".")
    for cut in range(1, len(parts)):
        if ".".join(parts[:cut]) in MAPPING_KEYS:
            return parts[:cut] + [".".join(parts[cut:])]
    return parts


def _merge_mapping_defaults(data: dict) -> None:
    """A mapping key given in the YAML or by --set adds to its default entries (spark.conf keeps
    spark.driver.memory unless it names it); an entry set to null removes it."""
    defaults = Config().to_dict()
    for key in MAPPING_KEYS:
        section, name = key.split(".")
        given = (data.get(section) or {}).get(name) if isinstance(data.get(section), dict) else None
        if isinstance(given, dict):
            merged = {**defaults[section][name], **{str(k): v for k, v in given.items()}}
            data[section][name] = {k: v for k, v in merged.items() if v is not None}


def with_overrides(cfg: Config, overrides: dict) -> Config:
    """A new Config with `section.key: value` overrides applied and validated."""
    data = cfg.to_dict()
    for key, value in overrides.items():
        set_key(data, key, value, must_exist=True)
    new = build(Config, data, "")
    new.validate()
    return new


MAPPING_KEYS = _mapping_keys(Config)


def build(cls, data: Any, prefix: str):
    """Build dataclass `cls` from a dict, rejecting unknown keys and wrong types by name."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping; got {shown(prefix, data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key {prefix}{key}; known keys here: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            if isinstance(value, bool) and "booleans" in f.metadata:  # YAML 1.1 reads off/on (no/yes) as false/true
                value = f.metadata["booleans"][value]
            kwargs[f.name] = _coerce(hints[f.name], value, prefix + f.name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{prefix.rstrip('.')}: {exc}") from None


def _coerce(hint, value: Any, key: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    if origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false; got {shown(key, value)}")
    if hint in (int, float) and isinstance(value, str) and LEADING_ZERO.match(value):
        raise ConfigError(f"{key}: {value} has a leading zero, which YAML 1.1 reads as an octal number and "
                          "YAML 1.2 as a decimal one; write it without the leading zero")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer; got {shown(key, value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number; got {shown(key, value)}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string; got {shown(key, value)}")
    if hint is list or origin is list:
        if isinstance(value, list):
            return [str(v) for v in value]
        raise ConfigError(f"{key} must be a list; got {shown(key, value)}")
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        # Not echoed: `--set spark.conf=KEY=SECRET` would print the secret.
        raise ConfigError(f"{key} must be a mapping (key: value, ...); got a {type(value).__name__}")
    return value

"""The error and value checks shared by the configuration dataclasses."""

from __future__ import annotations

from typing import Any

from recsys_spark.errors import ConfigError


def _check_choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _check_min(key: str, value: float, minimum: float, strict: bool = False) -> None:
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ConfigError(f"{key} must be {relation} {minimum}; got {value!r}")


def _check_fraction(key: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{key} must be in [0, 1); got {value!r}")

"""The default tuning search space of each model kind, and how a space is written.

A space maps conf keys to either a list of values (choices) or a range `{low: L, high: H}`
(`log: true` samples it on a log scale); `tune.params` replaces the default space when given.
Ranges are sampled by `tune.method: halving` only (grid and random take lists).
"""

from __future__ import annotations

from typing import Any

from recsys_spark.config.checks import ConfigError
from recsys_spark.kernels.confidence import CONFIDENCE_SCHEMES


def log_range(low: float, high: float) -> dict:
    return {"low": low, "high": high, "log": True}


# What "Revisiting the Performance of iALS on Item Recommendation Benchmarks" (Rendle et al.) says
# matters for iALS: regularisation with frequency scaling, the unobserved weight, the embedding
# dimension; here also the confidence transform and its scale. One line per model kind.
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "wals": {
        "model.wals.reg": log_range(0.003, 0.1),
        "model.wals.reg_exponent": {"low": 0.5, "high": 1.0},
        "model.wals.unobserved_weight": log_range(0.01, 1.0),
        "model.rank": [32, 64, 128],
        "model.wals.confidence": list(CONFIDENCE_SCHEMES),
        "model.wals.alpha": log_range(0.1, 30.0),
    },
    "ease": {"model.ease.reg": log_range(1.0, 30.0),  # lambda in units of the mean interactions per item
             "model.ease.session_weight": [0.0, 0.5, 1.0, 2.0]},  # no effect on data without time
}
# model.kind=auto tunes the kind it resolves to (models/registry.resolve_kind): ease or wals.
DEFAULT_SPACES["auto"] = {}

# The conf key successive halving raises as its resource (training iterations or epochs); the
# configured value is the full resource. A kind without one trains every trial in full.
RESOURCE_KEYS = {
    "wals": "model.wals.iterations",
    "als": "model.als.max_iter",
    "mf": "model.mf.epochs",
    "two_tower": "model.two_tower.epochs",
    "autoencoder": "model.autoencoder.epochs",
}

RANGE_KEYS = {"low", "high", "log"}


def is_range(spec: Any) -> bool:
    return isinstance(spec, dict)


def check_spec(key: str, spec: Any) -> None:
    """A space entry is a non-empty list of values or a range {low, high[, log]}; ConfigError otherwise."""
    where = f"tune.params.{key}"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where} must be a non-empty list of values or a range {{low: L, high: H}}; got []")
        return
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - RANGE_KEYS:
        raise ConfigError(f"{where} must be a non-empty list of values or a range {{low: L, high: H, log: true}}; "
                          f"got {spec!r}")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise ConfigError(f"{where}: a range needs numbers low < high; got {spec!r}")
    if not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(f"{where}: log must be true or false, and a log range needs low > 0; got {spec!r}")

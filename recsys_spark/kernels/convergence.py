"""The tolerance stop both WALS engines share (kernels/wals_tf.fit, models/wals_spark.fit)."""

from __future__ import annotations


def converged(previous: float, current: float, tolerance: float) -> bool:
    """Whether an iteration that took the loss from `previous` to `current` decreased it by less than
    `tolerance` relative to `previous` (an increase counts as converged too)."""
    return previous - current < tolerance * abs(previous)

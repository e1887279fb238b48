"""The iteration loop and tolerance stop the WALS kernels share (kernels/wals_tf.fit, kernels/wals_cpu.fit;
models/wals_spark.fit uses `converged`)."""

from __future__ import annotations

import time


def converged(previous: float, current: float, tolerance: float) -> bool:
    """Whether an iteration that took the loss from `previous` to `current` decreased it by less than
    `tolerance` relative to `previous` (an increase counts as converged too)."""
    return previous - current < tolerance * abs(previous)


def iterate(step, iterations: int, tolerance: float, start_loss: float | None, on_iteration=None) -> list[dict]:
    """Call step() (one iteration; it returns the loss after it) up to `iterations` times, stopping after
    the first one that converged() from the loss before it (start_loss before the first; None: no early
    stop). Returns the history, one {"iteration", "loss", "seconds"} per iteration (seconds include the
    loss), each passed to on_iteration as it is made."""
    history, previous = [], start_loss
    for iteration in range(1, iterations + 1):
        started = time.perf_counter()
        value = float(step())
        entry = {"iteration": iteration, "loss": value, "seconds": round(time.perf_counter() - started, 4)}
        history.append(entry)
        if on_iteration is not None:
            on_iteration(entry)
        if previous is not None and converged(previous, value, tolerance):
            break
        previous = value
    return history

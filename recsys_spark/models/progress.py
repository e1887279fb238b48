"""Progress of a long loop (training iterations or epochs, a stage's tasks) with an estimate of the
time left: the mean seconds of the units done times the units left."""

from __future__ import annotations


def eta_seconds(elapsed: float, done: int, total: int) -> float | None:
    """Seconds left after `done` of `total` units took `elapsed` seconds; None before the first unit."""
    if done <= 0:
        return None
    return elapsed / done * max(total - done, 0)


def format_seconds(seconds: float) -> str:
    """3.2s, 42s, 3m05s, 1h02m."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(round(seconds)) // 60
    if minutes < 60:
        return f"{minutes}m{int(round(seconds)) % 60:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def time_left(elapsed: float, done: int, total: int) -> str:
    """'12.0s elapsed, ~40s left' (or '~0.0s left' when done)."""
    eta = eta_seconds(elapsed, done, total)
    left = "time left unknown" if eta is None else f"~{format_seconds(eta)} left"
    return f"{format_seconds(elapsed)} elapsed, {left}"


class LoopProgress:
    """Adds up the seconds of a loop's units (iterations, epochs) as they end; `step` returns the
    time_left text after each. `total` is the loop's cap: a loop that stops early ends sooner."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.elapsed = 0.0

    def step(self, seconds: float) -> str:
        self.done += 1
        self.elapsed += seconds
        return time_left(self.elapsed, self.done, self.total)

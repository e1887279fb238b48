"""Progress of a long Spark write (the scoring of every user) for a person reading the log: a daemon
thread polls Spark's status tracker every few seconds and logs each active stage's completed/total
tasks and the time left, e.g. `score: stage 12 12/32 tasks, ~40s left`. Process-level, hence app/."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager

from recsys_spark.models.progress import eta_seconds, format_seconds

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0


class StageClock:
    """Estimates a stage's time left from the tasks it completed since it was first seen (a poll
    sees a stage late, so its tasks done before then carry no timing)."""

    def __init__(self):
        self._first: dict[int, tuple[float, int]] = {}  # stage id -> (time first seen, tasks completed then)

    def line(self, name: str, stages, now: float) -> str | None:
        """'NAME: stage S done/total tasks, ~T left' for each of `stages` (SparkStageInfo-like:
        stageId, numTasks, numCompletedTasks), joined with '; '; None when none has tasks."""
        parts = []
        for stage in stages:
            if stage is None or stage.numTasks <= 0:
                continue
            seen, done_then = self._first.setdefault(stage.stageId, (now, stage.numCompletedTasks))
            done, total = stage.numCompletedTasks, stage.numTasks
            eta = eta_seconds(now - seen, done - done_then, total - done_then)
            left = "time left unknown" if eta is None else f"~{format_seconds(eta)} left"
            parts.append(f"stage {stage.stageId} {done}/{total} tasks, {left}")
        return f"{name}: " + "; ".join(parts) if parts else None


@contextmanager
def task_progress(tracker, name: str, interval: float = POLL_SECONDS):
    """While the block runs, log the active stages' task progress every `interval` seconds (when it
    changed) at INFO. `tracker`: SparkContext.statusTracker(), or anything with its
    getActiveStageIds() and getStageInfo(id)."""
    stop = threading.Event()

    def poll():
        clock, last = StageClock(), None
        while not stop.wait(interval):
            try:
                stages = [tracker.getStageInfo(i) for i in sorted(tracker.getActiveStageIds())]
            except Exception:  # the session went away under us: nothing left to report
                return
            counts = [(s.stageId, s.numCompletedTasks, s.numTasks) for s in stages if s is not None]
            line = clock.line(name, stages, time.time())
            if line is not None and counts != last:
                log.info("%s", line)
            last = counts

    thread = threading.Thread(target=poll, name=f"{name}-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 5)

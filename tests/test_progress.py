"""Progress a person can follow: the time-left arithmetic, the task poller, the console bar off."""

import logging
import time
from collections import namedtuple

import pytest

from recsys_spark.app.progress import StageClock, task_progress
from recsys_spark.app.session import session_settings
from recsys_spark.config import SparkConfig
from recsys_spark.models.progress import LoopProgress, eta_seconds, format_seconds, time_left

Stage = namedtuple("Stage", "stageId numTasks numCompletedTasks")


def test_time_left_is_the_mean_seconds_per_unit_times_the_units_left():
    assert eta_seconds(10.0, 2, 10) == pytest.approx(40.0)  # 5 s a unit, 8 units left
    assert eta_seconds(3.0, 3, 3) == 0.0
    assert eta_seconds(0.0, 0, 10) is None  # nothing done yet: no estimate
    assert eta_seconds(4.0, 5, 4) == 0.0  # never negative
    assert time_left(12.0, 3, 13) == "12s elapsed, ~40s left"
    assert time_left(1.0, 0, 5) == "1.0s elapsed, time left unknown"


def test_loop_progress_adds_up_the_iterations():
    loop = LoopProgress(10)
    texts = [loop.step(s) for s in (1.0, 2.0, 3.0)]
    assert loop.done == 3 and loop.elapsed == pytest.approx(6.0)
    assert texts[-1] == "6.0s elapsed, ~14s left"  # mean 2 s x 7 iterations left
    assert texts[0] == "1.0s elapsed, ~9.0s left"


@pytest.mark.parametrize("seconds, text", [(0.04, "0.0s"), (9.94, "9.9s"), (42.4, "42s"), (185, "3m05s"),
                                           (3725, "1h02m")])
def test_durations_read_as_a_person_writes_them(seconds, text):
    assert format_seconds(seconds) == text


def test_a_stage_is_timed_from_the_tasks_it_completed_after_it_was_first_seen():
    clock = StageClock()
    assert clock.line("score", [Stage(7, 32, 4)], now=100.0) == "score: stage 7 4/32 tasks, time left unknown"
    # 8 tasks in 10 s since first seen: 1.25 s a task, 20 left
    assert clock.line("score", [Stage(7, 32, 12)], now=110.0) == "score: stage 7 12/32 tasks, ~25s left"
    # no task for 10 s more: 2.5 s a task; a stage seen for the first time has no estimate
    assert clock.line("score", [Stage(7, 32, 12), Stage(8, 4, 0), None], now=120.0) == (
        "score: stage 7 12/32 tasks, ~50s left; stage 8 0/4 tasks, time left unknown")
    assert clock.line("score", [], now=130.0) is None


class FakeTracker:
    """A status tracker whose one stage completes a task per poll."""

    def __init__(self):
        self.polls = 0

    def getActiveStageIds(self):
        self.polls += 1
        return [3]

    def getStageInfo(self, stage_id):
        return Stage(stage_id, 10, min(self.polls, 10))


def test_the_poller_logs_while_the_block_runs_and_stops_with_it(caplog):
    tracker = FakeTracker()
    with caplog.at_level(logging.INFO, logger="recsys_spark.app.progress"):
        with task_progress(tracker, "score", interval=0.02):
            time.sleep(0.3)
        polls = tracker.polls
        time.sleep(0.1)
    assert tracker.polls == polls  # stopped with the block
    lines = [r.getMessage() for r in caplog.records if r.name == "recsys_spark.app.progress"]
    assert lines[0] == "score: stage 3 1/10 tasks, time left unknown"
    assert len(lines) >= 3 and all(line.startswith("score: stage 3 ") for line in lines)
    assert "left" in lines[-1] and "unknown" not in lines[-1]


def test_the_poller_reads_a_real_spark_job(spark, caplog):
    def slow(x):
        import time

        time.sleep(0.4)
        return x

    with caplog.at_level(logging.INFO, logger="recsys_spark.app.progress"):
        with task_progress(spark.sparkContext.statusTracker(), "score", interval=0.3):
            assert spark.sparkContext.parallelize(range(8), 8).map(slow).count() == 8
    lines = [r.getMessage() for r in caplog.records if r.name == "recsys_spark.app.progress"]
    assert lines and all("/8 tasks" in line for line in lines), lines


def test_the_console_bar_is_off_unless_spark_submit_turned_it_on():
    cfg = SparkConfig(log_level="WARN")
    assert session_settings(cfg, {})["spark.ui.showConsoleProgress"] == "false"
    submitted = {"spark.ui.showConsoleProgress": "true", "spark.sql.session.timeZone": "Europe/Paris"}
    settings = session_settings(cfg, submitted)
    assert "spark.ui.showConsoleProgress" not in settings  # the builder leaves spark-submit's value
    assert settings["spark.sql.session.timeZone"] == "UTC"  # the other defaults stay the run's
    conf_on = SparkConfig(log_level="WARN", conf={"spark.ui.showConsoleProgress": True})
    assert session_settings(conf_on, {})["spark.ui.showConsoleProgress"] is True

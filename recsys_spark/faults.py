"""Test hooks for fault tests, inert unless the environment variable RECSYS_SPARK_FAULT is set.

- RECSYS_SPARK_FAULT=<point>: the process group is SIGKILLed (driver, JVM and Python workers at
  once) when the run reaches `fault_point(<point>)`. Points: audited (tables staged, audited and
  sealed with the manifest, not yet published), publish_swap (inside publish, after the first
  table's switch), publish_current (rename mode: both tables switched, `current` not yet;
  pointer mode: `current` switched, the partitions not yet converted), published (the date's
  directories switched, its catalog partitions, with output.database, not yet added).
- RECSYS_SPARK_FAULT=task_fails_once: the first attempt of the first task writing user_recs raises,
  so Spark's retry (local[N,2] or spark.task.maxFailures) must produce the same output.
"""

from __future__ import annotations

import os
import signal
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame

VARIABLE = "RECSYS_SPARK_FAULT"
TASK_FAILS_ONCE = "task_fails_once"


def fault_point(name: str) -> None:
    """SIGKILL this process group if the fault hook names this point."""
    if os.environ.get(VARIABLE) == name:
        os.killpg(os.getpgid(0), signal.SIGKILL)


def fail_first_attempt(df: DataFrame) -> DataFrame:
    """`df` unchanged, or (hook set) with its first task failing on its first attempt."""
    if os.environ.get(VARIABLE) != TASK_FAILS_ONCE:
        return df

    def passthrough(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        context = TaskContext.get()
        if context.partitionId() == 0 and context.attemptNumber() == 0:
            raise RuntimeError(f"{VARIABLE}={TASK_FAILS_ONCE}: injected failure of a first attempt")
        yield from batches

    return df.mapInPandas(passthrough, df.schema)

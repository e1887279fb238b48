"""Make a written partition visible: write to a hidden staging directory, then swap it in.

Readers skip names starting with '.', so a half-written run is never read. Re-running a date
replaces that date's directory and touches no other date.
"""

from __future__ import annotations

import logging
import uuid

from pyspark.sql import DataFrame

from recsys_spark import fs
from recsys_spark.schema import RUN_DATE

log = logging.getLogger(__name__)


def partition_path(table_root: str, run_date: str) -> str:
    return f"{table_root}/{RUN_DATE}={run_date}"


def write_partition(df: DataFrame, table_root: str, run_date: str) -> str:
    """Write `df` as the run_date partition of the table at `table_root`; returns its path."""
    spark = df.sparkSession
    token = uuid.uuid4().hex[:12]
    staging = f"{table_root}/.staging-{run_date}-{token}"
    df.write.mode("errorifexists").parquet(staging)
    target = partition_path(table_root, run_date)
    retired = f"{table_root}/.retired-{run_date}-{token}"
    if fs.exists(spark, target):
        fs.rename(spark, target, retired)
    fs.rename(spark, staging, target)
    fs.delete(spark, retired)
    log.info("published %s", target)
    return target

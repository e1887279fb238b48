"""Build the SparkSession in one place."""

from __future__ import annotations

import logging
import os
import sys

from pyspark import SparkConf
from pyspark.sql import SparkSession

from recsys_spark.config import SparkConfig

log = logging.getLogger(__name__)

_DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.parquet.compression.codec": "snappy",
}


def build_session(cfg: SparkConfig) -> SparkSession:
    """Get or create the SparkSession described by `cfg`.

    spark.master None means: what spark-submit's --master set, else local[*].
    """
    submitted = SparkConf().get("spark.master", None)
    master = cfg.master or submitted or "local[*]"
    if master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        # Local Python workers must run this interpreter, or pandas UDFs miss pyarrow.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName(cfg.app_name)
    if cfg.master or not submitted:
        builder = builder.master(master)
    for key, value in {**_DEFAULTS, **cfg.conf}.items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    log.info("Spark %s session on %s", spark.version, spark.sparkContext.master)
    return spark

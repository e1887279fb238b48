"""Build the SparkSession in one place, with the log levels of the libraries under it."""

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
TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"  # TensorFlow's native log: 0 all, 3 none below FATAL
_QUIET_LEVELS = ("WARN", "ERROR", "FATAL", "OFF")


def quiet_libraries(log_level: str) -> dict:
    """Below `log_level` (Spark's names), TensorFlow's native log and py4j's Python log stay quiet,
    in the driver and (through the returned spark.executorEnv entry) in every Python worker.

    At WARN and above TensorFlow logs nothing below FATAL: its native errors on a CPU-only host
    (`failed call to cuInit`) are noise, and a real failure raises in Python. A TF_CPP_MIN_LOG_LEVEL
    already in the environment wins.
    """
    quiet = log_level.upper() in _QUIET_LEVELS
    tf_level = os.environ.setdefault(TF_LOG_LEVEL, "3" if quiet else "0")
    logging.getLogger("py4j").setLevel(logging.WARNING if quiet else logging.NOTSET)
    return {f"spark.executorEnv.{TF_LOG_LEVEL}": tf_level}


def _conf_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


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
    for key, value in {**_DEFAULTS, **quiet_libraries(cfg.log_level), **cfg.conf}.items():
        builder = builder.config(key, _conf_value(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    log.info("Spark %s session on %s", spark.version, spark.sparkContext.master)
    return spark

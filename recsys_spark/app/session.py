"""Build the SparkSession in one place, with the log levels of the libraries under it."""

from __future__ import annotations

import logging
import os
import sys

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from recsys_spark.config import Config, SparkConfig
from recsys_spark.storage import catalog

log = logging.getLogger(__name__)

_DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",  # the log's progress lines (app/progress.py) instead of the bar
    "spark.sql.parquet.compression.codec": "snappy",
}
_SUBMITTED_WINS = ("spark.ui.showConsoleProgress",)  # defaults a spark-submit --conf (or spark-defaults.conf) overrides
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


def submitted_conf() -> dict:
    """The settings spark-submit gave this driver (--master, --conf, spark-defaults.conf); {} when
    no spark-submit started this process. They live in the JVM that started it, so connect to it first."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


def session_master(cfg: SparkConfig, submitted: dict) -> str:
    """spark.master, else what spark-submit's --master set, else local[*]."""
    return cfg.master or submitted.get("spark.master") or "local[*]"


def catalog_conf(cfg: Config, output: str) -> dict:
    """The embedded metastore's settings when the run uses it (storage/catalog.py), else {}; checks
    first that no other process has it open, unless this process's JVM already does."""
    submitted = submitted_conf()
    conf = catalog.embedded_metastore_conf(cfg, output, session_master(cfg.spark, submitted), submitted)
    if conf and SparkContext._active_spark_context is None:
        catalog.check_metastore_free(catalog.metastore_dir(cfg.output, output))
    return conf


def session_settings(cfg: SparkConfig, submitted: dict, extra_conf: dict | None = None) -> dict:
    """What the builder sets: the defaults (less those of _SUBMITTED_WINS that spark-submit set),
    the libraries' log levels, spark.conf, then `extra_conf`."""
    defaults = {k: v for k, v in _DEFAULTS.items() if k not in _SUBMITTED_WINS or k not in submitted}
    return {**defaults, **quiet_libraries(cfg.log_level), **cfg.conf, **(extra_conf or {})}


def build_session(cfg: SparkConfig, extra_conf: dict | None = None) -> SparkSession:
    """Get or create the SparkSession described by `cfg`, plus `extra_conf` (catalog_conf).

    spark.master None means: what spark-submit's --master set, else local[*].
    """
    submitted = submitted_conf()
    master = session_master(cfg, submitted)
    if master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        # Local Python workers must run this interpreter, or pandas UDFs miss pyarrow.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName(cfg.app_name)
    if cfg.master or "spark.master" not in submitted:
        builder = builder.master(master)
    settings = session_settings(cfg, submitted, extra_conf)
    for key, value in settings.items():
        builder = builder.config(key, _conf_value(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    log.info("Spark %s session on %s", spark.version, spark.sparkContext.master)
    return spark

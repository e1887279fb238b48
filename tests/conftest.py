"""One local SparkSession for the whole test session."""

import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from recsys_spark.app.session import build_session
    from recsys_spark.config import SparkConfig

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = build_session(SparkConfig(
        master="local[2,2]",  # a failed task is retried once (tests/test_faults.py injects one)
        app_name="recsys-spark-tests",
        conf={
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "4",
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.memory": "3g",
            "spark.ui.enabled": "false",
        },
    ))
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


@pytest.fixture(autouse=True, scope="module")
def _release_cached_frames():
    """Each module's persisted DataFrames go when it ends, so the shared driver does not fill up."""
    yield
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()

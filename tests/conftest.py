"""One local SparkSession for the whole test session."""

import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests run many small Spark jobs in short-lived JVMs (this one and the CLI subprocesses, which
# inherit it): the quick C1 JIT alone starts them far faster than tiered C2, which pays off only
# in long runs. Production JVMs keep the JDK default.
os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")


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
            "spark.driver.memory": "2g",
            "spark.ui.enabled": "false",
        },
    ))
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()

"""One local SparkSession for the whole test session."""

import dataclasses
import os
import sys

import cpu_accounting
import pytest
from jvm import PAGE_CONF, SQL_CONF, java_options, recording_archive

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# The slowest modules of `make test` (`--cpu-accounting`, 2026-12-08), slowest first. The xdist
# workers take whole modules (--dist loadfile) in collection order, so these start first and no long
# module is left to run alone at the end; the others follow in their usual order.
SLOWEST_MODULES = ("test_faults.py", "test_wals_spark.py", "test_refresh.py", "test_bad_inputs.py",
                   "test_end_to_end.py", "test_publish.py", "test_tune.py", "test_output_safety.py",
                   "test_warm_start.py", "test_stability.py", "test_quality_gate.py", "test_trainers.py",
                   "test_evaluate.py", "test_ease.py")


def pytest_addoption(parser):
    cpu_accounting.add_option(parser)


def pytest_configure(config):
    cpu_accounting.configure(config)


def pytest_collection_modifyitems(items):
    first = {name: rank for rank, name in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: a module's own order stays


TEST_PARTITIONS = "2"  # one shuffle task per core of local[2,2]
PARTITIONS_KEY = "spark.sql.shuffle.partitions"


def _keep_test_partitions_in_commands():
    """Commands run in this process (`main([...])`) get the shared session, and getOrCreate applies
    their spark.conf to it: the default spark.sql.shuffle.partitions (8, for a real machine) would stay
    set for every later test. A command whose config keeps that default runs with the test session's
    value instead; a value a test sets itself still wins."""
    from recsys_spark.app import session as app_session
    from recsys_spark.config.sections import SPARK_CONF

    real = app_session.build_session

    def build_session(cfg, extra_conf=None):
        if str(cfg.conf.get(PARTITIONS_KEY)) == str(SPARK_CONF[PARTITIONS_KEY]):
            cfg = dataclasses.replace(cfg, conf={**cfg.conf, PARTITIONS_KEY: TEST_PARTITIONS})
        return real(cfg, extra_conf)

    app_session.build_session = build_session
    return real


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from recsys_spark.config import SparkConfig

    build_session = _keep_test_partitions_in_commands()
    # The first session of a checkout records the class archive (tests/jvm.py): one worker's JVM, not two.
    record = recording_archive() if os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0" else None

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = build_session(SparkConfig(
        master="local[2,2]",  # a failed task is retried once (tests/test_faults.py injects one)
        app_name="recsys-spark-tests",
        conf={
            # One task per core: createDataFrame slices and Spark ALS blocks follow default.parallelism,
            # scoring runs 4 tasks per unit of it (score.partitions 0); more tasks only add overhead here.
            PARTITIONS_KEY: TEST_PARTITIONS,
            "spark.default.parallelism": "2",
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.memory": "3g",
            "spark.ui.enabled": "false",
            # The test JVM options and memory page (tests/jvm.py: JIT, collector, class archive, 1 MB pages);
            # no effect on what the jobs compute.
            "spark.driver.extraJavaOptions": java_options(record),
            **PAGE_CONF,
            **SQL_CONF,
        },
    ))
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()
    if record is not None:
        _let_jvm_exit()


def _let_jvm_exit() -> None:
    """Tell the session's JVM to exit now, without waiting: it writes the class archive as it exits
    (~10 s, tests/jvm.py). Closing its stdin is how PySpark's gateway learns that the driver is gone."""
    from pyspark import SparkContext

    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is not None and proc.stdin is not None:
        proc.stdin.close()


@pytest.fixture(autouse=True, scope="module")
def _release_cached_frames():
    """Each module's persisted DataFrames go when it ends, so the shared driver does not fill up."""
    yield
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()

"""Catalog tables (output.database): what a query through the catalog sees in a fresh session after
publish, re-publish with retention, and a failed run; the one-process-at-a-time embedded metastore;
schema drift and name checks.

The shared test session is not Hive-enabled, so the catalog runs in subprocesses, three JVMs in all:

1. tests/cli_driver.py: run date 1, run date 2; then it holds its session while a second process
   asks for the metastore (refused at once, before any JVM starts); then, released, it runs date 3
   with RECSYS_SPARK_FAULT=published and is SIGKILLed (driver and JVM) after date 3's directories
   are published and before its catalog step;
2. tests/cli_driver.py, a fresh session: `sql` (what 1 published; date 3 not in the catalog), `clean`
   (adds date 3's partitions), `sql`, re-publish date 2 from other input with
   publish.retention_days removing date 1, `sql` again in the same long-lived session (REFRESH
   TABLE), a failed run of date 2 (input missing) and a query of an unknown table (exit 2);
3. `recsys-spark sql` in a fresh process: what 2 left.

Those three JVMs take more CPU than any other module of the suite, so that test carries the markers
slow and processes and runs in `make test-processes` (CI runs it after `make test`); the tests
below it run in `make test`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jvm import java_options, sql_conf_settings
from pyspark.sql.types import FloatType, IntegerType, StringType, StructField, StructType

from recsys_spark.config import load_config
from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.errors import ConfigError, MetastoreBusyError, SchemaDriftError
from recsys_spark.storage import catalog

D1, D3, D2 = "2026-01-01", "2026-01-04", "2026-01-05"
DRIVER = Path(__file__).with_name("cli_driver.py")
SETTINGS = ["--set", "output.database=recsys", "--quiet"]
FAST = ["--set", "model.kind=popularity", "--set", "score.top_n=5", "--set", "similar.top_k=3",
        "--set", "spark.conf.spark.sql.shuffle.partitions=2", "--set", "spark.conf.spark.ui.enabled=false",
        *sql_conf_settings()]
# One query, several facts: rows per date of both tables, and the runs table's run id and counts.
COUNTS = ("SELECT 'user_recs' AS fact, run_date, count(*) AS n FROM recsys.user_recs GROUP BY run_date "
          "UNION ALL SELECT 'item_similar', run_date, count(*) FROM recsys.item_similar GROUP BY run_date "
          "UNION ALL SELECT concat('runs ', run_id, ' ', row_counts['item_similar']), run_date, row_counts['user_recs'] "
          "FROM recsys.runs ORDER BY 1, 2")
TIMEOUT = 900


def _env() -> dict:
    # A short-lived JVM starts faster with the C1 JIT alone and the class archive (tests/jvm.py).
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "JDK_JAVA_OPTIONS": java_options()}
    env.pop("RECSYS_SPARK_FAULT", None)
    return env


def _drive(commands: list) -> subprocess.Popen:
    # A process group of its own: a fault point SIGKILLs the group (driver, JVM, workers), not pytest.
    return subprocess.Popen([sys.executable, str(DRIVER), json.dumps(commands)], env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys_spark.app.cli", *args], env=_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)


def _tables(stdout: str) -> list[set]:
    """The rows of each table that `DataFrame.show` printed, as sets of (fact, run_date, n)."""
    tables, rows = [], None
    for line in stdout.splitlines():
        if line.startswith("|"):
            cells = tuple(c.strip() for c in line.strip("|").split("|"))
            if cells[0] == "fact":
                rows = set()
                tables.append(rows)
            elif rows is not None:
                rows.add((cells[0], cells[1], int(cells[2])))
    return tables


def _expected(out: Path, *dates: str) -> set:
    """What the catalog must show for the dates: the current manifests' counts and run ids."""
    facts = set()
    for date in dates:
        manifest = json.loads((out / "_runs" / date / "current" / "manifest.json").read_text())
        counts = manifest["row_counts"]
        facts |= {("user_recs", date, counts["user_recs"]), ("item_similar", date, counts["item_similar"]),
                  (f"runs {manifest['run_id']} {counts['item_similar']}", date, counts["user_recs"])}
    return facts


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("catalog")
    for name, seed, users in (("a.csv", 1, 40), ("b.csv", 2, 50)):
        generate_interactions(n_users=users, n_items=20, n_interactions=10 * users, seed=seed).to_csv(tmp / name,
                                                                                                   index=False)
    return tmp


@pytest.mark.slow
@pytest.mark.processes
def test_catalog_sees_each_published_run_whole_in_a_fresh_session(inputs):
    out = inputs / "out"

    def run(source: str, date: str, *extra) -> list:
        return ["run", "--input", str(inputs / source), "--output", str(out), "--run-date", date,
                *FAST, *SETTINGS, *extra]

    sql = ["sql", COUNTS, "--output", str(out), *SETTINGS]

    # Date 3 runs in the same process once released, and is killed between its directory switch
    # and its catalog step.
    killed_run = {"argv": run("a.csv", D3), "env": {"RECSYS_SPARK_FAULT": "published"}}
    first = _drive([run("a.csv", D1), run("a.csv", D2), "hold", killed_run])
    seen = []
    try:
        for line in first.stdout:
            seen.append(line)
            if line.startswith("HOLDING"):
                break
        assert first.poll() is None, first.stderr.read()
        assert [line for line in seen if line.startswith("DONE ")] == ["DONE run 0\n", "DONE run 0\n"], seen
        published = _expected(out, D1, D2)
        busy = _cli("sql", "SELECT 1", "--output", str(out), *SETTINGS)  # fails before starting a JVM
        assert busy.returncode == 5, busy.stderr
        assert busy.stderr.strip().splitlines() == [busy.stderr.strip()]
        assert "another process has the embedded metastore" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        rest, err = first.communicate("\n", timeout=TIMEOUT)
    assert first.returncode == -9, err  # SIGKILLed between the directory switch and the catalog step
    assert "DONE" not in rest and "RC" not in rest, rest  # date 3 never finished
    killed_date = _expected(out, D3)  # its files are published

    unknown = ["sql", "SELECT * FROM recsys.nope", "--output", str(out), *SETTINGS]
    clean = ["clean", "--output", str(out), *SETTINGS]
    second = _drive([sql, clean, sql, run("b.csv", D2, "--set", "publish.retention_days=2"), sql,
                     run("missing.csv", D2), unknown])
    stdout, stderr = second.communicate(timeout=TIMEOUT)
    assert "RC [0, 0, 0, 0, 0, 1, 2]" in stdout, stderr  # the failed run: input missing; the query: no such table
    assert "recsys-spark: error: Spark cannot run the query: [TABLE_OR_VIEW_NOT_FOUND]" in stderr
    after_kill, after_clean, after_republish = _tables(stdout)
    assert after_kill == published  # date 3's files are published, its catalog partitions not
    assert after_clean == published | killed_date  # clean re-synced the catalog with what is published
    republished = _expected(out, D2)
    assert republished.isdisjoint(published)  # other input: other counts and another run id
    republished |= killed_date  # retention (2 days before D2) keeps D3
    assert after_republish == republished  # the same long-lived session sees the new run (REFRESH TABLE)
    assert not (out / "_runs" / D1).exists() and not (out / "user_recs" / f"run_date={D1}").exists()

    fresh = _cli(*sql)
    assert fresh.returncode == 0, fresh.stderr
    assert _tables(fresh.stdout) == [republished]  # the failed run changed nothing; D1 gone from the catalog
    assert (out / "_catalog" / "derby.log").exists() and not Path("derby.log").exists()


# -- no Spark ------------------------------------------------------------------------------------

def _schema(*fields) -> StructType:
    return StructType([StructField(name, kind, True) for name, kind in fields])


def test_schema_drift_names_each_changed_new_and_missing_column():
    published = _schema(("user_id", StringType()), ("rank", IntegerType()), ("score", FloatType()),
                        ("run_date", StringType()))
    assert catalog.schema_drift(published, _schema(("score", FloatType()), ("user_id", StringType()),
                                                   ("rank", IntegerType()))) == []
    drift = catalog.schema_drift(published, _schema(("user_id", IntegerType()), ("rank", IntegerType()),
                                                    ("extra", StringType())))
    assert drift == ["column user_id is string in the catalog but int in this run", "column extra is new in this run",
                     "column score is missing from this run"]


@pytest.mark.parametrize("key, value", [("output.database", "recsys; DROP"), ("output.database", "Recsys"),
                                        ("output.user_recs_table", "recs`x"), ("output.runs_table", "1runs"),
                                        ("output.item_similar_table", "user_recs")])
def test_catalog_names_must_be_plain_distinct_sql_names(key, value):
    with pytest.raises(ConfigError, match=key.split(".")[1] if value != "user_recs" else "must differ"):
        load_config(overrides=[f"{key}={value}"])


def test_catalog_tables_are_quoted_and_recorded():
    cfg = load_config(overrides=["output.database=recsys", "output.runs_table=recsys_runs"])
    tables = catalog.CatalogTables.of(cfg.output)
    assert tables.qualified("user_recs") == "`recsys`.`user_recs`"
    assert tables.record() == {"user_recs": "recsys.user_recs", "item_similar": "recsys.item_similar",
                               "runs": "recsys.recsys_runs"}
    assert catalog.CatalogTables.of(load_config().output) is None


def test_embedded_metastore_only_locally_and_only_when_no_catalog_is_configured(tmp_path):
    out = str(tmp_path / "out")
    cfg = load_config(overrides=["output.database=recsys", "spark.conf.spark.driver.extraJavaOptions=-Dx=1"])
    conf = catalog.embedded_metastore_conf(cfg, out, "local[2]", {})
    assert conf["spark.sql.catalogImplementation"] == "hive"
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={out}/_catalog/metastore_db;create=true")
    assert conf["spark.driver.extraJavaOptions"] == f"-Dx=1 -Dderby.system.home={out}/_catalog"
    assert catalog.embedded_metastore_conf(load_config(), out, "local[2]", {}) == {}
    assert catalog.embedded_metastore_conf(cfg, out, "yarn", {}) == {}
    assert catalog.embedded_metastore_conf(cfg, out, "local[2]", {"spark.sql.catalogImplementation": "hive"}) == {}
    users = load_config(overrides=["output.database=recsys", "spark.conf.spark.hadoop.hive.metastore.uris=thrift://m:9083"])
    assert catalog.embedded_metastore_conf(users, out, "local[2]", {}) == {}
    elsewhere = load_config(overrides=["output.database=recsys", f"output.metastore_dir={tmp_path}/meta"])
    assert catalog.embedded_metastore_conf(elsewhere, "s3a://b/out", "local", {})["spark.sql.warehouse.dir"] == (
        f"{tmp_path}/meta/warehouse")
    with pytest.raises(ConfigError, match="metastore_dir"):
        catalog.embedded_metastore_conf(cfg, "s3a://b/out", "local", {})


def test_a_metastore_another_process_holds_is_a_clear_error(tmp_path):
    lock = tmp_path / "metastore_db" / "dbex.lck"
    lock.parent.mkdir()
    lock.write_bytes(b"")
    catalog.check_metastore_free(str(tmp_path))  # nobody holds it
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'r+b'); "
                               "fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
                               str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MetastoreBusyError, match="another process has the embedded metastore"):
            catalog.check_metastore_free(str(tmp_path))
    finally:
        holder.communicate("", timeout=30)


def test_drift_from_an_existing_catalog_table_is_refused_before_anything_is_created(spark, tmp_path):
    # The shared session's in-memory catalog stands in for the metastore: same DDL, no Hive.
    tables = catalog.CatalogTables.of(load_config(overrides=["output.database=catalog_drift_test"]).output)
    published = _schema(("user_id", StringType()), ("rank", IntegerType()), ("score", FloatType()))
    try:
        catalog.prepare_tables(spark, tables, str(tmp_path), {"user_recs": published})
        assert spark.catalog.tableExists("catalog_drift_test.user_recs")
        catalog.prepare_tables(spark, tables, str(tmp_path), {"user_recs": published})  # no drift: nothing to do
        drifted = _schema(("user_id", StringType()), ("rank", IntegerType()), ("score", StringType()))
        with pytest.raises(SchemaDriftError, match="catalog_drift_test.user_recs: column score is float in the "
                                                   "catalog but string in this run"):
            catalog.prepare_tables(spark, tables, str(tmp_path), {"user_recs": drifted, "runs": catalog.RUNS_SCHEMA})
        assert not spark.catalog.tableExists("catalog_drift_test.runs")
        assert spark.table("catalog_drift_test.user_recs").schema["score"].dataType == FloatType()
    finally:
        spark.sql("DROP DATABASE IF EXISTS catalog_drift_test CASCADE")

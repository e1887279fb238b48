"""The published tables in the Spark session's catalog (output.database; docs/publishing.md).

With output.database set, the database and one external, run_date-partitioned table per published
directory (user_recs, item_similar, runs) are created when missing; each date's partition points
at the date's partition directory, whose content publish.py switches in place, so the location
never changes on a re-publish and a query sees the old run or the new one. A staged table whose
columns differ from its catalog table's is refused before anything is published.

A local run whose Spark conf names no catalog gets Spark's embedded Hive metastore (Derby) under
output.metastore_dir; any other session keeps the catalog it has.

SQL is built only from names checked as `[a-z][a-z0-9_]*` (quoted with backticks), the run date
(YYYY-MM-DD) and locations free of quotes and backslashes; nothing else is interpolated.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql.types import (
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from recsys_spark.config import Config, OutputConfig
from recsys_spark.data.schema import ITEM_SIMILAR, RUN_DATE, RUNS_TABLE, USER_RECS
from recsys_spark.errors import ConfigError, MetastoreBusyError, SchemaDriftError, UnsafePathError
from recsys_spark.storage import fs
from recsys_spark.storage.layout import DateLayout, check_name, check_run_date, under

log = logging.getLogger(__name__)

CATALOG_DIR = "_catalog"  # the default metastore_dir under the output ('_': path readers skip it)
# Spark settings by which a user (or spark-submit's conf) has chosen a catalog: never overridden.
CATALOG_PREFIXES = ("spark.sql.catalogImplementation", "spark.sql.catalog.", "spark.hadoop.javax.jdo.",
                    "spark.hadoop.hive.metastore.", "spark.sql.hive.metastore.", "spark.hadoop.hive.")
JAVA_OPTIONS = "spark.driver.extraJavaOptions"

RUNS_SCHEMA = StructType([
    StructField("run_id", StringType(), False),
    StructField("created_at", TimestampType(), True),
    StructField("model_kind", StringType(), True),
    StructField("row_counts", MapType(StringType(), LongType()), True),
    StructField("metrics", MapType(StringType(), MapType(StringType(), DoubleType())), True),
    StructField("compared_with_run", StringType(), True),
    StructField("manifest", StringType(), True),
])


# -- the session's catalog --------------------------------------------------------------------

def user_chose_catalog(conf: dict) -> bool:
    """True when `conf` (the user's spark.conf, or spark-submit's) sets any catalog or metastore key."""
    return any(str(key).startswith(CATALOG_PREFIXES) for key in conf)


def metastore_dir(output: OutputConfig, output_path: str) -> str:
    """The embedded metastore's local directory: output.metastore_dir, else OUTPUT/_catalog (absolute)."""
    directory = output.metastore_dir
    if directory is None:
        if "://" in output_path and not output_path.startswith("file:"):
            raise ConfigError(f"the embedded metastore needs a local directory and the output {output_path} is not "
                              "local: set output.metastore_dir, or configure a catalog in spark.conf")
        directory = f"{output_path.removeprefix('file:').rstrip('/')}/{CATALOG_DIR}"
    directory = os.path.abspath(directory.removeprefix("file:"))
    if any(c.isspace() or c in ";'\"\\" for c in directory):
        raise ConfigError(f"output.metastore_dir must not contain spaces, quotes, backslashes or ';'; got {directory!r}")
    return directory


def embedded_metastore_conf(cfg: Config, output_path: str, master: str, submitted: dict) -> dict:
    """The Spark settings of the embedded Derby metastore, or {} when the session keeps its own
    catalog: no output.database, a cluster master, or a catalog chosen in spark.conf or by spark-submit."""
    if cfg.output.database is None or not master.startswith("local"):
        return {}
    if user_chose_catalog(cfg.spark.conf) or user_chose_catalog(submitted):
        return {}
    directory = metastore_dir(cfg.output, output_path)
    java_options = " ".join(filter(None, [str(cfg.spark.conf.get(JAVA_OPTIONS) or submitted.get(JAVA_OPTIONS) or ""),
                                          f"-Dderby.system.home={directory}"]))  # derby.log there, not in the cwd
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={directory}/metastore_db;create=true",
        "spark.sql.warehouse.dir": f"{directory}/warehouse",
        JAVA_OPTIONS: java_options,
    }


def check_metastore_free(directory: str) -> None:
    """Raise MetastoreBusyError when another process has the embedded metastore under `directory`
    open (Derby holds a lock on metastore_db/dbex.lck while booted). Call before this process's JVM opens it."""
    lock_file = os.path.join(directory, "metastore_db", "dbex.lck")
    try:
        handle = open(lock_file, "r+b")
    except FileNotFoundError:
        return
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise MetastoreBusyError(
                f"another process has the embedded metastore {directory} open (Derby admits one process at a time): "
                "wait for it to end, or configure a shared metastore in spark.conf") from None
        fcntl.lockf(handle, fcntl.LOCK_UN)


# -- tables ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CatalogTables:
    """The catalog names of the published tables: directory name -> `database`.`table`."""
    database: str
    names: dict

    @classmethod
    def of(cls, output: OutputConfig) -> CatalogTables | None:
        """The catalog tables of output.database, or None when it is not set."""
        if output.database is None:
            return None
        return cls(check_name(output.database), {USER_RECS: check_name(output.user_recs_table),
                                                 ITEM_SIMILAR: check_name(output.item_similar_table),
                                                 RUNS_TABLE: check_name(output.runs_table)})

    def qualified(self, table: str) -> str:
        return f"`{self.database}`.`{self.names[table]}`"

    def record(self) -> dict:
        """What the manifest records: table directory -> database.table."""
        return {table: f"{self.database}.{name}" for table, name in self.names.items()}


def schema_drift(catalog: StructType, staged: StructType) -> list[str]:
    """How the staged columns differ from the catalog table's (without run_date), by name and type;
    empty when they agree. Order and nullability do not matter: Parquet columns are read by name."""
    def columns(schema: StructType) -> dict:
        return {f.name.lower(): f.dataType.simpleString() for f in schema.fields if f.name.lower() != RUN_DATE}

    old, new = columns(catalog), columns(staged)
    drift = [f"column {name} is {old[name]} in the catalog but {new[name]} in this run"
             for name in old if name in new and old[name] != new[name]]
    drift += [f"column {name} is new in this run" for name in new if name not in old]
    drift += [f"column {name} is missing from this run" for name in old if name not in new]
    return drift


def _location(spark: SparkSession, path: str) -> str:
    """`path` fully qualified, refused if it could break out of a SQL string literal."""
    location = fs.qualify(spark, path)
    if any(c in location for c in "'\\\n\r\x00`"):
        raise UnsafePathError(f"a catalog table location must not contain quotes or backslashes; got {location!r}")
    return location


def _column_list(schema: StructType) -> str:
    return ", ".join(f"`{check_name(f.name)}` {f.dataType.simpleString()}" for f in schema.fields
                     if f.name != RUN_DATE)


def prepare_tables(spark: SparkSession, tables: CatalogTables, root: str, staged: dict[str, StructType]) -> None:
    """Check every staged table (directory name -> schema) against its catalog table and raise
    SchemaDriftError on any difference; then create the database and the missing tables. Nothing
    is created when a table drifted."""
    existing = {t: spark.table(tables.qualified(t)).schema for t in staged if _exists(spark, tables, t)}
    problems = [f"{tables.record()[t]}: {'; '.join(drift)}" for t, schema in existing.items()
                if (drift := schema_drift(schema, staged[t]))]
    if problems:
        raise SchemaDriftError("the run's tables no longer match their catalog tables, so nothing was published ("
                               + " | ".join(problems) + "): keep the columns, or give the tables new names "
                               "(output.*_table) or another output.database")
    if not spark.catalog.databaseExists(tables.database):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS `{tables.database}`")
    for table, schema in staged.items():
        if table not in existing:
            table_root = under(root, check_name(table))
            if not fs.exists(spark, table_root):  # Spark looks for the location's metadata
                fs.mkdirs(spark, table_root)
            location = _location(spark, table_root)
            spark.sql(f"CREATE TABLE IF NOT EXISTS {tables.qualified(table)} ({_column_list(schema)}, "
                      f"`{RUN_DATE}` STRING) USING parquet PARTITIONED BY (`{RUN_DATE}`) LOCATION '{location}'")
            log.info("created catalog table %s at %s", tables.record()[table], location)


def _exists(spark: SparkSession, tables: CatalogTables, table: str) -> bool:
    return spark.catalog.tableExists(f"{tables.database}.{tables.names[table]}")


def publish_partitions(spark: SparkSession, tables: CatalogTables, layout: DateLayout, published: list[str]) -> None:
    """The last step of a publish: the date's partition of each published table added (or pointed
    at the date's partition directory), of the others dropped, and every table refreshed."""
    run_date = check_run_date(layout.run_date)
    for table in tables.names:
        if not _exists(spark, tables, table):
            continue
        name = tables.qualified(table)
        if table in published:
            location = _location(spark, layout.partition(table))
            spark.sql(f"ALTER TABLE {name} ADD IF NOT EXISTS PARTITION (`{RUN_DATE}`='{run_date}') "
                      f"LOCATION '{location}'")
            spark.sql(f"ALTER TABLE {name} PARTITION (`{RUN_DATE}`='{run_date}') SET LOCATION '{location}'")
        else:
            spark.sql(f"ALTER TABLE {name} DROP IF EXISTS PARTITION (`{RUN_DATE}`='{run_date}')")
        spark.sql(f"REFRESH TABLE {name}")  # this session's cached listing of the table


def drop_partitions(spark: SparkSession, tables: CatalogTables, run_date: str) -> None:
    """Drop the date's partition of every catalog table (retention, before its directories go);
    external tables: the files stay for the caller to remove."""
    run_date = check_run_date(run_date)
    for table in tables.names:
        if _exists(spark, tables, table):
            spark.sql(f"ALTER TABLE {tables.qualified(table)} DROP IF EXISTS PARTITION (`{RUN_DATE}`='{run_date}')")
            spark.sql(f"REFRESH TABLE {tables.qualified(table)}")


def runs_row(manifest: dict) -> tuple:
    """The runs table's row (RUNS_SCHEMA) of a manifest."""
    metrics = manifest.get("metrics")
    return (
        manifest["run_id"],
        dt.datetime.fromisoformat(manifest["created_at"]) if manifest.get("created_at") else None,
        (manifest.get("model") or {}).get("kind"),
        {k: int(v) for k, v in (manifest.get("row_counts") or {}).items()},
        None if metrics is None else {m: {k: None if v is None else float(v) for k, v in values.items()} for m, values in metrics.items()},
        manifest.get("compared_with_run"),
        json.dumps(manifest, sort_keys=True, default=str),
    )

"""Reading and writing: the only module that touches storage (with fs.py and publish.py)."""

from __future__ import annotations

import json
import logging
import re

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark import fs
from recsys_spark.config import InputConfig
from recsys_spark.prepare import PreparedData
from recsys_spark.schema import ITEM_ID, TS, USER_ID, WEIGHT

log = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".data", ".csv.gz", ".tsv.gz")


class InputError(ValueError):
    """The input cannot be read as interactions."""


def read_interactions(spark: SparkSession, cfg: InputConfig, source: str | None = None) -> DataFrame:
    """Read interactions and return columns user_id, item_id, weight, ts under their canonical names."""
    source = source or cfg.path
    if not source:
        raise InputError("no input given: pass --input PATH (or TABLE) or set input.path")
    fmt = _detect_format(spark, source, cfg.format)
    if fmt == "table":
        df = spark.read.table(source)
    elif fmt == "parquet":
        df = spark.read.parquet(source)
    else:
        df = _read_text(spark, cfg, source)
    log.info("read %s input from %s", fmt, source)
    return _canonical_columns(df, cfg, source)


def _detect_format(spark: SparkSession, source: str, fmt: str) -> str:
    if fmt != "auto":
        if fmt == "table" and not _TABLE_NAME.match(source):
            raise InputError(f"{source!r} is not a valid table name (letters, digits, _, up to catalog.db.table)")
        return fmt
    if fs.exists(spark, source):
        lowered = source.lower().rstrip("/")
        if lowered.endswith(".parquet") or any(n.endswith(".parquet") for n in fs.list_names(spark, source)):
            return "parquet"
        return "csv"
    if _TABLE_NAME.match(source) and spark.catalog.tableExists(source):
        return "table"
    raise InputError(f"input {source!r} is neither an existing file or directory nor a table")


def _read_text(spark: SparkSession, cfg: InputConfig, source: str) -> DataFrame:
    delimiter = "\t" if cfg.delimiter == "\\t" else cfg.delimiter
    if delimiter == "," and source.lower().rstrip("/").endswith((".tsv", ".tsv.gz")):
        delimiter = "\t"
    reader = spark.read.option("sep", delimiter).option("header", cfg.header).option("mode", "PERMISSIVE")
    if not cfg.header:
        if not cfg.names:
            raise InputError("input.header is false, so input.names must list the column names (e.g. [user_id, item_id, weight, ts])")
        schema = T.StructType([T.StructField(n, T.StringType(), True) for n in cfg.names])
        return reader.schema(schema).csv(source)
    # All columns as strings: ids keep their exact text; prepare settles the types.
    return reader.option("inferSchema", False).csv(source)


def _canonical_columns(df: DataFrame, cfg: InputConfig, source: str) -> DataFrame:
    columns = set(df.columns)
    for role, name in (("input.user_col", cfg.user_col), ("input.item_col", cfg.item_col)):
        if name not in columns:
            raise InputError(f"column {name!r} ({role}) not found in {source}; columns are: {', '.join(df.columns)}")
    weight = F.col(cfg.weight_col) if cfg.weight_col and cfg.weight_col in columns else F.lit(1.0)
    ts = F.col(cfg.ts_col) if cfg.ts_col and cfg.ts_col in columns else F.lit(None).cast(T.LongType())
    return df.select(F.col(cfg.user_col).alias(USER_ID), F.col(cfg.item_col).alias(ITEM_ID),
                     weight.alias(WEIGHT), ts.alias(TS))


def save_prepared(prepared: PreparedData, path: str) -> None:
    """Keep prepared data between stage-by-stage runs."""
    spark = prepared.interactions.sparkSession
    prepared.interactions.write.mode("overwrite").parquet(f"{path}/interactions")
    prepared.user_ids.write.mode("overwrite").parquet(f"{path}/user_ids")
    prepared.item_ids.write.mode("overwrite").parquet(f"{path}/item_ids")
    meta = {"n_users": prepared.n_users, "n_items": prepared.n_items, "stats": prepared.stats}
    fs.write_text(spark, f"{path}/prepared.json", json.dumps(meta, indent=2))


def load_prepared(spark: SparkSession, path: str) -> PreparedData:
    if not fs.exists(spark, f"{path}/prepared.json"):
        raise FileNotFoundError(f"no prepared data at {path}; run `recsys-spark prepare` for this run date first")
    meta = json.loads(fs.read_text(spark, f"{path}/prepared.json"))
    return PreparedData(
        interactions=spark.read.parquet(f"{path}/interactions"),
        user_ids=spark.read.parquet(f"{path}/user_ids"),
        item_ids=spark.read.parquet(f"{path}/item_ids"),
        n_users=meta["n_users"], n_items=meta["n_items"], stats=meta["stats"],
    )


def write_json(spark: SparkSession, path: str, payload: dict) -> None:
    fs.write_text(spark, path, json.dumps(payload, indent=2, sort_keys=True, default=str))

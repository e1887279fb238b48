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
CORRUPT_RECORD = "_corrupt_record"  # the whole text of a malformed CSV line


class InputError(ValueError):
    """The input cannot be read as interactions."""


def read_interactions(spark: SparkSession, cfg: InputConfig, source: str | None = None) -> DataFrame:
    """Read interactions and return columns user_id, item_id, weight, ts under their canonical names
    (plus CORRUPT_RECORD for text input: the line when it was malformed, else null)."""
    source = source or cfg.path
    if not source:
        raise InputError("no input given: pass --input PATH (or TABLE) or set input.path")
    fmt = _detect_format(spark, source, cfg.format)
    if fmt == "table":
        df = spark.read.table(source)
    elif fmt == "parquet":
        df = _read_parquet(spark, source)
    else:
        df = _read_text(spark, cfg, source)
    log.info("read %s input from %s", fmt, source)
    return _canonical_columns(df, cfg, source)


def _read_parquet(spark: SparkSession, source: str) -> DataFrame:
    # mergeSchema reads every footer now, so a corrupt file or a file whose schema drifted is an
    # input error before training rather than a task failure halfway through the run.
    try:
        return spark.read.option("mergeSchema", "true").parquet(source)
    except Exception as exc:  # Spark raises several kinds (AnalysisException, SparkException, Py4J)
        first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read the Parquet input {source} ({first_line}); "
                         "replace or remove the corrupt or incompatible file") from None


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
    reader = spark.read.option("sep", delimiter).option("header", cfg.header)
    if cfg.header:
        names = reader.option("inferSchema", False).csv(source).columns
        if not names:
            raise InputError(f"input {source} is empty (not even a header line); check the export that writes it")
    elif cfg.names:
        names = list(cfg.names)
    else:
        raise InputError("input.header is false, so input.names must list the column names (e.g. [user_id, item_id, weight, ts])")
    # All columns as strings: ids keep their exact text; prepare settles the types. A line with
    # the wrong number of fields lands whole in CORRUPT_RECORD, to be quarantined, not dropped.
    schema = T.StructType([T.StructField(n, T.StringType(), True) for n in names]
                          + [T.StructField(CORRUPT_RECORD, T.StringType(), True)])
    return (reader.schema(schema).option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_RECORD).csv(source))


def _canonical_columns(df: DataFrame, cfg: InputConfig, source: str) -> DataFrame:
    columns = set(df.columns)
    for role, name in (("input.user_col", cfg.user_col), ("input.item_col", cfg.item_col)):
        if name not in columns:
            raise InputError(f"column {name!r} ({role}) not found in {source}; columns are: {', '.join(df.columns)}")
    _check_types(df, cfg, source)
    for role, name in (("input.weight_col", cfg.weight_col), ("input.ts_col", cfg.ts_col)):
        if name and name not in columns:
            log.warning("column %r (%s) not in %s: %s", name, role, source,
                        "every weight is 1.0" if role == "input.weight_col" else "no timestamps")
    weight = F.col(cfg.weight_col) if cfg.weight_col and cfg.weight_col in columns else F.lit(1.0)
    ts = F.col(cfg.ts_col) if cfg.ts_col and cfg.ts_col in columns else F.lit(None).cast(T.LongType())
    if cfg.ts_col in columns and isinstance(df.schema[cfg.ts_col].dataType, (T.TimestampType, T.TimestampNTZType)):
        ts = F.unix_timestamp(ts)
    extra = [F.col(CORRUPT_RECORD)] if CORRUPT_RECORD in columns else []
    return df.select(F.col(cfg.user_col).alias(USER_ID), F.col(cfg.item_col).alias(ITEM_ID),
                     weight.alias(WEIGHT), ts.alias(TS), *extra)


def _check_types(df: DataFrame, cfg: InputConfig, source: str) -> None:
    """Schema drift is an error before training: ids must be strings or integers, the weight a
    number and the timestamp an integer or a timestamp (text files give strings, settled by prepare)."""
    allowed = {
        "input.user_col": (cfg.user_col, (T.StringType, T.IntegralType), "strings or integers"),
        "input.item_col": (cfg.item_col, (T.StringType, T.IntegralType), "strings or integers"),
        "input.weight_col": (cfg.weight_col, (T.StringType, T.NumericType), "numbers"),
        "input.ts_col": (cfg.ts_col, (T.StringType, T.IntegralType, T.TimestampType, T.TimestampNTZType),
                         "epoch seconds or timestamps"),
    }
    for role, (name, types, what) in allowed.items():
        if name and name in df.columns:
            dtype = df.schema[name].dataType
            text_only = isinstance(dtype, T.StringType) and role in ("input.weight_col", "input.ts_col")
            if not isinstance(dtype, types) or (text_only and CORRUPT_RECORD not in df.columns):
                raise InputError(f"column {name!r} ({role}) of {source} has type {dtype.simpleString()}, "
                                 f"but must hold {what}; fix the input or point {role} at the right column")


def read_rule_table(spark: SparkSession, path: str, role: str) -> DataFrame:
    """A rule table (rules.* in the conf) as given: CSV with a header (ids as text; .tsv is
    tab-separated), Parquet, or a table name. A path that does not exist is an error, so that a
    missing exclusion list never publishes unfiltered recommendations."""
    try:
        fmt = _detect_format(spark, path, "auto")
    except InputError:
        raise InputError(f"{role} {path!r} is neither an existing file or directory nor a table; "
                         "fix the path or unset it") from None
    if fmt == "table":
        df = spark.read.table(path)
    elif fmt == "parquet":
        df = _read_parquet(spark, path)
    else:
        sep = "\t" if path.lower().rstrip("/").endswith((".tsv", ".tsv.gz")) else ","
        df = spark.read.option("header", True).option("sep", sep).option("inferSchema", False).csv(path)
    log.info("read %s rule table %s from %s", fmt, role, path)
    return df


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

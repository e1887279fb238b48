"""Readers at the edge: interactions, rule tables and item features, from files or tables.

Everything here returns DataFrames in the canonical column names of data/schema.py; nothing
below storage/ reads a file."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config import Config, InputConfig, load_config
from recsys_spark.config.yaml_text import load_yaml
from recsys_spark.data.item_features import FEATURE_FORMATS, FEATURES
from recsys_spark.data.schema import CORRUPT_RECORD, ITEM_ID, TS, USER_ID, WEIGHT
from recsys_spark.errors import ConfigError, InputError, ItemFeaturesError
from recsys_spark.storage import fs

log = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".data", ".csv.gz", ".tsv.gz")


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


MOVIELENS_GENRES = 19
_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


def read_item_features(spark: SparkSession, path: str, fmt: str = "auto") -> DataFrame:
    """Read item features from `path` as (item_id, features array<float>).

    - csv: a header row, an `item_id` column and numeric columns (each one feature);
    - parquet: `item_id` plus either a `features` array column or numeric columns;
    - movielens: MovieLens 100K `u.item` (`|`-separated, latin-1, no header): movie id, title,
      release date, video release date, IMDb URL, then 19 genre flags, which become the features.
    """
    fmt = _guess_format(path) if fmt == "auto" else fmt
    if fmt == "movielens":
        raw = (spark.read.option("sep", "|").option("encoding", "ISO-8859-1")
               .option("header", False).csv(path))
        if len(raw.columns) < 5 + MOVIELENS_GENRES:
            raise ItemFeaturesError(f"{path} has {len(raw.columns)} '|'-separated columns, not the 24 of MovieLens "
                                    "u.item; pass model.content.features_format=csv or parquet for other files")
        flags = [F.col(c).cast("float") for c in raw.columns[5:5 + MOVIELENS_GENRES]]
        return raw.select(F.col(raw.columns[0]).cast("long").alias(ITEM_ID), F.array(*flags).alias(FEATURES))
    if fmt == "csv":
        return _to_array(spark.read.option("header", True).option("inferSchema", True).csv(path), path)
    if fmt == "parquet":
        return _to_array(spark.read.parquet(path), path)
    raise ItemFeaturesError(f"item features format must be one of {', '.join(FEATURE_FORMATS)}; got {fmt!r}")


def _guess_format(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    if name == "u.item":
        return "movielens"
    return "csv" if name.endswith((".csv", ".csv.gz", ".txt")) else "parquet"


def _to_array(df: DataFrame, path: str) -> DataFrame:
    if ITEM_ID not in df.columns:
        raise ItemFeaturesError(f"{path} has no {ITEM_ID} column; name the item id column {ITEM_ID}")
    if FEATURES in df.columns and isinstance(df.schema[FEATURES].dataType, T.ArrayType):
        return df.select(ITEM_ID, F.col(FEATURES).cast("array<float>").alias(FEATURES))
    numeric = [f.name for f in df.schema.fields if f.name != ITEM_ID and isinstance(f.dataType, _NUMERIC)]
    other = [f.name for f in df.schema.fields if f.name != ITEM_ID and f.name not in numeric]
    if other or not numeric:
        raise ItemFeaturesError(f"{path}: every column but {ITEM_ID} must be a numeric feature "
                                f"(or one array column named {FEATURES}); found {', '.join(other) or 'no features'}")
    return df.select(ITEM_ID, F.array(*[F.col(c).cast("float") for c in numeric]).alias(FEATURES))


def read_config_file(path: str) -> dict:
    """A YAML config file (local) as a mapping, for config.load_config."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"config file {source} does not exist")
    try:
        return load_yaml(source.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from None


def load_config_file(path: str | None, overrides: list[str] | None = None) -> Config:
    """The Config of a YAML file (or the defaults without one) plus `--set` overrides."""
    return load_config(read_config_file(path) if path else None, overrides)

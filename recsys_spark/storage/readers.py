"""Readers at the edge: interactions, rule tables and item features, from files or tables.

Everything here returns DataFrames in the canonical column names of data/schema.py; nothing
below storage/ reads a file. Error messages name the file, the problem and the fix, never what the
file holds (a header line, a value, a snippet of a parse error): a path set by mistake to a
secrets file must not print it."""

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
from recsys_spark.errors import ConfigError, InputError, ItemFeaturesError, RulesError
from recsys_spark.storage import fs

log = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".data", ".csv.gz", ".tsv.gz")


def read_interactions(spark: SparkSession, cfg: InputConfig,
                      source: str | None = None) -> tuple[DataFrame, list[str]]:
    """Read interactions: columns user_id, item_id, weight, ts under their canonical names (plus
    CORRUPT_RECORD for text input: the line when it was malformed, else null), and the files of an
    input directory that input.glob skipped (paths relative to the directory; logged at WARNING)."""
    source = source or cfg.path
    if not source:
        raise InputError("no input given: pass --input PATH (or TABLE) or set input.path")
    fmt = _detect_format(spark, source, cfg.format)
    skipped: list[str] = []
    if fmt == "table":
        df = spark.read.table(source)
    else:
        glob, skipped = _directory_glob(spark, cfg, source, fmt)
        df = _read_parquet(spark, source, glob) if fmt == "parquet" else _read_text(spark, cfg, source, glob)
    log.info("read %s input from %s", fmt, source)
    return _canonical_columns(df, cfg, source), skipped


def _directory_glob(spark: SparkSession, cfg: InputConfig, source: str, fmt: str) -> tuple[str | None, list[str]]:
    """(the pathGlobFilter for Spark, skipped files) of an input directory; (None, []) for a file,
    which is read whatever its name, as it was named explicitly."""
    if not fs.is_dir(spark, source):
        return None, []
    glob = cfg.file_glob(fmt)
    matched, skipped = fs.split_by_glob(spark, source, glob)
    if not matched:
        raise InputError(f"no file in the input directory {source} matches input.glob {glob!r} ({len(skipped)} "
                         "other files); set input.glob to the pattern of its file names, e.g. '*'")
    if skipped:
        log.warning("input: %d files in %s do not match input.glob %r and are skipped (listed in the manifest, "
                    "input.skipped_files): %s", len(skipped), source, glob,
                    ", ".join(skipped[:10]) + (", ..." if len(skipped) > 10 else ""))
    return glob, skipped


def _read_parquet(spark: SparkSession, source: str, glob: str | None = None) -> DataFrame:
    # mergeSchema reads every footer now, so a corrupt file or a file whose schema drifted is an
    # input error before training rather than a task failure halfway through the run.
    reader = spark.read.option("mergeSchema", "true")
    if glob:
        reader = reader.option("pathGlobFilter", glob)
    try:
        return reader.parquet(source)
    except Exception as exc:  # Spark raises several kinds (AnalysisException, SparkException, Py4J)
        raise InputError(f"cannot read the Parquet input {source} ({_error_class(exc)}); "
                         "replace or remove the corrupt or incompatible file") from None


def _error_class(exc: Exception) -> str:
    """Spark's error class (e.g. CANNOT_READ_FILE_FOOTER), or the exception's type: the rest of
    the message can quote the file's bytes or schema."""
    match = re.match(r"\s*\[([A-Z0-9_.]+)\]", str(exc))
    return match.group(1) if match else type(exc).__name__


def _csv_options(cfg: InputConfig) -> dict:
    """Quoting as input.quote / input.escape / input.multiline say (RFC 4180 by default)."""
    return {"quote": cfg.quote, "escape": cfg.escape, "multiLine": cfg.multiline}


def _columns_found(df: DataFrame, text: bool) -> str:
    """What a message may say about the columns found: a text file's header line is its content,
    so only how many fields it has; a typed source's column names are its schema."""
    if text:
        return f"its header line has {len([c for c in df.columns if c != CORRUPT_RECORD])} fields"
    return f"its columns are: {', '.join(df.columns)}"


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


def _read_text(spark: SparkSession, cfg: InputConfig, source: str, glob: str | None = None) -> DataFrame:
    delimiter = "\t" if cfg.delimiter == "\\t" else cfg.delimiter
    if delimiter == "," and source.lower().rstrip("/").endswith((".tsv", ".tsv.gz")):
        delimiter = "\t"
    reader = spark.read.option("sep", delimiter).option("header", cfg.header).options(**_csv_options(cfg))
    if glob:
        reader = reader.option("pathGlobFilter", glob)
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
            found = _columns_found(df, text=CORRUPT_RECORD in columns)
            raise InputError(f"column {name!r} ({role}) not found in {source} ({found}); "
                             f"name the column {name} or set {role} to the input's column")
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


def read_rule_table(spark: SparkSession, path: str, role: str, columns: tuple = (),
                    text: InputConfig | None = None) -> DataFrame:
    """A rule table (rules.* in the conf) as given: CSV with a header (ids as text; .tsv is
    tab-separated; quoted as input.quote / input.escape say), Parquet, or a table name, with
    `columns`. A path that does not exist is an error, so that a missing exclusion list never
    publishes unfiltered recommendations."""
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
        df = (spark.read.option("header", True).option("sep", sep).option("inferSchema", False)
              .options(**_csv_options(text or InputConfig())).csv(path))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RulesError(f"{role} {path} has no column {', '.join(missing)} ({_columns_found(df, fmt == 'csv')}); "
                         f"name its columns {', '.join(columns)} or point {role} at the right table")
    log.info("read %s rule table %s from %s", fmt, role, path)
    return df


MOVIELENS_GENRES = 19
_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


def read_item_features(spark: SparkSession, path: str, fmt: str = "auto",
                       text: InputConfig | None = None) -> DataFrame:
    """Read item features from `path` as (item_id, features array<float>).

    - csv: a header row, an `item_id` column and numeric columns (each one feature), quoted as
      `text` (input.quote / input.escape) says;
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
        reader = (spark.read.option("header", True).option("inferSchema", True)
                  .options(**_csv_options(text or InputConfig())))
        return _to_array(reader.csv(path), path, text=True)
    if fmt == "parquet":
        return _to_array(spark.read.parquet(path), path, text=False)
    raise ItemFeaturesError(f"item features format must be one of {', '.join(FEATURE_FORMATS)}; got {fmt!r}")


def _guess_format(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    if name == "u.item":
        return "movielens"
    return "csv" if name.endswith((".csv", ".csv.gz", ".txt")) else "parquet"


def _to_array(df: DataFrame, path: str, text: bool) -> DataFrame:
    if ITEM_ID not in df.columns:
        raise ItemFeaturesError(f"{path} has no {ITEM_ID} column ({_columns_found(df, text)}); "
                                f"name the item id column {ITEM_ID}")
    if FEATURES in df.columns and isinstance(df.schema[FEATURES].dataType, T.ArrayType):
        return df.select(ITEM_ID, F.col(FEATURES).cast("array<float>").alias(FEATURES))
    numeric = [f.name for f in df.schema.fields if f.name != ITEM_ID and isinstance(f.dataType, _NUMERIC)]
    other = [f.name for f in df.schema.fields if f.name != ITEM_ID and f.name not in numeric]
    if other or not numeric:
        found = (f"{len(other)} columns are not numeric" if other else "no features") if text else \
            f"found {', '.join(other) or 'no features'}"
        raise ItemFeaturesError(f"{path}: every column but {ITEM_ID} must be a numeric feature "
                                f"(or one array column named {FEATURES}); {found}")
    return df.select(ITEM_ID, F.array(*[F.col(c).cast("float") for c in numeric]).alias(FEATURES))


def read_config_file(path: str) -> dict:
    """A YAML config file (local) as a mapping, for config.load_config."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"config file {source} does not exist")
    try:
        return load_yaml(source.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {source} is not UTF-8 text; point --conf at a YAML file") from None
    except yaml.YAMLError as exc:
        # The parser's own message quotes the offending line; the position is enough to find it.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config file {source} is not valid YAML{where} ({type(exc).__name__}); "
                          "fix it there") from None


def load_config_file(path: str | None, overrides: list[str] | None = None) -> Config:
    """The Config of a YAML file (or the defaults without one) plus `--set` overrides."""
    return load_config(read_config_file(path) if path else None, overrides)

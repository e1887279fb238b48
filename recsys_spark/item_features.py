"""Item features: read them from a file, and line them up with the model's item indexes.

The contract is a DataFrame (item_id, features array<float>), one row per item. Readers:

- csv: a header row, an `item_id` column and numeric columns (each one feature);
- parquet: `item_id` plus either a `features` array column or numeric columns;
- movielens: MovieLens 100K `u.item` (`|`-separated, latin-1, no header): movie id, title,
  release date, video release date, IMDb URL, then 19 genre flags, which become the features.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.schema import FACTORS, ITEM_ID, ITEM_INDEX

FEATURES = "features"
FEATURE_FORMATS = ("auto", "csv", "parquet", "movielens")
MOVIELENS_GENRES = 19
_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


class ItemFeaturesError(ValueError):
    """The item features file cannot be used as it is."""


def read_item_features(spark: SparkSession, path: str, fmt: str = "auto") -> DataFrame:
    """Read item features from `path` as (item_id, features array<float>)."""
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


def feature_matrix(item_features: DataFrame, item_ids: DataFrame, n_items: int) -> np.ndarray:
    """Features as a float32 (n_items, n_features) matrix, row i = item_index i; missing items are zero.

    Collects one row per catalog item to the driver, as scoring does with item factors.
    """
    id_type = item_ids.schema[ITEM_ID].dataType
    features = item_features.select(F.col(ITEM_ID).cast(id_type).alias(ITEM_ID), F.col(FEATURES).alias(FACTORS))
    pdf = item_ids.join(features, ITEM_ID).select(ITEM_INDEX, FACTORS).toPandas()
    if len(pdf) == 0:
        raise ItemFeaturesError("no item in the features matches an item of the interactions; check the item ids")
    widths = pdf[FACTORS].map(len)
    if widths.nunique() != 1:
        raise ItemFeaturesError(f"item feature vectors differ in length ({sorted(widths.unique())}); give every item the same features")
    matrix = np.zeros((n_items, int(widths.iloc[0])), dtype=np.float32)
    matrix[pdf[ITEM_INDEX].to_numpy()] = np.stack(pdf[FACTORS].to_numpy()).astype(np.float32)
    return matrix

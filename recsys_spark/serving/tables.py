"""The published tables' shape: scoring output with the model's name, in the contract's column order."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.data.schema import ITEM_SIMILAR_COLUMNS, MODEL, USER_RECS_COLUMNS


def user_recs_table(recs: DataFrame, model_name: str) -> DataFrame:
    """user_recs rows: user_id, rank, item_id, score, source, model."""
    return recs.withColumn(MODEL, F.lit(model_name)).select(*USER_RECS_COLUMNS)


def item_similar_table(similar: DataFrame, model_name: str) -> DataFrame:
    """item_similar rows: item_id, rank, similar_item_id, score, model."""
    return similar.withColumn(MODEL, F.lit(model_name)).select(*ITEM_SIMILAR_COLUMNS)

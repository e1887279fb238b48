"""FactorModel: what every trainer ends as.

A score is always the dot product of a user row and an item row; biases and intercepts are
folded into extra columns by the trainers. Factors live in two Spark tables that also carry the
id mapping, so the model is self-contained and scales with Spark:

- ``user_factors``: user_index int, user_id (input type), factors array<float>
- ``item_factors``: item_index int, item_id (input type), factors array<float>

storage/stores.py saves and loads it (Parquet plus metadata.json).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX


@dataclass
class FactorModel:
    user_factors: DataFrame
    item_factors: DataFrame
    metadata: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.metadata.get("kind", "unknown")

    @property
    def rank(self) -> int:
        return int(self.metadata["rank"])

    def item_factor_matrix(self) -> np.ndarray:
        """Item factors as a float32 (n_items, rank) matrix whose row i is item_index i.

        Collects the catalog to the driver on purpose: it is what scoring broadcasts.
        Items without factors (never seen in training) get a zero row.
        """
        pdf = self.item_factors.select(ITEM_INDEX, FACTORS).toPandas()
        n_items = int(pdf[ITEM_INDEX].max()) + 1 if len(pdf) else 0
        matrix = np.zeros((n_items, self.rank), dtype=np.float32)
        if len(pdf):
            matrix[pdf[ITEM_INDEX].to_numpy()] = np.stack(pdf[FACTORS].to_numpy()).astype(np.float32)
        return matrix

    @classmethod
    def from_numpy(
        cls,
        user_matrix: np.ndarray,
        item_matrix: np.ndarray,
        user_ids: DataFrame,
        item_ids: DataFrame,
        metadata: dict,
    ) -> "FactorModel":
        """Build a model from driver-side factor matrices (row i = index i).

        `user_ids` / `item_ids` are the id maps (user_index, user_id) / (item_index, item_id).
        """
        spark = user_ids.sparkSession
        meta = dict(metadata)
        meta.setdefault("rank", int(item_matrix.shape[1]))
        meta.setdefault("created_at", dt.datetime.now(dt.timezone.utc).isoformat())
        users = _factor_frame(spark, user_matrix, USER_INDEX).join(user_ids, USER_INDEX)
        items = _factor_frame(spark, item_matrix, ITEM_INDEX).join(item_ids, ITEM_INDEX)
        return cls(
            user_factors=users.select(USER_INDEX, USER_ID, FACTORS),
            item_factors=items.select(ITEM_INDEX, ITEM_ID, FACTORS),
            metadata=meta,
        )


def _factor_frame(spark: SparkSession, matrix: np.ndarray, index_col: str) -> DataFrame:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    pdf = pd.DataFrame({index_col: np.arange(matrix.shape[0], dtype=np.int32), FACTORS: list(matrix)})
    frame = spark.createDataFrame(pdf, schema=f"{index_col} int, {FACTORS} array<float>")
    return frame.withColumn(index_col, F.col(index_col).cast("int"))

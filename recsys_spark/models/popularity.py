"""Popularity as a rank-1 factor model: user factor 1, item factor = share of users who interacted.

It is the baseline every model must beat, and the fallback for users without factors.
"""

from __future__ import annotations

from pyspark.sql import functions as F

from recsys_spark.config import ModelConfig, TrainConfig
from recsys_spark.factor_model import FactorModel
from recsys_spark.prepare import PreparedData
from recsys_spark.schema import FACTORS, ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX


def item_popularity(prepared: PreparedData):
    """DataFrame item_index, popularity (share of users who interacted with the item)."""
    counts = prepared.interactions.groupBy(ITEM_INDEX).agg(F.count(F.lit(1)).alias("users"))
    return counts.select(ITEM_INDEX, (F.col("users") / F.lit(float(max(prepared.n_users, 1)))).alias("popularity"))


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig) -> FactorModel:
    """Score = item popularity for every user."""
    items = (item_popularity(prepared).join(prepared.item_ids, ITEM_INDEX)
             .select(ITEM_INDEX, ITEM_ID, F.array(F.col("popularity").cast("float")).alias(FACTORS)))
    users = prepared.user_ids.select(USER_INDEX, USER_ID, F.array(F.lit(1.0).cast("float")).alias(FACTORS))
    return FactorModel(users, items, {"kind": "popularity", "rank": 1})

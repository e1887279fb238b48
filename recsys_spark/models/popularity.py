"""Popularity as a rank-1 factor model: user factor 1, item factor = share of users who interacted.

It is the baseline every model must beat, and the fallback for users without factors.
"""

from __future__ import annotations

from pyspark.sql import functions as F

from recsys_spark.config import ModelConfig, TrainConfig
from recsys_spark.data.prepare import PreparedData, item_popularity
from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX
from recsys_spark.models.factor_model import FactorModel, model_metadata


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig,
          item_features=None) -> FactorModel:
    """Score = item popularity for every user."""
    items = (item_popularity(prepared).join(prepared.item_ids, ITEM_INDEX)
             .select(ITEM_INDEX, ITEM_ID, F.array(F.col("popularity").cast("float")).alias(FACTORS)))
    users = prepared.user_ids.select(USER_INDEX, USER_ID, F.array(F.lit(1.0).cast("float")).alias(FACTORS))
    return FactorModel(users, items, model_metadata("popularity", 1, 1, None))

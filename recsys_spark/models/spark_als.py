"""Spark ML ALS (distributed on the executors), explicit or implicit feedback."""

from __future__ import annotations

import logging

from pyspark.ml.recommendation import ALS
from pyspark.sql import functions as F

from recsys_spark.config import ModelConfig, TrainConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX, WEIGHT
from recsys_spark.models.factor_model import FactorModel, model_metadata

log = logging.getLogger(__name__)


def build_als(model_cfg: ModelConfig, parallelism: int = 10) -> ALS:
    """The pyspark.ml ALS estimator configured from model_cfg (columns from the schema module)."""
    cfg = model_cfg.als
    blocks = cfg.num_blocks or max(parallelism, 1)
    return ALS(
        numUserBlocks=blocks, numItemBlocks=blocks,
        rank=model_cfg.rank, maxIter=cfg.max_iter, regParam=cfg.reg_param, alpha=cfg.alpha,
        implicitPrefs=cfg.implicit, nonnegative=cfg.nonnegative, seed=model_cfg.seed,
        checkpointInterval=cfg.checkpoint_interval, userCol=USER_INDEX, itemCol=ITEM_INDEX,
        ratingCol=WEIGHT, coldStartStrategy="drop",
    )


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig,
          item_features=None) -> FactorModel:
    """Fit Spark ML ALS on the prepared interactions."""
    spark = prepared.interactions.sparkSession
    if spark.sparkContext.getCheckpointDir() is None:
        log.warning("no checkpoint directory set: long ALS runs may overflow the stack")
    fitted = build_als(model_cfg, spark.sparkContext.defaultParallelism).fit(prepared.interactions)
    users = (fitted.userFactors.select(F.col("id").cast("int").alias(USER_INDEX), F.col("features").alias(FACTORS))
             .join(prepared.user_ids, USER_INDEX))
    items = (fitted.itemFactors.select(F.col("id").cast("int").alias(ITEM_INDEX), F.col("features").alias(FACTORS))
             .join(prepared.item_ids, ITEM_INDEX))
    return FactorModel(
        user_factors=users.select(USER_INDEX, USER_ID, FACTORS),
        item_factors=items.select(ITEM_INDEX, ITEM_ID, FACTORS),
        metadata=model_metadata("als", model_cfg.rank, model_cfg.rank, model_cfg.seed, model_cfg.als),
    )

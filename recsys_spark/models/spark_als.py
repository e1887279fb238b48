"""Spark ML ALS (distributed on the executors), explicit or implicit feedback.

Implicit ALS's confidence is 1 + alpha * rating. With model.als.confidence=auto the rating column
is the prepared weight made unit-free as WALS's auto confidence does (kernels/confidence.py):
log(1 + w / median w) over its mean, so alpha is the mean extra confidence on any data.
"""

from __future__ import annotations

import logging
import math

from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame
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
    interactions, weights = prepared.interactions, {}
    if model_cfg.als.implicit and model_cfg.als.confidence == "auto":
        interactions, weights = relative_log_ratings(interactions)
    fitted = build_als(model_cfg, spark.sparkContext.defaultParallelism).fit(interactions)
    users = (fitted.userFactors.select(F.col("id").cast("int").alias(USER_INDEX), F.col("features").alias(FACTORS))
             .join(prepared.user_ids, USER_INDEX))
    items = (fitted.itemFactors.select(F.col("id").cast("int").alias(ITEM_INDEX), F.col("features").alias(FACTORS))
             .join(prepared.item_ids, ITEM_INDEX))
    return FactorModel(
        user_factors=users.select(USER_INDEX, USER_ID, FACTORS),
        item_factors=items.select(ITEM_INDEX, ITEM_ID, FACTORS),
        metadata=model_metadata("als", model_cfg.rank, model_cfg.rank, model_cfg.seed, model_cfg.als,
                                **({"weights": weights} if weights else {})),
    )


def relative_log_ratings(interactions: DataFrame) -> tuple[DataFrame, dict]:
    """The interactions with weight = log(1 + w / m) / mean, m the median positive weight (Spark's
    approximate quantile, 0.1% rank error), as kernels/confidence.relative_log_weights in numpy."""
    quantile = interactions.filter(F.col(WEIGHT) > 0).approxQuantile(WEIGHT, [0.5], 0.001)
    epsilon = float(quantile[0]) if quantile else 1.0
    z = F.log(F.col(WEIGHT)) - F.lit(math.log(epsilon))  # log(1 + e^z), finite for every finite weight
    f = F.when(F.col(WEIGHT) > 0, F.greatest(z, F.lit(0.0)) + F.log1p(F.exp(-F.abs(z)))).otherwise(F.lit(0.0))
    scored = interactions.withColumn(WEIGHT, f)
    mean_f = scored.agg(F.avg(WEIGHT)).first()[0] or 0.0
    scale = 1.0 / mean_f if mean_f > 0 else 0.0
    log.info("als: rating = log(1 + weight / %.4g) x %.4g (mean 1)", epsilon, scale)
    return scored.withColumn(WEIGHT, F.col(WEIGHT) * F.lit(scale)), {"epsilon": epsilon, "scale": scale}

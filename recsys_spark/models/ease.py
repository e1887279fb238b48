"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): the closed-form item-item model.

    P = (X^T X + lambda I)^-1,   B = I - P diag(1/diag(P)),   diag(B) = 0,   scores of u = x_u B

X is the binary users x items matrix (each interaction counts 1), lambda = model.ease.reg x the
mean diagonal of X^T X (the mean number of interactions per item), so the setting carries over
between data sets. The item Gram X^T X is counted in Spark (a self-join of the interactions on
the user, upper triangle only, partially aggregated on the executors); the items x items matrix
is then solved on the driver in TensorFlow in float64, after a check against
train.driver_max_bytes made before any Spark work. The model is a FactorModel of the item-item
form (FactorModel.from_item_item): item j's row is column j of B, users are scored by their
history row (serving/scoring.py, kernels/topk.py prepare_history_items).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import ModelConfig, TrainConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import ITEM_INDEX, USER_INDEX
from recsys_spark.errors import DriverMemoryError
from recsys_spark.kernels.tf_runtime import import_tensorflow
from recsys_spark.models.factor_model import FactorModel, model_metadata

log = logging.getLogger(__name__)

# Peak driver copies of an items x items float64 matrix: the Gram's collected triangle (~1), the
# dense Gram, its TF copy with lambda added, the Cholesky factor, the identity, P, and B's float32
# rows with the frame built from them (~1 together).
GRAM_COPIES = 7


def driver_bytes(n_items: int) -> int:
    """Driver memory EASE plans for a catalog of `n_items`: GRAM_COPIES float64 n x n matrices."""
    return GRAM_COPIES * 8 * n_items * n_items


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig,
          item_features=None) -> FactorModel:
    """Fit EASE on the prepared interactions (weights ignored: each interaction counts 1)."""
    n = prepared.n_items
    needed = driver_bytes(n)
    if needed > train_cfg.driver_max_bytes:
        raise DriverMemoryError(
            f"model.kind=ease on {n} items needs about {needed / 2**30:.1f} GiB on the driver ({GRAM_COPIES} "
            f"items x items float64 matrices), over the {train_cfg.driver_max_bytes / 2**30:.1f} GiB budget; raise "
            "train.driver_max_bytes if the driver has the memory, or use a factor model (model.kind=wals or als)")
    started = time.time()
    gram = item_gram(prepared.interactions, n)
    log.info("ease: item Gram of %d items counted in %.1fs", n, time.time() - started)
    mean_count = float(np.trace(gram)) / max(n, 1)
    lam = model_cfg.ease.reg * max(mean_count, 1.0)
    started = time.time()
    columns = solve(gram, lam)
    log.info("ease: lambda %.4g (reg %.4g x %.4g interactions per item), solved in %.1fs", lam,
             model_cfg.ease.reg, mean_count, time.time() - started)
    metadata = model_metadata("ease", n, n, None, model_cfg.ease, **{"lambda": lam, "mean_item_count": mean_count})
    return FactorModel.from_item_item(columns, prepared.user_ids, prepared.item_ids, metadata)


def item_gram(interactions: DataFrame, n_items: int) -> np.ndarray:
    """X^T X of the binary interactions as a dense float64 (n_items, n_items) matrix on the driver.

    Counted in Spark: pairs (i <= j) of items a user shares, summed per pair (map-side partial
    aggregation keeps the shuffle at most one row per pair and task); the triangle is mirrored here.
    """
    pairs = interactions.select(USER_INDEX, ITEM_INDEX).distinct()
    left, right = pairs.alias("a"), pairs.alias("b")
    counts = (left.join(right, (F.col("a." + USER_INDEX) == F.col("b." + USER_INDEX))
                       & (F.col("a." + ITEM_INDEX) <= F.col("b." + ITEM_INDEX)))
              .groupBy(F.col("a." + ITEM_INDEX).alias("i"), F.col("b." + ITEM_INDEX).alias("j"))
              .agg(F.count(F.lit(1)).cast("double").alias("c")))
    table = counts.toArrow()
    i = table.column("i").to_numpy().astype(np.int64)
    j = table.column("j").to_numpy().astype(np.int64)
    c = table.column("c").to_numpy()
    del table
    gram = np.zeros((n_items, n_items), dtype=np.float64)
    gram[i, j] = c
    gram[j, i] = c
    return gram


def solve(gram: np.ndarray, lam: float) -> np.ndarray:
    """B's columns as float32 rows: row j is column j of B = I - P diag(1/diag(P)), P = (gram + lam I)^-1.

    TensorFlow on the driver's device, in float64 (Cholesky, then the inverse from it); P is
    symmetric, so column j of B is -P[j] / P[j, j] with its j-th entry zeroed.
    """
    tf = import_tensorflow()
    n = gram.shape[0]
    regularised = tf.linalg.set_diag(tf.constant(gram, dtype=tf.float64), np.diag(gram) + lam)
    p = tf.linalg.cholesky_solve(tf.linalg.cholesky(regularised), tf.eye(n, dtype=tf.float64))
    del regularised
    diag = tf.linalg.diag_part(p)
    columns = tf.linalg.set_diag(-p / diag[:, None], tf.zeros(n, dtype=tf.float64))
    return columns.numpy().astype(np.float32)

"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): the closed-form item-item model.

    P = (X^T X + lambda I)^-1,   B = I - P diag(1/diag(P)),   diag(B) = 0,   scores of u = x_u B

X is the binary users x items matrix (each interaction counts 1), lambda = model.ease.reg x the
mean diagonal of X^T X (the mean number of interactions per item), so the setting carries over
between data sets. The item Gram X^T X is counted in Spark (a self-join of the interactions on
the user, upper triangle only, partially aggregated on the executors); the items x items matrix
is then solved on the driver in TensorFlow in float64, after a check against
train.driver_max_bytes made before any Spark work.

Sessions: where the interactions carry timestamps, two items a user took within minutes of each
other are more related than two taken months apart. The Gram the solve uses is X^T X + w S, with
S[i, j] = sum over users of exp(-|t_ui - t_uj| / model.ease.session_seconds) and w =
model.ease.session_weight. S is a sum of per-user Laplacian-kernel matrices, so X^T X + w S stays
positive semi-definite; pairs with a null timestamp add nothing to S, and when every timestamp is
the same (or missing) S carries no time at all and is left out. lambda stays in units of X^T X. The model is a FactorModel of the item-item
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
from recsys_spark.data.schema import ITEM_INDEX, TS, USER_INDEX
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
    cfg = model_cfg.ease
    started = time.time()
    sessions = session_use(prepared.interactions, cfg)
    gram, session_gram = item_grams(prepared.interactions, n, cfg.session_seconds if sessions["used"] else 0.0)
    log.info("ease: item Gram of %d items counted in %.1fs; sessions: %s", n, time.time() - started,
             f"weight {cfg.session_weight:g}, {cfg.session_seconds:g} s" if sessions["used"] else sessions["reason"])
    mean_count = float(np.trace(gram)) / max(n, 1)
    lam = cfg.reg * max(mean_count, 1.0)
    if session_gram is not None:
        gram += cfg.session_weight * session_gram
        del session_gram
    started = time.time()
    columns = solve(gram, lam)
    log.info("ease: lambda %.4g (reg %.4g x %.4g interactions per item), solved in %.1fs", lam,
             cfg.reg, mean_count, time.time() - started)
    metadata = model_metadata("ease", n, n, None, cfg, **{"lambda": lam, "mean_item_count": mean_count,
                                                          "sessions": sessions})
    return FactorModel.from_item_item(columns, prepared.user_ids, prepared.item_ids, metadata)


def session_use(interactions: DataFrame, cfg) -> dict:
    """Whether the session term applies: {"used": bool, "reason": why not}. It needs a positive
    session_seconds and session_weight, and timestamps that differ somewhere (one small Spark job)."""
    if cfg.session_seconds <= 0 or cfg.session_weight <= 0:
        return {"used": False, "reason": "off (model.ease.session_seconds or session_weight is 0)"}
    span = interactions.agg(F.min(TS).alias("first"), F.max(TS).alias("last")).first()
    if span["first"] is None or span["first"] == span["last"]:
        return {"used": False, "reason": "no time in the data (every ts is the same or missing)"}
    return {"used": True, "reason": None}


def item_grams(interactions: DataFrame, n_items: int, session_seconds: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """X^T X of the binary interactions as a dense float64 (n_items, n_items) matrix on the driver,
    and, when session_seconds > 0, the session Gram S (module docstring) beside it, else None.

    Counted in Spark in one job: pairs (i <= j) of items a user shares, summed per pair (map-side
    partial aggregation keeps the shuffle at most one row per pair and task); the triangle is
    mirrored here.
    """
    pairs = interactions.groupBy(USER_INDEX, ITEM_INDEX).agg(F.max(TS).alias(TS))
    left, right = pairs.alias("a"), pairs.alias("b")
    sums = [F.count(F.lit(1)).cast("double").alias("c")]
    if session_seconds > 0:
        gap = F.abs(F.col("a." + TS) - F.col("b." + TS)).cast("double")
        sums.append(F.sum(F.exp(-gap / float(session_seconds))).alias("s"))  # a null ts adds nothing
    counts = (left.join(right, (F.col("a." + USER_INDEX) == F.col("b." + USER_INDEX))
                       & (F.col("a." + ITEM_INDEX) <= F.col("b." + ITEM_INDEX)))
              .groupBy(F.col("a." + ITEM_INDEX).alias("i"), F.col("b." + ITEM_INDEX).alias("j"))
              .agg(*sums))
    table = counts.toArrow()
    i = table.column("i").to_numpy().astype(np.int64)
    j = table.column("j").to_numpy().astype(np.int64)
    grams = [_symmetric(i, j, table.column("c").to_numpy(), n_items)]
    if session_seconds > 0:
        grams.append(_symmetric(i, j, table.column("s").fill_null(0.0).to_numpy(), n_items))
    del table
    return grams[0], (grams[1] if len(grams) > 1 else None)


def _symmetric(i: np.ndarray, j: np.ndarray, values: np.ndarray, n_items: int) -> np.ndarray:
    matrix = np.zeros((n_items, n_items), dtype=np.float64)
    matrix[i, j] = values
    matrix[j, i] = values
    return matrix


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

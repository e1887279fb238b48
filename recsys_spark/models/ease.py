"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): the closed-form item-item model.

    P = (X^T X + lambda I)^-1,   B = I - P diag(1/diag(P)),   diag(B) = 0,   scores of u = x_u B

X is the binary users x items matrix (each interaction counts 1), lambda = model.ease.reg x the
mean diagonal of X^T X (the mean number of interactions per item), so the setting carries over
between data sets. The item Gram X^T X is counted in Spark (a self-join of the interactions on
the user, upper triangle only, partially aggregated on the executors); the matrix is then solved
on the driver in TensorFlow in float64, after a check against train.driver_max_bytes made before
any Spark work. The model is a FactorModel of the item-item form (FactorModel.from_item_item):
item j's row is column j of B, users are scored by their history row (serving/scoring.py,
kernels/topk.py prepare_history_items).

Sessions: where the interactions carry timestamps, two items a user took within minutes of each
other are more related than two taken months apart. The Gram the solve uses is X^T X + w S, with
S[i, j] = sum over users of exp(-|t_ui - t_uj| / model.ease.session_seconds) and w =
model.ease.session_weight. S is a sum of per-user Laplacian-kernel matrices, so X^T X + w S stays
positive semi-definite; pairs with a null timestamp add nothing to S, and when every timestamp is
the same (or missing) S carries no time at all and is left out. lambda stays in units of X^T X.

Heavy use (model.ease.heavy_channel): with heavy-tailed weights (hours, plays, counts), "used a
lot" and "tried once" say different things about a user. Each item then gets a second input,
H[u, j] = 1 where the user's weight for j is above the median weight, so the inputs are F = [X, H]
(users x 2n) while the target stays X: B (2n x n) minimises |X - F B|^2 + lambda |B_X|^2 +
lambda_h |B_H|^2 with both of item j's inputs kept out of its own prediction (B[j, j] = B[n+j, j]
= 0). With M = F^T F (+ w S on its X block) and P = (M + diag(lambda))^-1, the unconstrained
solution is B0 = I[:, :n] - lambda P[:, :n]; each column's two zeros take one 2 x 2 solve:
b_j = B0_j - P[:, S_j] P[S_j, S_j]^-1 B0[S_j, j], S_j = {j, n+j}. A user's history row then
holds item j, and n+j where their weight is heavy. lambda_h = model.ease.heavy_reg x the mean
interactions per item; a large one shrinks the model back to plain EASE.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import ModelConfig, TrainConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import ITEM_INDEX, TS, USER_INDEX, WEIGHT
from recsys_spark.errors import DriverMemoryError
from recsys_spark.kernels.tf_runtime import import_tensorflow
from recsys_spark.models.factor_model import FactorModel, model_metadata
from recsys_spark.models.spark_weights import exact_median_positive, weight_profile

log = logging.getLogger(__name__)

# Peak driver copies of an inputs x inputs float64 matrix: the Gram's collected triangle (~1), the
# dense Gram, its TF copy with lambda added, the Cholesky factor, the identity, P, and B's float32
# rows with the frame built from them (~1 together).
GRAM_COPIES = 7


def driver_bytes(n_inputs: int) -> int:
    """Driver memory EASE plans for `n_inputs` inputs (the items, or twice them with the heavy-use
    channel): GRAM_COPIES float64 n_inputs x n_inputs matrices."""
    return GRAM_COPIES * 8 * n_inputs * n_inputs


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig,
          item_features=None) -> FactorModel:
    """Fit EASE on the prepared interactions: each interaction counts 1; the timestamps and, with
    the heavy-use channel, the weights shape its inputs (module docstring)."""
    n, cfg, budget = prepared.n_items, model_cfg.ease, train_cfg.driver_max_bytes
    if driver_bytes(n) > budget:
        raise DriverMemoryError(
            f"model.kind=ease on {n} items needs about {driver_bytes(n) / 2**30:.1f} GiB on the driver ({GRAM_COPIES} "
            f"items x items float64 matrices), over the {budget / 2**30:.1f} GiB budget; raise "
            "train.driver_max_bytes if the driver has the memory, or use a factor model (model.kind=wals or als)")
    started = time.time()
    sessions = session_use(prepared.interactions, cfg)
    heavy = heavy_channel_use(prepared.interactions, cfg, n, budget)
    grams = input_grams(prepared.interactions, n, cfg.session_seconds if sessions["used"] else 0.0,
                        heavy["threshold"] if heavy["used"] else None)
    log.info("ease: Gram of %d inputs counted in %.1fs; sessions: %s; heavy-use channel: %s", len(grams.counts),
             time.time() - started,
             f"weight {cfg.session_weight:g}, {cfg.session_seconds:g} s" if sessions["used"] else sessions["reason"],
             f"above weight {heavy['threshold']:g} ({heavy['profile']} weights)" if heavy["used"] else heavy["reason"])
    mean_count = float(np.trace(grams.counts[:n, :n])) / max(n, 1)
    lam = cfg.reg * max(mean_count, 1.0)
    lams = np.full(len(grams.counts), lam)
    lams[n:] = cfg.heavy_reg * max(mean_count, 1.0)
    gram = grams.counts
    if grams.sessions is not None:
        gram[:n, :n] += cfg.session_weight * grams.sessions
    del grams
    started = time.time()
    columns = solve(gram, lams, n)
    del gram
    log.info("ease: lambda %.4g (reg %.4g x %.4g interactions per item), solved in %.1fs", lam,
             cfg.reg, mean_count, time.time() - started)
    width = columns.shape[1]
    metadata = model_metadata("ease", width, width, None, cfg, **{
        "lambda": lam, "mean_item_count": mean_count, "sessions": sessions, "heavy_channel": heavy})
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


def heavy_channel_use(interactions: DataFrame, cfg, n_items: int, driver_max_bytes: int) -> dict:
    """Whether the heavy-use inputs apply: {"used", "reason", "threshold" (the median positive
    weight), "profile" (kernels/confidence.weight_profile's name of the weights)}. auto: for
    heavy-tailed weights when the 2n-input system fits the driver budget; on: for any weights that
    are not all equal, refused when it does not fit; off: never."""
    record = {"used": False, "reason": None, "threshold": None, "profile": None}
    if cfg.heavy_channel == "off":
        return {**record, "reason": "off (model.ease.heavy_channel)"}
    median = exact_median_positive(interactions, WEIGHT)
    profile = weight_profile(interactions, WEIGHT, median)
    record.update(threshold=median, profile=profile)
    if profile == "constant":
        return {**record, "reason": "every weight is the same"}
    if cfg.heavy_channel == "auto" and profile != "heavy-tailed":
        return {**record, "reason": f"auto: the weights are {profile}, not heavy-tailed"}
    needed = driver_bytes(2 * n_items)
    if needed > driver_max_bytes:
        if cfg.heavy_channel == "on":
            raise DriverMemoryError(
                f"model.ease.heavy_channel=on doubles EASE's inputs to {2 * n_items}: about {needed / 2**30:.1f} GiB "
                f"on the driver, over the {driver_max_bytes / 2**30:.1f} GiB budget; raise train.driver_max_bytes "
                "or set model.ease.heavy_channel=auto or off")
        return {**record, "reason": f"auto: {2 * n_items} inputs need {needed / 2**30:.1f} GiB, over the budget"}
    return {**record, "used": True}


class InputGrams:
    """F^T F of the binary inputs (items, then heavy-use inputs) and the session Gram of the items."""

    def __init__(self, counts: np.ndarray, sessions: np.ndarray | None):
        self.counts, self.sessions = counts, sessions


def input_grams(interactions: DataFrame, n_items: int, session_seconds: float = 0.0,
                heavy_threshold: float | None = None) -> InputGrams:
    """The inputs' Gram F^T F as a dense float64 matrix on the driver (n_items inputs, or 2 n_items
    with a heavy_threshold: input n_items + j where the weight of j passes it), and, when
    session_seconds > 0, the items' session Gram S (module docstring), else None.

    Counted in Spark in one job: pairs (f <= g) of inputs a user shares, summed per pair (map-side
    partial aggregation keeps the shuffle at most one row per pair and task); the triangle is
    mirrored here.
    """
    rows = interactions.groupBy(USER_INDEX, ITEM_INDEX).agg(F.max(TS).alias(TS), F.sum(WEIGHT).alias(WEIGHT))
    inputs = rows.select(USER_INDEX, F.col(ITEM_INDEX).alias("f"), TS)
    if heavy_threshold is not None:
        heavy = rows.filter(F.col(WEIGHT) > F.lit(float(heavy_threshold)))
        inputs = inputs.unionByName(heavy.select(USER_INDEX, (F.col(ITEM_INDEX) + F.lit(n_items)).alias("f"), TS))
    left, right = inputs.alias("a"), inputs.alias("b")
    sums = [F.count(F.lit(1)).cast("double").alias("c")]
    if session_seconds > 0:
        gap = F.abs(F.col("a." + TS) - F.col("b." + TS)).cast("double")
        both_items = (F.col("a.f") < n_items) & (F.col("b.f") < n_items)
        sums.append(F.sum(F.when(both_items, F.exp(-gap / float(session_seconds)))).alias("s"))  # null ts: nothing
    counts = (left.join(right, (F.col("a." + USER_INDEX) == F.col("b." + USER_INDEX)) & (F.col("a.f") <= F.col("b.f")))
              .groupBy(F.col("a.f").alias("i"), F.col("b.f").alias("j"))
              .agg(*sums))
    table = counts.toArrow()
    i = table.column("i").to_numpy().astype(np.int64)
    j = table.column("j").to_numpy().astype(np.int64)
    size = 2 * n_items if heavy_threshold is not None else n_items
    gram = _symmetric(i, j, table.column("c").to_numpy(), size)
    sessions = None
    if session_seconds > 0:
        items = (i < n_items) & (j < n_items)
        sessions = _symmetric(i[items], j[items], table.column("s").fill_null(0.0).to_numpy()[items], n_items)
    del table
    return InputGrams(gram, sessions)


def _symmetric(i: np.ndarray, j: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    matrix = np.zeros((size, size), dtype=np.float64)
    matrix[i, j] = values
    matrix[j, i] = values
    return matrix


def solve(gram: np.ndarray, lams: np.ndarray, n_items: int) -> np.ndarray:
    """B's columns as float32 rows (n_items, inputs): row j is column j of B (module docstring), for a
    Gram of n_items inputs (plain EASE: B = I - P diag(1/diag(P))) or 2 n_items (heavy-use channel).

    TensorFlow on the driver's device, in float64 (Cholesky, then the inverse from it); P is
    symmetric, so plain EASE's column j of B is -P[j] / P[j, j] with its j-th entry zeroed.
    """
    tf = import_tensorflow()
    size = gram.shape[0]
    regularised = tf.linalg.set_diag(tf.constant(gram, dtype=tf.float64), np.diag(gram) + lams)
    p = tf.linalg.cholesky_solve(tf.linalg.cholesky(regularised), tf.eye(size, dtype=tf.float64))
    del regularised
    if size == n_items:
        diag = tf.linalg.diag_part(p)
        return tf.linalg.set_diag(-p / diag[:, None], tf.zeros(size, dtype=tf.float64)).numpy().astype(np.float32)
    lam = float(lams[0])
    items, heavy = p[:, :n_items], p[:, n_items:]  # P's columns of the item inputs and of the heavy-use inputs
    p_jj = tf.linalg.diag_part(items[:n_items])
    p_jh = tf.linalg.diag_part(items[n_items:])  # P[n+j, j]
    p_hh = tf.linalg.diag_part(heavy[n_items:])
    b0_j, b0_h = 1.0 - lam * p_jj, -lam * p_jh  # B0[j, j] and B0[n+j, j]
    det = p_jj * p_hh - p_jh * p_jh
    gamma_j, gamma_h = (p_hh * b0_j - p_jh * b0_h) / det, (p_jj * b0_h - p_jh * b0_j) / det
    eye = tf.eye(size, n_items, dtype=tf.float64)
    b = eye - lam * items - items * gamma_j[None, :] - heavy * gamma_h[None, :]  # (inputs, n_items)
    zeros = tf.concat([tf.eye(n_items, dtype=tf.float64), tf.eye(n_items, dtype=tf.float64)], axis=0)
    b = tf.where(zeros > 0, tf.zeros_like(b), b)  # the two constrained entries, exactly 0
    return tf.transpose(b).numpy().astype(np.float32)

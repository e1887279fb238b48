"""Fold-in: factors for users the model has not seen, without retraining.

A new user's row solves the same regularised weighted least-squares problem as a WALS user
half-step, against the model's fixed item factors (recsys_spark/kernels/least_squares.py). The
Gramian w0 V^T V is computed once on the driver and broadcast with the item factors; users are
solved in batches on the executors (mapInPandas), one input row per user with their items.
New users get user_index values after the model's largest, so the result unions into
`model.user_factors` and is scored like everyone else.

Item-item models (EASE) need no solve: a user's vector is their history row, so a new user gets
an empty factor row like the model's own users and is scored from the items of the input.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config import WalsConfig
from recsys_spark.data.prepare import dense_index
from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX, WEIGHT
from recsys_spark.errors import FoldInError
from recsys_spark.kernels.confidence import confidence, row_regularization
from recsys_spark.kernels.least_squares import gramian, solve_users
from recsys_spark.models.factor_model import FactorModel

log = logging.getLogger(__name__)

_ITEMS, _WEIGHTS = "_items", "_weights"


def fold_in(model: FactorModel, interactions: DataFrame, params: dict | None = None,
            batch_users: int = 1024) -> DataFrame:
    """Factors for the users in `interactions` that `model` does not know.

    interactions: user_id, item_id and optionally weight (1.0 when absent); duplicate pairs are
    summed, items unknown to the model and null, NaN or negative weights are ignored.
    params: the objective (unobserved_weight, reg, reg_exponent, confidence, alpha, ...); default
    model.metadata["foldin"], which WALS writes (item-item models need none). Returns user_index,
    user_id, factors with user_index after the model's largest, one row per new user with at least
    one known item.
    """
    params = params or model.metadata.get("foldin")
    if not params and not model.item_item:
        raise FoldInError(f"a {model.kind} model records no fold-in parameters; train with model.kind=wals "
                          "or pass params (unobserved_weight, reg, reg_exponent, confidence, alpha)")
    user_type = model.user_factors.schema[USER_ID].dataType
    item_type = model.item_factors.schema[ITEM_ID].dataType
    weight = F.col(WEIGHT).cast("double") if WEIGHT in interactions.columns else F.lit(1.0)
    rows = (interactions.select(F.col(USER_ID).cast(user_type).alias(USER_ID),
                                F.col(ITEM_ID).cast(item_type).alias(ITEM_ID), weight.alias(WEIGHT))
            .filter(F.col(USER_ID).isNotNull() & F.col(WEIGHT).isNotNull() & ~F.isnan(WEIGHT) & (F.col(WEIGHT) >= 0))
            .join(model.user_factors.select(USER_ID), USER_ID, "left_anti")
            .join(model.item_factors.select(ITEM_ID, ITEM_INDEX), ITEM_ID)
            .groupBy(USER_ID, ITEM_INDEX).agg(F.sum(WEIGHT).alias(WEIGHT)))
    pairs = F.sort_array(F.collect_list(F.struct(ITEM_INDEX, WEIGHT)))
    users = (rows.groupBy(USER_ID).agg(pairs.alias("_pairs"))
             .select(USER_ID, F.col("_pairs")[ITEM_INDEX].alias(_ITEMS), F.col("_pairs")[WEIGHT].alias(_WEIGHTS)))
    largest = model.user_factors.agg(F.max(USER_INDEX)).first()[0]
    offset = 0 if largest is None else largest + 1
    user_map, n_new = dense_index(users.select(USER_ID), USER_ID, USER_INDEX)
    indexed = (user_map.select((F.col(USER_INDEX) + F.lit(offset)).cast("int").alias(USER_INDEX), USER_ID)
               .join(users, USER_ID))
    if model.item_item:
        log.info("fold-in: %d new users get user_index %d..%d (item-item: scored from their history)",
                 n_new, offset, offset + n_new - 1)
        return indexed.select(USER_INDEX, USER_ID, F.array().cast("array<float>").alias(FACTORS))

    item_matrix = model.item_factor_matrix()
    spark = interactions.sparkSession
    shared = spark.sparkContext.broadcast((item_matrix, gramian(item_matrix, float(params["unobserved_weight"]))))
    schema = T.StructType([
        T.StructField(USER_INDEX, T.IntegerType(), False),
        T.StructField(USER_ID, user_type, False),
        T.StructField(FACTORS, T.ArrayType(T.FloatType(), False), False),
    ])

    def solve_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        item_factors, gram_w0 = shared.value
        for batch in batches:
            for start in range(0, len(batch), batch_users):
                yield solve_frame(batch.iloc[start:start + batch_users], item_factors, gram_w0, params)

    log.info("fold-in: %d new users get user_index %d..%d", n_new, offset, offset + n_new - 1)
    return indexed.mapInPandas(solve_batches, schema)


def add_new_users(model: FactorModel, interactions: DataFrame, params: dict | None = None) -> FactorModel:
    """The model with fold-in factors for the users in `interactions` it does not know."""
    new_users = fold_in(model, interactions, params)
    return FactorModel(model.user_factors.unionByName(new_users), model.item_factors, dict(model.metadata))


def solve_frame(chunk: pd.DataFrame, item_factors: np.ndarray, gram_w0: np.ndarray, params: dict) -> pd.DataFrame:
    """Solve one pandas batch of users (columns user_index, user_id, _items, _weights)."""
    lengths = chunk[_ITEMS].map(len).to_numpy(dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    items = np.concatenate([np.asarray(v, dtype=np.int64) for v in chunk[_ITEMS]]) if len(chunk) else np.zeros(0, np.int64)
    weights = np.concatenate([np.asarray(v, dtype=np.float64) for v in chunk[_WEIGHTS]]) if len(chunk) else np.zeros(0)
    local_users = np.repeat(np.arange(len(chunk)), lengths)
    w0 = float(params["unobserved_weight"])
    idf = np.asarray(params["bm25_idf"]) if "bm25_idf" in params else None
    defaults = WalsConfig()  # models saved before a key was recorded used these
    conf = confidence(local_users, items, weights, params["confidence"], alpha=float(params["alpha"]),
                      epsilon=float(params.get("epsilon", defaults.epsilon)),
                      bm25_k1=float(params.get("bm25_k1", defaults.bm25_k1)),
                      bm25_b=float(params.get("bm25_b", defaults.bm25_b)), item_idf=idf,
                      mean_user_weight=float(params.get("bm25_mean_user_weight", 1.0)))
    reg = row_regularization(lengths, item_factors.shape[0], float(params["reg"]), w0, float(params["reg_exponent"]))
    factors = solve_users(indptr, items, conf, item_factors, gram_w0, reg, w0)
    return pd.DataFrame({USER_INDEX: chunk[USER_INDEX].to_numpy(dtype=np.int32),
                         USER_ID: chunk[USER_ID].to_numpy(), FACTORS: list(factors)})

"""Score every user: mapInPandas over users, item factors broadcast once, seen items masked.

Each Arrow batch of users runs the blockwise top-N kernel (recsys_spark/kernels/topk.py), so a
task's memory is bounded by score.batch_users x score.block_items x 4 bytes.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config import ScoreConfig
from recsys_spark.factor_model import FactorModel
from recsys_spark.kernels.topk import top_n
from recsys_spark.schema import FACTORS, ITEM_ID, ITEM_INDEX, RANK, SCORE, USER_ID, USER_INDEX

log = logging.getLogger(__name__)

SEEN = "seen_items"


def recommend(model: FactorModel, seen: DataFrame, cfg: ScoreConfig) -> DataFrame:
    """Top-N unseen items for every user of the model.

    seen: DataFrame with user_index, item_index of the items each user must not get.
    Returns user_id, rank (1..k), item_id, score with k = min(top_n, catalog - seen).
    """
    spark = model.user_factors.sparkSession
    items = model.item_factors.select(ITEM_INDEX, ITEM_ID).toPandas().sort_values(ITEM_INDEX)
    item_matrix = model.item_factor_matrix()
    item_ids = np.empty(item_matrix.shape[0], dtype=object)
    item_ids[items[ITEM_INDEX].to_numpy()] = items[ITEM_ID].to_numpy()
    broadcast = spark.sparkContext.broadcast((item_matrix, item_ids))
    seen_lists = seen.groupBy(USER_INDEX).agg(F.collect_list(ITEM_INDEX).alias(SEEN))
    users = model.user_factors.join(seen_lists, USER_INDEX, "left").select(USER_ID, FACTORS, SEEN)
    schema = T.StructType([
        T.StructField(USER_ID, model.user_factors.schema[USER_ID].dataType, False),
        T.StructField(RANK, T.IntegerType(), False),
        T.StructField(ITEM_ID, model.item_factors.schema[ITEM_ID].dataType, False),
        T.StructField(SCORE, T.FloatType(), False),
    ])
    top, batch_users, block_items = cfg.top_n, cfg.batch_users, cfg.block_items

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        factors, ids = broadcast.value
        for batch in batches:
            for start in range(0, len(batch), batch_users):
                yield _score_chunk(batch.iloc[start:start + batch_users], factors, ids, top, block_items)

    return users.mapInPandas(score_batches, schema)


def _score_chunk(chunk: pd.DataFrame, item_matrix: np.ndarray, item_ids: np.ndarray, top: int,
                 block_items: int) -> pd.DataFrame:
    user_vectors = np.stack(chunk[FACTORS].to_numpy()).astype(np.float32, copy=False) if len(chunk) else \
        np.zeros((0, item_matrix.shape[1]), dtype=np.float32)
    indptr, indices = seen_csr(chunk[SEEN])
    idx, scores = top_n(user_vectors, item_matrix, top, indptr, indices, block_items)
    return topn_frame(chunk[USER_ID].to_numpy(), idx, scores, item_ids, USER_ID, ITEM_ID)


def seen_csr(lists: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of a Series of item-index lists (None for users with none)."""
    lengths = np.fromiter((0 if v is None else len(v) for v in lists), dtype=np.int64, count=len(lists))
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    parts = [np.asarray(v, dtype=np.int64) for v in lists if v is not None and len(v)]
    indices = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return indptr, indices


def topn_frame(keys: np.ndarray, idx: np.ndarray, scores: np.ndarray, item_ids: np.ndarray,
               key_col: str, item_col: str) -> pd.DataFrame:
    """Long format (key, rank, item, score) of a top-N result, dropping missing slots."""
    valid = idx >= 0
    rows, cols = np.nonzero(valid)
    return pd.DataFrame({
        key_col: keys[rows],
        RANK: (cols + 1).astype(np.int32),
        item_col: item_ids[idx[rows, cols]],
        SCORE: scores[rows, cols].astype(np.float32),
    })

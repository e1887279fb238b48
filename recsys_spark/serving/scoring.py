"""Score every user: mapInArrow over users, the item catalog broadcast once, seen items masked.

Factor models score a user's factor row against the item factors; item-item models
(FactorModel.item_item, e.g. EASE) score the user's history row, their seen items, against the
item columns (kernels/topk.py prepare_history_items): the same kernel, rules and fallback.

Each Arrow batch of users runs the blockwise top-N kernel (recsys_spark/kernels/topk.py), so a
task's memory is bounded by score.batch_users x score.block_items x 4 bytes. Arrow (not pandas)
carries the batches: factor and seen-item lists arrive as flat buffers, no per-user objects.
The broadcast value is deserialised once per Python worker and reused by its later tasks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from recsys_spark.config import ScoreConfig
from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, RANK, SCORE, SOURCE, USER_ID, USER_INDEX, WEIGHT
from recsys_spark.errors import ModelError
from recsys_spark.kernels.fallback import fill_from_ranking
from recsys_spark.kernels.sparse_rows import SparseRows
from recsys_spark.kernels.topk import MISSING, PreparedItems, prepare_history_items, prepared_once, top_n
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.serving.rules import (
    POPULARITY,
    SOURCE_FALLBACK,
    SOURCE_MODEL,
    Rules,
    candidate_mask,
    popularity_ranking,
)
from recsys_spark.serving.tasks import scoring_partitions, worker_precision

log = logging.getLogger(__name__)

BLOCKED = "blocked_items"  # per user: items seen, plus rules.exclude_user_items
HISTORY = "history_items"  # per user of an item-item model: the items seen, their vector


@dataclass
class Catalog:
    """What every scoring task needs about the items (broadcast once)."""
    factors: np.ndarray  # (M, k) float32 factors of the items the model may recommend
    model_items: np.ndarray  # (M,) int32 item index of each factors row, ascending
    position: np.ndarray  # (n_items,) int32 row in `factors` of each item index, -1 if none
    item_ids: pa.Array  # (n_items,) external id of each item index
    ranking: Optional[np.ndarray]  # fallback: item indexes best first, or None without fallback
    fallback_score: Optional[np.ndarray]  # (n_items,) float32 popularity
    history_items: int = 0  # item-item models: length of a history row (the model's items); 0: factors

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def prepared(self, block_items: int, precision: str) -> PreparedItems:
        """The factors ordered and loaded for the kernel, once per worker process."""
        if not self.history_items:
            return prepared_once(self, self.factors, block_items, precision)
        # Item-item: rows of `factors` are the candidates' columns; the kernel holds them ordered
        # (one copy), so the broadcast's own copy is let go once they are prepared.
        items = prepared_once(self, self.factors, block_items, precision,
                              lambda columns, block: prepare_history_items(columns.T, block))
        self.factors = self.factors[:0]
        return items


def recommend(model: FactorModel, seen: DataFrame, cfg: ScoreConfig, *, rules: Optional[Rules] = None) -> DataFrame:
    """Top-N items for every user of the model, seen and excluded items masked.

    seen: user_index, item_index of the items each user must not get (their history), with their
    weight (a column `weight`) for an item-item model with heavy-use inputs (FactorModel.heavy_threshold).
    rules: exclusions, include list and popularity fallback (recsys_spark.serving.rules.build_rules).
    Returns user_id, rank (1..k), item_id, score, source ("model", then "fallback" rows), with
    k = min(top_n, candidates - excluded) for users who have factors or get the fallback.
    """
    heavy = model.heavy_threshold
    if heavy is not None and WEIGHT not in seen.columns:
        raise ModelError("this EASE model has heavy-use inputs (model.ease.heavy_channel): its users are scored "
                         "from their history with its weights, so `seen` needs a weight column")
    rules = rules or Rules()
    spark = model.user_factors.sparkSession
    catalog = build_catalog(model, rules)
    log.info("score: %d candidate items with factors, fallback %s", len(catalog.model_items),
             "on" if catalog.ranking is not None else "off")
    broadcast = spark.sparkContext.broadcast(catalog)
    weight = (F.col(WEIGHT) if heavy is not None else F.lit(None)).cast("double").alias("_weight")
    excluded = seen.select(USER_INDEX, ITEM_INDEX, F.lit(True).alias("_seen"), weight)
    if rules.exclude_user_items is not None:
        excluded = excluded.unionByName(rules.exclude_user_items.select(
            USER_INDEX, ITEM_INDEX, F.lit(False).alias("_seen"), F.lit(None).cast("double").alias("_weight")))
    lists_of = [F.collect_list(ITEM_INDEX).alias(BLOCKED)]
    if model.item_item:
        history = F.collect_set(F.when(F.col("_seen"), F.col(ITEM_INDEX)))
        if heavy is not None:  # item j's heavy-use input is history entry width/2 + j
            heavy_inputs = F.when(F.col("_seen") & (F.col("_weight") > F.lit(heavy)), F.col(ITEM_INDEX) + model.width // 2)
            history = F.array_union(history, F.collect_set(heavy_inputs))
        lists_of.append(history.alias(HISTORY))
    # Both sides hash-partitioned by user with an explicit count: the join needs no further
    # shuffle, and adaptive execution cannot coalesce the scoring into one or two tasks (it
    # would: the factor table is small in bytes, the work on it is not).
    partitions = scoring_partitions(spark, cfg)
    lists = excluded.repartition(partitions, USER_INDEX).groupBy(USER_INDEX).agg(*lists_of)
    users = model.user_factors.select(USER_INDEX, USER_ID, FACTORS)
    if rules.fallback_users is not None:
        factor_type = users.schema[FACTORS].dataType
        without = (rules.fallback_users.select(USER_INDEX, USER_ID).join(users.select(USER_INDEX), USER_INDEX, "left_anti")
                   .withColumn(FACTORS, F.lit(None).cast(factor_type)))
        users = users.unionByName(without)
    users = (users.repartition(partitions, USER_INDEX).join(lists, USER_INDEX, "left")
             .select(USER_ID, FACTORS, BLOCKED, *([HISTORY] if model.item_item else [])))
    schema = T.StructType([
        T.StructField(USER_ID, model.user_factors.schema[USER_ID].dataType, False),
        T.StructField(RANK, T.IntegerType(), False),
        T.StructField(ITEM_ID, model.item_factors.schema[ITEM_ID].dataType, False),
        T.StructField(SCORE, T.FloatType(), False),
        T.StructField(SOURCE, T.StringType(), False),
    ])
    arrow_schema = to_arrow_schema(schema)
    top, batch_users, block_items, precision = cfg.top_n, cfg.batch_users, cfg.block_items, cfg.precision
    if model.item_item:
        precision = "float32"  # its engine sums rows exactly: no bfloat16 GEMM, no TensorFlow in the workers

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        catalog = broadcast.value
        items = catalog.prepared(block_items, worker_precision(precision))
        for batch in batches:
            for start in range(0, batch.num_rows, batch_users):
                yield score_chunk(batch.slice(start, batch_users), catalog, items, top, arrow_schema)

    return users.mapInArrow(score_batches, schema)


def build_catalog(model: FactorModel, rules: Rules) -> Catalog:
    """Driver side: the candidate items' factors, the id of every item and the fallback ranking.

    Collects item-sized data to the driver on purpose: it is what every task needs.
    Items without factors are not scored by the model; the fallback may still recommend them.
    """
    items = model.item_factors.select(ITEM_INDEX, ITEM_ID, FACTORS).toPandas()
    popular = rules.item_popularity.toPandas() if rules.item_popularity is not None else None
    n_items = int(max(items[ITEM_INDEX].max() + 1 if len(items) else 0,
                      popular[ITEM_INDEX].max() + 1 if popular is not None and len(popular) else 0))
    ids = np.empty(n_items, dtype=object)
    if popular is not None:
        ids[popular[ITEM_INDEX].to_numpy()] = popular[ITEM_ID].to_numpy()
    ids[items[ITEM_INDEX].to_numpy()] = items[ITEM_ID].to_numpy()
    candidates = candidate_mask(rules, n_items)
    has_factors = np.zeros(n_items, dtype=bool)
    has_factors[items[ITEM_INDEX].to_numpy()] = True
    model_items = np.flatnonzero(candidates & has_factors).astype(np.int32)
    matrix = np.zeros((n_items, model.width), dtype=np.float32)
    if len(items):
        matrix[items[ITEM_INDEX].to_numpy()] = np.stack(items[FACTORS].to_numpy())
    position = np.full(n_items, -1, dtype=np.int32)
    position[model_items] = np.arange(len(model_items), dtype=np.int32)
    id_type = to_arrow_schema(T.StructType([model.item_factors.schema[ITEM_ID]])).field(0).type
    ranking = fallback_score = None
    if popular is not None:
        fallback_score = np.full(n_items, np.nan, dtype=np.float32)
        fallback_score[popular[ITEM_INDEX].to_numpy()] = popular[POPULARITY].to_numpy()
        ranking = popularity_ranking(fallback_score, candidates)
    return Catalog(np.ascontiguousarray(matrix[model_items]), model_items, position,
                   pa.array(ids, type=id_type), ranking, fallback_score, model.width if model.item_item else 0)


def score_chunk(chunk: pa.RecordBatch, catalog: Catalog, items: PreparedItems, top: int,
                schema: pa.Schema) -> pa.RecordBatch:
    """Top-N rows (user_id, rank, item_id, score, source) of one Arrow chunk of users."""
    indptr, indices = list_csr(chunk.column(BLOCKED), catalog.n_items)
    idx = np.full((chunk.num_rows, top), MISSING, dtype=np.int32)
    scores = np.full((chunk.num_rows, top), -np.inf, dtype=np.float32)
    factors = chunk.column(FACTORS)
    has = np.asarray(factors.is_valid().to_numpy(zero_copy_only=False))
    if catalog.history_items:  # item-item: a user's vector is their history; none, the fallback serves them
        history_indptr, history = list_csr(chunk.column(HISTORY), catalog.history_items)
        has &= np.diff(history_indptr) > 0
    if has.any():
        if catalog.history_items:
            vectors = SparseRows(*csr_rows(history_indptr, history, np.flatnonzero(has)))
        else:
            vectors = factor_rows(factors.filter(pa.array(has)), catalog.factors.shape[1])
        rows_indptr, rows_indices = csr_rows(indptr, indices, np.flatnonzero(has))
        at = catalog.position[rows_indices]
        kept = at >= 0
        kept_indptr = np.r_[0, np.cumsum(kept)][rows_indptr]
        pos, best = top_n(vectors, items, top, kept_indptr, at[kept])
        idx[has] = np.where(pos >= 0, catalog.model_items[np.maximum(pos, 0)], MISSING)
        scores[has] = best
        if catalog.history_items and catalog.ranking is not None:
            # An item-item score of 0 is no evidence (no history item relates to it), and the sorted tail
            # from there holds no better: those slots go to the fallback rather than to index order.
            idx[scores <= 0] = MISSING
    from_model = (idx != MISSING).sum(axis=1)
    if catalog.ranking is not None:
        idx = fill_from_ranking(idx, catalog.ranking, indptr, indices, catalog.n_items)
    rows, cols = np.nonzero(idx != MISSING)
    fallback = cols >= from_model[rows]
    items = idx[rows, cols]
    row_scores = scores[rows, cols]
    if fallback.any():
        row_scores[fallback] = catalog.fallback_score[items[fallback]]
    return pa.RecordBatch.from_arrays([
        chunk.column(USER_ID).take(pa.array(rows)).cast(schema.field(USER_ID).type),
        pa.array((cols + 1).astype(np.int32)),
        catalog.item_ids.take(pa.array(items)),
        pa.array(row_scores.astype(np.float32)),
        pc.if_else(pa.array(fallback), SOURCE_FALLBACK, SOURCE_MODEL),
    ], schema=schema)


def list_csr(lists: pa.Array, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices int64) of an Arrow list<int> column; null lists are empty.

    Indexes outside 0..n_items-1 (items the catalog does not know) are dropped.
    """
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = lists.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    known = (values >= 0) & (values < n_items)
    indptr = np.r_[0, np.cumsum(known)][np.r_[0, np.cumsum(lengths)]]
    return indptr.astype(np.int64), values[known]


def csr_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR sub-matrix of the given rows."""
    lengths = indptr[rows + 1] - indptr[rows]
    sub_indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    at = np.repeat(indptr[rows] - sub_indptr[:-1], lengths) + np.arange(sub_indptr[-1])
    return sub_indptr, indices[at]


def factor_rows(factors: pa.Array, rank: int) -> np.ndarray:
    """(B, rank) float32 matrix of a non-null Arrow list<float> column."""
    values = factors.flatten().to_numpy(zero_copy_only=False)
    if values.size != len(factors) * rank:
        raise ModelError(f"user factors must all have length {rank} like the item factors; "
                         f"retrain or repair the model's user_factors table")
    return values.astype(np.float32, copy=False).reshape(len(factors), rank)

"""Item similarity: exact cosine top-K over all items with the same blockwise engine as scoring.

The global rules (exclusions, include list) restrict the neighbours, not the anchors: an excluded
item keeps its own list but never appears in anyone's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from recsys_spark.config import ScoreConfig, SimilarConfig
from recsys_spark.data.schema import ITEM_ID, ITEM_INDEX, RANK, SCORE, SIMILAR_ITEM_ID
from recsys_spark.kernels.topk import prepared_once, top_n
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.serving.rules import Rules, candidate_mask
from recsys_spark.serving.tasks import scoring_partitions, worker_precision


@dataclass
class Neighbours:
    """What every similarity task needs (broadcast once)."""
    vectors: np.ndarray  # (n_items, k) unit factors of every item index
    candidates: np.ndarray  # (M, k) unit factors of the items that may be neighbours
    items: np.ndarray  # (M,) item index of each candidate row
    position: np.ndarray  # (n_items,) candidate row of each item index, -1 if none
    item_ids: pa.Array  # (n_items,) external id of each item index


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero (cosine 0 with everything)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def similar_items(model: FactorModel, cfg: SimilarConfig, score_cfg: ScoreConfig = ScoreConfig(), *,
                  rules: Optional[Rules] = None) -> DataFrame:
    """Top-K most similar other items per item by cosine of item factors.

    rules: only items the global rules allow are neighbours (recsys_spark.serving.rules.build_rules).
    Returns item_id, rank (1..min(K, neighbours other than the item)), similar_item_id, score in [-1, 1].
    """
    spark = model.item_factors.sparkSession
    items = model.item_factors.select(ITEM_INDEX, ITEM_ID).toPandas().sort_values(ITEM_INDEX)
    unit = normalize_rows(model.item_factor_matrix())
    has_factors = np.zeros(unit.shape[0], dtype=bool)
    has_factors[items[ITEM_INDEX].to_numpy()] = True
    neighbours = np.flatnonzero(candidate_mask(rules or Rules(), unit.shape[0]) & has_factors)
    position = np.full(unit.shape[0], -1, dtype=np.int64)
    position[neighbours] = np.arange(len(neighbours))
    id_type = model.item_factors.schema[ITEM_ID].dataType
    schema = T.StructType([
        T.StructField(ITEM_ID, id_type, False),
        T.StructField(RANK, T.IntegerType(), False),
        T.StructField(SIMILAR_ITEM_ID, id_type, False),
        T.StructField(SCORE, T.FloatType(), False),
    ])
    arrow_schema = to_arrow_schema(schema)
    ids = np.empty(unit.shape[0], dtype=object)
    ids[items[ITEM_INDEX].to_numpy()] = items[ITEM_ID].to_numpy()
    broadcast = spark.sparkContext.broadcast(Neighbours(unit, np.ascontiguousarray(unit[neighbours]), neighbours,
                                                        position, pa.array(ids, type=arrow_schema.field(ITEM_ID).type)))
    top, batch_size, block_items, precision = cfg.top_k, score_cfg.batch_users, score_cfg.block_items, score_cfg.precision

    def similar_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        catalog = broadcast.value
        vectors, neighbour_items, position, item_ids = catalog.vectors, catalog.items, catalog.position, catalog.item_ids
        prepared = prepared_once(catalog, catalog.candidates, block_items, worker_precision(precision))
        for batch in batches:
            index = batch.column(ITEM_INDEX).to_numpy().astype(np.int64)
            for start in range(0, len(index), batch_size):
                chunk = index[start:start + batch_size]
                own = position[chunk]  # the item itself, when it is a neighbour candidate
                self_indptr = np.r_[0, np.cumsum(own >= 0)].astype(np.int64)
                idx, scores = top_n(vectors[chunk], prepared, top, self_indptr, own[own >= 0])
                rows, cols = np.nonzero(idx >= 0)
                yield pa.RecordBatch.from_arrays([
                    item_ids.take(pa.array(chunk[rows])),
                    pa.array((cols + 1).astype(np.int32)),
                    item_ids.take(pa.array(neighbour_items[idx[rows, cols]])),
                    pa.array(np.clip(scores[rows, cols], -1.0, 1.0).astype(np.float32)),
                ], schema=arrow_schema)

    anchors = model.item_factors.select(ITEM_INDEX).repartition(scoring_partitions(spark, score_cfg), ITEM_INDEX)
    return anchors.mapInArrow(similar_batches, schema)

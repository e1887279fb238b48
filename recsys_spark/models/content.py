"""Content vectors from item features (model.kind=content), on the driver.

Item vector = the item's features (L2-normalised with normalize_items; zero for items without
features). User vector = the L2-normalised weighted sum of the vectors of the items the user
interacted with, weighted by the prepared weights. Nothing is learned, so no epochs and no seed;
it recommends items that have no interactions yet as readily as popular ones.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from pyspark.sql import DataFrame

from recsys_spark.config import ModelConfig, TrainConfig
from recsys_spark.data.item_features import feature_matrix
from recsys_spark.data.prepare import PreparedData
from recsys_spark.errors import ConfigError
from recsys_spark.models.driver_data import Interactions, collect_interactions
from recsys_spark.models.factor_model import FactorModel, model_metadata

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # interactions summed at a time, to bound the temporary (chunk x features) block


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig,
          item_features: DataFrame | None = None) -> FactorModel:
    """Content vectors from an (item_id, features array<float>) DataFrame (read from
    model.content.features_path by the caller)."""
    if item_features is None:
        raise ConfigError("model.kind=content needs item features: set model.content.features_path "
                          "(CSV/Parquet with item_id and features, or MovieLens u.item)")
    started = time.time()
    matrix = feature_matrix(item_features, prepared.item_ids, prepared.n_items)
    data = collect_interactions(prepared.interactions, prepared.n_users, prepared.n_items,
                                train_cfg.driver_max_bytes, rows=prepared.stats.get("interactions"))
    users, items = content_vectors(data, matrix, model_cfg.content.normalize_items)
    covered = int(np.count_nonzero(np.abs(matrix).sum(axis=1)))
    log.info("content: %d features, %d of %d items have features, %.1fs",
             matrix.shape[1], covered, prepared.n_items, time.time() - started)
    metadata = model_metadata("content", matrix.shape[1], items.shape[1], None, model_cfg.content,
                              items_with_features=covered)
    return FactorModel.from_numpy(users, items, prepared.user_ids, prepared.item_ids, metadata)


def content_vectors(data: Interactions, item_features: np.ndarray, normalize_items: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(user vectors, item vectors): users are the L2-normalised weighted sums of their items' vectors."""
    items = item_features.astype(np.float32)
    if normalize_items:
        items = _l2_normalize(items)
    users = np.zeros((data.n_users, items.shape[1]), dtype=np.float64)
    for start in range(0, len(data), CHUNK):
        stop = start + CHUNK
        np.add.at(users, data.users[start:stop],
                  data.weights[start:stop, None].astype(np.float64) * items[data.items[start:stop]])
    return _l2_normalize(users).astype(np.float32), items


def _l2_normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)

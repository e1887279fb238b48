"""Two-tower retrieval with in-batch softmax (model.kind=two_tower), TensorFlow on the driver.

User tower: an id embedding. Item tower: an id embedding plus, optionally, a linear projection of
the item features. Both outputs are L2-normalised; for a batch of (user, item) interactions the
logits are cos(u_a, v_b) / temperature, every other item of the batch serving as a negative.
Popular items are over-represented as in-batch negatives, so with popularity_correction the
logit of item b is lowered by log q_b, its share of the interactions (log-q correction,
Yi et al. 2019). Early stopping on recall@20 of a seeded validation split.

Factors: the normalised tower outputs (scores are cosines).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame

from recsys_spark.config import ModelConfig, TrainConfig, TwoTowerConfig
from recsys_spark.data.item_features import feature_matrix
from recsys_spark.data.prepare import PreparedData
from recsys_spark.errors import ConfigError
from recsys_spark.kernels.tf_runtime import import_tensorflow
from recsys_spark.models.driver_data import Interactions, collect_interactions
from recsys_spark.models.factor_model import FactorModel, model_metadata
from recsys_spark.models.tf_training import (
    Csr,
    batches,
    fit_epochs,
    recall_at_k,
    set_seed,
    split_validation,
)

log = logging.getLogger(__name__)

VALIDATION_USERS = 10_000
VALIDATION_K = 20


@dataclass
class TwoTowerFit:
    user_factors: np.ndarray
    item_factors: np.ndarray
    best_epoch: int
    history: list


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig,
          item_features: DataFrame | None = None) -> FactorModel:
    """Train the two towers on the driver; with model.two_tower.item_features the item tower also
    sees `item_features` (item_id, features), read from model.content.features_path by the caller."""
    cfg = model_cfg.two_tower
    features = None
    if cfg.item_features:
        if item_features is None:
            raise ConfigError("model.two_tower.item_features needs model.content.features_path; "
                              "set it or turn item_features off")
        features = feature_matrix(item_features, prepared.item_ids, prepared.n_items)
    data = collect_interactions(prepared.interactions, prepared.n_users, prepared.n_items,
                                train_cfg.driver_max_bytes, rows=prepared.stats.get("interactions"))
    fit = fit_two_tower(data, model_cfg.rank, cfg, model_cfg.seed, features)
    metadata = model_metadata("two_tower", model_cfg.rank, fit.item_factors.shape[1], model_cfg.seed, cfg,
                              best_epoch=fit.best_epoch, history=fit.history)
    return FactorModel.from_numpy(fit.user_factors, fit.item_factors, prepared.user_ids, prepared.item_ids, metadata)


def fit_two_tower(data: Interactions, rank: int, cfg: TwoTowerConfig, seed: int,
                  item_features: np.ndarray | None = None) -> TwoTowerFit:
    """Fit user and item towers on the (user, item) pairs of `data` by in-batch softmax."""
    tf = import_tensorflow()  # before keras, which imports it too
    import keras

    set_seed(seed)
    train_data, held_out = split_validation(data, cfg.validation_fraction, seed)
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(rank)
    variables = [
        tf.Variable(rng.normal(0, scale, (data.n_users, rank)).astype(np.float32), name="user_embedding"),
        tf.Variable(rng.normal(0, scale, (data.n_items, rank)).astype(np.float32), name="item_embedding"),
    ]
    features = None
    if item_features is not None:
        features = tf.constant(item_features.astype(np.float32))
        width = item_features.shape[1]
        variables.append(tf.Variable(rng.normal(0, 1.0 / np.sqrt(width), (width, rank)).astype(np.float32),
                                     name="feature_projection"))
    counts = np.bincount(train_data.items, minlength=data.n_items).astype(np.float64)
    log_q = tf.constant(np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0)).astype(np.float32))
    optimizer = keras.optimizers.Adam(cfg.learning_rate)

    def item_tower(items):
        vec = tf.gather(variables[1], items)
        if features is not None:
            vec += tf.matmul(tf.gather(features, items), variables[2])
        return tf.math.l2_normalize(vec, axis=1)

    index = tf.TensorSpec([None], tf.int32)

    @tf.function(input_signature=[index, index])
    def step(users, items):
        with tf.GradientTape() as tape:
            user_vec = tf.math.l2_normalize(tf.gather(variables[0], users), axis=1)
            logits = tf.matmul(user_vec, item_tower(items), transpose_b=True) / cfg.temperature
            if cfg.popularity_correction:
                logits -= tf.gather(log_q, items)[None, :]
            # The same item twice in a batch is a positive, not a negative, for both rows.
            same = tf.cast(tf.equal(items[:, None], items[None, :]), tf.float32)
            labels = same / tf.reduce_sum(same, axis=1, keepdims=True)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def factors():
        users = tf.math.l2_normalize(variables[0], axis=1).numpy()
        items = item_tower(np.arange(data.n_items)).numpy()
        return users, items

    val_users = np.unique(held_out.users)
    if len(val_users) > VALIDATION_USERS:
        val_users = np.sort(rng.choice(val_users, VALIDATION_USERS, replace=False))
    train_rows, held_rows = Csr.from_interactions(train_data), Csr.from_interactions(held_out)

    def train_epoch(epoch: int) -> float:
        total = 0.0
        for idx in batches(len(train_data), cfg.batch_size, rng):
            total += float(step(train_data.users[idx], train_data.items[idx])) * len(idx)
        return total / max(len(train_data), 1)

    def validation_recall() -> float:
        users, items = factors()
        return recall_at_k(users[val_users], items, val_users, train_rows, held_rows, VALIDATION_K)

    fitted = fit_epochs("two_tower", cfg.epochs, train_epoch, variables,
                        validation_recall if len(val_users) else None, metric=f"recall@{VALIDATION_K}",
                        patience=cfg.patience)
    users, items = factors()
    return TwoTowerFit(users, items, fitted.best_epoch, fitted.history)

"""Biased matrix factorization on observed ratings (model.kind=mf), TensorFlow on the driver.

    rating(u, i) ~ mu + b_u + b_i + p_u . q_i

fitted by mini-batch Adam on squared error with L2 on factors and biases, for explicit feedback
(ratings as the prepared weights). Early stopping on the RMSE of a seeded validation split.
The biases are folded into two extra columns so a score stays one dot product:

    user row [p_u, b_u, 1]    item row [q_i, 1, mu + b_i]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from recsys_spark.config import MfConfig, ModelConfig, TrainConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.kernels.tf_runtime import import_tensorflow
from recsys_spark.models.driver_data import Interactions, collect_interactions
from recsys_spark.models.factor_model import FactorModel, model_metadata
from recsys_spark.models.tf_training import batches, fit_epochs, set_seed, split_validation

log = logging.getLogger(__name__)


@dataclass
class MfFit:
    user_factors: np.ndarray  # (n_users, k + 2): [p, b_u, 1]
    item_factors: np.ndarray  # (n_items, k + 2): [q, 1, mu + b_i]
    global_mean: float
    best_epoch: int
    history: list


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig,
          item_features=None) -> FactorModel:
    """Train biased MF on the prepared weights (ratings) and return its folded factors."""
    data = collect_interactions(prepared.interactions, prepared.n_users, prepared.n_items,
                                train_cfg.driver_max_bytes, rows=prepared.stats.get("interactions"))
    fit = fit_mf(data, model_cfg.rank, model_cfg.mf, model_cfg.seed)
    metadata = model_metadata("mf", model_cfg.rank, fit.item_factors.shape[1], model_cfg.seed, model_cfg.mf,
                              global_mean=fit.global_mean, best_epoch=fit.best_epoch, history=fit.history)
    return FactorModel.from_numpy(fit.user_factors, fit.item_factors, prepared.user_ids, prepared.item_ids, metadata)


def fit_mf(data: Interactions, rank: int, cfg: MfConfig, seed: int) -> MfFit:
    """Fit mu + b_u + b_i + p_u . q_i to the weights of `data`; return the folded factors."""
    tf = import_tensorflow()  # before keras, which imports it too
    import keras

    set_seed(seed)
    train_data, held_out = split_validation(data, cfg.validation_fraction, seed)
    mu = float(train_data.weights.mean())
    rng = np.random.default_rng(seed)
    user_vec = tf.Variable(rng.normal(0, cfg.init_stddev, (data.n_users, rank)).astype(np.float32))
    item_vec = tf.Variable(rng.normal(0, cfg.init_stddev, (data.n_items, rank)).astype(np.float32))
    user_bias = tf.Variable(np.zeros(data.n_users, np.float32))
    item_bias = tf.Variable(np.zeros(data.n_items, np.float32))
    variables = [user_vec, item_vec, user_bias, item_bias]
    optimizer = keras.optimizers.Adam(cfg.learning_rate)

    def predict(users, items):
        dot = tf.reduce_sum(tf.gather(user_vec, users) * tf.gather(item_vec, items), axis=1)
        return mu + tf.gather(user_bias, users) + tf.gather(item_bias, items) + dot

    index = tf.TensorSpec([None], tf.int32)

    @tf.function(input_signature=[index, index, tf.TensorSpec([None], tf.float32)])
    def step(users, items, ratings):
        with tf.GradientTape() as tape:
            error = tf.reduce_mean(tf.square(ratings - predict(users, items)))
            penalty = (tf.reduce_sum(tf.square(tf.gather(user_vec, users)), axis=1)
                       + tf.reduce_sum(tf.square(tf.gather(item_vec, items)), axis=1)
                       + tf.square(tf.gather(user_bias, users)) + tf.square(tf.gather(item_bias, items)))
            loss = error + cfg.reg * tf.reduce_mean(penalty)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return error

    def train_epoch(epoch: int) -> float:
        total = 0.0
        for idx in batches(len(train_data), cfg.batch_size, rng):
            total += float(step(train_data.users[idx], train_data.items[idx], train_data.weights[idx])) * len(idx)
        return np.sqrt(total / max(len(train_data), 1))

    def validation_rmse() -> float:
        predicted = predict(held_out.users, held_out.items).numpy()
        return float(np.sqrt(np.mean(np.square(held_out.weights - predicted))))

    fitted = fit_epochs("mf", cfg.epochs, train_epoch, variables, validation_rmse if len(held_out) else None,
                        metric="val_rmse", higher_is_better=False, patience=cfg.patience)
    users, items = fold_biases(user_vec.numpy(), item_vec.numpy(), user_bias.numpy(), item_bias.numpy(), mu)
    return MfFit(users, items, mu, fitted.best_epoch, fitted.history)


def fold_biases(user_vec: np.ndarray, item_vec: np.ndarray, user_bias: np.ndarray, item_bias: np.ndarray,
                global_mean: float) -> tuple[np.ndarray, np.ndarray]:
    """[p, b_u, 1] and [q, 1, mu + b_i], so that their dot product is mu + b_u + b_i + p . q."""
    ones_u = np.ones((len(user_vec), 1), np.float32)
    ones_i = np.ones((len(item_vec), 1), np.float32)
    users = np.hstack([user_vec, user_bias[:, None], ones_u])
    items = np.hstack([item_vec, ones_i, (global_mean + item_bias)[:, None]])
    return users.astype(np.float32), items.astype(np.float32)

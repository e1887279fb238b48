"""Linear denoising autoencoder over user rows (model.kind=autoencoder), TensorFlow on the driver.

A user's interaction row x (n_items) is encoded to h = x W (rank k) and decoded to x_hat = h V^T
(+ b, optional item bias). Training minimises the reconstruction error under input dropout with
probability p, marginalised analytically instead of sampled (Chen et al. 2012; Steck 2020, DLAE):

    E ||x - (m * x / (1 - p)) W V^T - b||^2 = ||x - x W V^T - b||^2 + p / (1 - p) sum_j x_j^2 ||W_j V^T||^2

so each step is deterministic and the noise never needs a sample. An L2 penalty reg * mean_j(g_j)
on the item-item map W V^T is added (g_j = sum_u x_uj^2, so reg is in units of the mean item's
mass and carries over between data sets). Rows are densified one batch at a time; W and V are
(n_items, k), so memory is O(n_items x k), never users x items.

Factors: user = h (and a constant 1 with the bias), item = V_i (and b_i).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from recsys_spark.config import AutoencoderConfig, ModelConfig, TrainConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.kernels.confidence import relative_log_weights
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

VALIDATION_USERS = 10_000  # enough for a stable early-stopping signal, cheap per epoch
VALIDATION_K = 20


@dataclass
class AutoencoderFit:
    user_factors: np.ndarray  # (n_users, k [+1])
    item_factors: np.ndarray  # (n_items, k [+1])
    best_epoch: int
    history: list


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig,
          item_features=None) -> FactorModel:
    """Train the autoencoder on the driver and return its factors."""
    data = collect_interactions(prepared.interactions, prepared.n_users, prepared.n_items,
                                train_cfg.driver_max_bytes, rows=prepared.stats.get("interactions"))
    cfg = model_cfg.autoencoder
    fit = fit_autoencoder(data, model_cfg.rank, cfg, model_cfg.seed)
    metadata = model_metadata("autoencoder", model_cfg.rank, fit.item_factors.shape[1], model_cfg.seed, cfg,
                              best_epoch=fit.best_epoch, history=fit.history)
    return FactorModel.from_numpy(fit.user_factors, fit.item_factors, prepared.user_ids, prepared.item_ids, metadata)


def fit_autoencoder(data: Interactions, rank: int, cfg: AutoencoderConfig, seed: int) -> AutoencoderFit:
    """Fit the autoencoder on COO interactions; every user is encoded from all of their row."""
    tf = import_tensorflow()  # before keras, which imports it too
    import keras

    set_seed(seed)
    if cfg.binary:
        data = Interactions(data.users, data.items, np.ones_like(data.weights), data.n_users, data.n_items)
    else:  # unit-free, so counts or seconds weigh like ratings: log(1 + w / median), mean 1
        data = Interactions(data.users, data.items, relative_log_weights(data.weights)[0].astype(np.float32),
                            data.n_users, data.n_items)
    train_data, held_out = split_validation(data, cfg.validation_fraction, seed)
    train_rows = Csr.from_interactions(train_data)
    rng = np.random.default_rng(seed)
    item_mass = np.bincount(train_data.items, weights=train_data.weights ** 2, minlength=data.n_items)
    penalty = cfg.dropout / (1.0 - cfg.dropout) * item_mass + cfg.reg * item_mass.mean()

    limit = np.sqrt(6.0 / (data.n_items + rank))
    encoder = tf.Variable(rng.uniform(-limit, limit, (data.n_items, rank)).astype(np.float32), name="encoder")
    decoder = tf.Variable(rng.uniform(-limit, limit, (data.n_items, rank)).astype(np.float32), name="decoder")
    variables = [encoder, decoder]
    if cfg.item_bias:
        variables.append(tf.Variable(np.zeros(data.n_items, np.float32), name="item_bias"))
    penalty_t = tf.constant(penalty.astype(np.float32) / data.n_users)
    optimizer = keras.optimizers.Adam(cfg.learning_rate)

    @tf.function(input_signature=[tf.TensorSpec([None, data.n_items], tf.float32)])
    def step(rows):
        with tf.GradientTape() as tape:
            loss = reconstruction_loss(rows, variables, penalty_t)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    val_users = _validation_users(held_out, rng)
    held_rows = Csr.from_interactions(held_out)

    def train_epoch(epoch: int) -> float:
        total = 0.0
        for users in batches(data.n_users, cfg.batch_size, rng):
            total += float(step(tf.constant(train_rows.dense(users)))) * len(users)
        return total / data.n_users

    def validation_recall() -> float:
        user_vec, item_vec = _factors(train_rows, val_users, variables)
        return recall_at_k(user_vec, item_vec, val_users, train_rows, held_rows, VALIDATION_K)

    fitted = fit_epochs("autoencoder", cfg.epochs, train_epoch, variables,
                        validation_recall if len(val_users) else None, metric=f"recall@{VALIDATION_K}",
                        patience=cfg.patience)
    all_rows = Csr.from_interactions(data)
    user_vec, item_vec = _factors(all_rows, np.arange(data.n_users), variables, cfg.batch_size)
    return AutoencoderFit(user_vec, item_vec, fitted.best_epoch, fitted.history)


def reconstruction_loss(rows, variables, penalty):
    """Mean squared reconstruction error of a dense batch plus the marginalised dropout and L2 terms.

    `penalty[j]` weighs ||W_j V^T||^2 = W_j (V^T V) W_j^T, computed through the k x k Gram matrix.
    """
    tf = import_tensorflow()

    encoder, decoder = variables[0], variables[1]
    recon = tf.matmul(tf.matmul(rows, encoder), decoder, transpose_b=True)
    if len(variables) > 2:
        recon += variables[2]
    gram = tf.matmul(decoder, decoder, transpose_a=True)
    spread = tf.reduce_sum(tf.matmul(encoder, gram) * encoder, axis=1)
    error = tf.reduce_mean(tf.reduce_sum(tf.square(rows - recon), axis=1))
    return error + tf.reduce_sum(penalty * spread)


def _factors(rows: Csr, users: np.ndarray, variables, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """User codes of `users` (from their rows) and item factors, with the bias column when present."""
    encoder = variables[0].numpy()
    codes = np.concatenate([rows.dense(users[s:s + batch_size]) @ encoder
                            for s in range(0, len(users), batch_size)] or [np.zeros((0, encoder.shape[1]))])
    items = variables[1].numpy()
    if len(variables) > 2:
        codes = np.hstack([codes, np.ones((len(codes), 1), np.float32)])
        items = np.hstack([items, variables[2].numpy()[:, None]])
    return codes.astype(np.float32), items.astype(np.float32)


def _validation_users(held_out: Interactions, rng: np.random.Generator) -> np.ndarray:
    users = np.unique(held_out.users)
    if len(users) > VALIDATION_USERS:
        users = np.sort(rng.choice(users, VALIDATION_USERS, replace=False))
    return users

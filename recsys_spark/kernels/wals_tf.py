"""Weighted ALS for implicit feedback: the numerical core in TensorFlow (no Spark).

Objective (Hu, Koren & Volinsky, with a weight w0 on unobserved entries):

    sum_{(u,i) observed} c_ui (1 - x_u.y_i)^2  +  w0 * sum_{(u,i) unobserved} (x_u.y_i)^2
    + sum_u lambda_u |x_u|^2  +  sum_i lambda_i |y_i|^2

With the other side Y fixed, row u solves

    (w0 Y^T Y + sum_{i in I_u} (c_ui - w0) y_i y_i^T + lambda_u I) x_u = sum_{i in I_u} c_ui y_i

`half_step` runs a few conjugate-gradient iterations on that system for every row at once,
warm-started from the current factors: the rank x rank Gramian is shared; the per-row part is
one dot product per nonzero (gathers fused by XLA) and a sparse-dense product over the
nonzeros. Memory is O(nnz + (rows + columns) x rank); the rows x columns matrix is never formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_spark.kernels.confidence import row_regularization
from recsys_spark.kernels.convergence import iterate
from recsys_spark.kernels.tf_runtime import import_tensorflow

tf = import_tensorflow()


@dataclass
class SortedNonzeros:
    """Observed entries sorted by row: (row, column) pairs, confidences, per-row lambda."""
    indices: tf.Tensor  # int64 (nnz, 2), row-major order
    conf: tf.Tensor  # float32 (nnz,)
    reg: tf.Tensor  # float32 (n_rows,)

    @classmethod
    def build(cls, rows: np.ndarray, cols: np.ndarray, conf: np.ndarray, reg: np.ndarray) -> "SortedNonzeros":
        order = np.lexsort((cols, rows))
        indices = np.stack([rows[order], cols[order]], axis=1).astype(np.int64)
        return cls(tf.constant(indices), tf.constant(conf[order], tf.float32), tf.constant(reg, tf.float32))


@tf.function(jit_compile=True)
def _pair_dots(x, y, indices):
    """x_r . y_c for every nonzero (r, c); XLA fuses the gathers into the reduction."""
    return tf.reduce_sum(tf.gather(x, indices[:, 0]) * tf.gather(y, indices[:, 1]), axis=1)


def _matvec(p, y, gram_w0, indices, extra_conf, reg, shape):
    """A p for every row: w0 G p + sum_nnz (c - w0) (y.p) y + lambda p."""
    weights = tf.SparseTensor(indices, extra_conf * _pair_dots(p, y, indices), shape)
    # The sparse product's row count is dynamic; pinning it to p's keeps a one-row x's shape fixed in the loop.
    return tf.matmul(p, gram_w0) + tf.ensure_shape(tf.sparse.sparse_dense_matmul(weights, y), p.shape) \
        + reg[:, None] * p


@tf.function(reduce_retracing=True)
def half_step(x: tf.Tensor, y: tf.Tensor, indices: tf.Tensor, conf: tf.Tensor, reg: tf.Tensor,
              unobserved_weight: tf.Tensor, cg_steps: tf.Tensor) -> tf.Tensor:
    """New x (n_rows, k) after `cg_steps` conjugate-gradient iterations from x, with y fixed.

    indices: (nnz, 2) int64 (row, column) pairs in row-major order; conf: their confidences.
    """
    shape = tf.stack([tf.shape(x, out_type=tf.int64)[0], tf.shape(y, out_type=tf.int64)[0]])
    gram_w0 = unobserved_weight * tf.matmul(y, y, transpose_a=True)
    extra_conf = conf - unobserved_weight
    b = tf.ensure_shape(tf.sparse.sparse_dense_matmul(tf.SparseTensor(indices, conf, shape), y), x.shape)
    r = b - _matvec(x, y, gram_w0, indices, extra_conf, reg, shape)
    p = r
    rs = tf.reduce_sum(r * r, axis=1)
    for _ in tf.range(cg_steps):
        ap = _matvec(p, y, gram_w0, indices, extra_conf, reg, shape)
        step = tf.math.divide_no_nan(rs, tf.reduce_sum(p * ap, axis=1))
        x = x + step[:, None] * p
        r = r - step[:, None] * ap
        rs_new = tf.reduce_sum(r * r, axis=1)
        p = r + tf.math.divide_no_nan(rs_new, rs)[:, None] * p
        rs = rs_new
    return x


@tf.function(reduce_retracing=True)
def loss(x: tf.Tensor, y: tf.Tensor, indices: tf.Tensor, conf: tf.Tensor, reg_x: tf.Tensor,
         reg_y: tf.Tensor, unobserved_weight: tf.Tensor) -> tf.Tensor:
    """The full objective above; indices are (row of x, row of y) pairs."""
    pred = _pair_dots(x, y, indices)
    observed = tf.reduce_sum(conf * tf.square(1.0 - pred) - unobserved_weight * tf.square(pred))
    everything = unobserved_weight * tf.reduce_sum(
        tf.matmul(x, x, transpose_a=True) * tf.matmul(y, y, transpose_a=True))
    penalty = tf.reduce_sum(reg_x * tf.reduce_sum(x * x, axis=1)) + tf.reduce_sum(reg_y * tf.reduce_sum(y * y, axis=1))
    return observed + everything + penalty


def initial_factors(n_rows: int, rank: int, stddev: float, seed: tuple[int, int]) -> tf.Tensor:
    """Gaussian factors from a stateless seed (same seed, same factors)."""
    return tf.random.stateless_normal((n_rows, rank), seed=seed, stddev=stddev, dtype=tf.float32)


def fit(users: np.ndarray, items: np.ndarray, conf: np.ndarray, n_users: int, n_items: int, rank: int,
        iterations: int, reg: float, unobserved_weight: float, reg_exponent: float, cg_steps: int,
        init_stddev: float, seed: int, on_iteration=None, initial: tuple[np.ndarray, np.ndarray] | None = None,
        tolerance: float = 0.0) -> tuple[np.ndarray, np.ndarray, list]:
    """Alternate user and item half-steps; returns (user_factors, item_factors, history).

    history holds one {"iteration", "loss", "seconds"} per iteration; `on_iteration(entry)` is
    called after each one (for logging). `initial` (user, item factor matrices) replaces the
    seeded Gaussian start (a warm start). With tolerance > 0 training stops after the first
    iteration whose relative loss decrease (previous - loss) / previous is below it, the first
    iteration compared with the loss of the starting factors; `iterations` is the cap.
    """
    w0 = tf.constant(unobserved_weight, tf.float32)
    steps = tf.constant(cg_steps, tf.int32)
    user_reg = row_regularization(np.bincount(users, minlength=n_users), n_items, reg, unobserved_weight, reg_exponent)
    item_reg = row_regularization(np.bincount(items, minlength=n_items), n_users, reg, unobserved_weight, reg_exponent)
    by_user = SortedNonzeros.build(users, items, conf, user_reg)
    by_item = SortedNonzeros.build(items, users, conf, item_reg)
    if initial is None:
        x = initial_factors(n_users, rank, init_stddev, (seed, 1))
        y = initial_factors(n_items, rank, init_stddev, (seed, 2))
    else:
        x, y = (tf.constant(np.asarray(m, np.float32)) for m in initial)
        if tuple(x.shape) != (n_users, rank) or tuple(y.shape) != (n_items, rank):
            raise ValueError(f"initial factors {tuple(x.shape)}, {tuple(y.shape)} do not fit "
                             f"{n_users} users, {n_items} items at rank {rank}")
    start = float(loss(x, y, by_user.indices, by_user.conf, by_user.reg, by_item.reg, w0)) if tolerance > 0 else None

    def step() -> float:
        nonlocal x, y
        x = half_step(x, y, by_user.indices, by_user.conf, by_user.reg, w0, steps)
        y = half_step(y, x, by_item.indices, by_item.conf, by_item.reg, w0, steps)
        return float(loss(x, y, by_user.indices, by_user.conf, by_user.reg, by_item.reg, w0))

    history = iterate(step, iterations, tolerance, start, on_iteration)
    return x.numpy(), y.numpy(), history

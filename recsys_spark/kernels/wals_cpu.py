"""WALS on the driver's CPU cores in numpy and scipy (no TensorFlow, no Spark): the block kernel of
kernels/wals_blocks.py over bounded blocks of consecutive rows, solved by a pool of threads (numpy's
gathers and scipy's sparse products release the GIL) and written in place into the factor matrices.

Same objective, same conjugate-gradient updates and same history as kernels/wals_tf.fit; the two give
the same factors from the same start (tests/test_wals.py). Memory beyond the factors: each side's
nonzeros sorted once as int32 local rows, int32 columns and float32 confidences (24 bytes per
interaction for both sides), and the temporaries of the blocks being solved, bounded per thread
whatever the data size (kernels/wals_blocks.py: two GATHER_NONZEROS x rank buffers and a few
BLOCK_ROWS x rank arrays): nothing of size nonzeros x rank.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from recsys_spark.kernels.blas import blas_threads
from recsys_spark.kernels.confidence import row_regularization
from recsys_spark.kernels.convergence import iterate
from recsys_spark.kernels.wals_blocks import BlockNonzeros, block_bounds, block_half_step, initial_rows, observed_loss

BLOCK_NONZEROS = 1 << 18  # a block's nonzeros at most (a heavier row gets a block of its own)
BLOCK_ROWS = 1 << 12  # a block's rows at most: its CG temporaries are a few (rows x rank) arrays
BYTES_PER_INTERACTION = 64  # the collected arrays (12) and confidences (4), and the fit's peak (measured ~34 at 10M and 30M)


class SideBlocks:
    """One side's nonzeros sorted by row and cut into blocks of consecutive rows; the blocks' arrays
    are views of the side's sorted arrays (the columns of each block are the other side's indexes)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, conf: np.ndarray, n_rows: int, other: np.ndarray,
                 reg: np.ndarray):
        order = np.lexsort((cols, rows))
        cols, conf = np.asarray(cols, np.int32)[order], np.asarray(conf, np.float32)[order]
        sorted_rows = np.asarray(rows, np.int32)[order]
        del order
        counts = np.bincount(sorted_rows, minlength=n_rows)
        indptr = np.zeros(n_rows + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        self.reg = np.asarray(reg, np.float32)
        self.bounds = block_bounds(counts, BLOCK_NONZEROS, BLOCK_ROWS)
        self.blocks = []
        for start, end in zip(self.bounds[:-1], self.bounds[1:]):
            lo, hi = indptr[start], indptr[end]
            local_rows = sorted_rows[lo:hi]
            local_rows -= int(start)  # in place: the side's rows array becomes every block's local rows
            self.blocks.append(BlockNonzeros(local_rows, cols[lo:hi], conf[lo:hi], int(end - start), other,
                                             indptr=indptr[start:end + 1] - lo))

    def set_other(self, other: np.ndarray) -> None:
        """Point every block at the other side's current factors."""
        for block in self.blocks:
            block.other = other

    def spans(self):
        """(start row, end row, block) for every block."""
        return zip(self.bounds[:-1], self.bounds[1:], self.blocks)


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


def gram(x: np.ndarray, side: SideBlocks, pool: ThreadPoolExecutor) -> np.ndarray:
    """X^T X (float32), summed over the side's blocks in the pool's threads."""
    parts = pool.map(lambda span: x[span[0]:span[1]].T @ x[span[0]:span[1]], side.spans())
    return np.sum(list(parts), axis=0, dtype=np.float32) if side.blocks else np.zeros((x.shape[1],) * 2, np.float32)


def half_step(x: np.ndarray, side: SideBlocks, other: np.ndarray, other_gram: np.ndarray, unobserved_weight: float,
              cg_steps: int, pool: ThreadPoolExecutor, after: bool = False) -> float | None:
    """Replace x's rows, block by block in the pool's threads, by block_half_step's with `other` fixed
    (other_gram: its Gramian); with `after`, return the observed loss of the new rows."""
    gram_w0 = (np.float32(unobserved_weight) * other_gram).astype(np.float32)
    side.set_other(other)

    def solve(span):
        start, end, block = span
        x[start:end], _, observed = block_half_step(x[start:end], block, gram_w0, side.reg[start:end],
                                                    unobserved_weight, cg_steps, after=after)
        return observed

    observed = list(pool.map(solve, side.spans()))
    return float(sum(observed)) if after else None


def loss(observed: float, x: np.ndarray, y: np.ndarray, x_gram: np.ndarray, y_gram: np.ndarray, by_user: SideBlocks,
         by_item: SideBlocks, unobserved_weight: float) -> float:
    """kernels/wals_tf.loss from the observed terms (block_half_step's or observed_loss'): plus
    w0 sum(X^T X * Y^T Y) and both penalties."""
    def penalty(rows, side):
        return sum(float(np.dot(side.reg[a:b], np.einsum("ij,ij->i", rows[a:b], rows[a:b]))) for a, b, _ in side.spans())

    total = observed + float(unobserved_weight) * float(np.sum(x_gram.astype(np.float64) * y_gram.astype(np.float64)))
    return total + penalty(x, by_user) + penalty(y, by_item)


def start_observed(x: np.ndarray, by_user: SideBlocks, unobserved_weight: float, pool: ThreadPoolExecutor) -> float:
    """The observed terms of the loss at the start (later iterations get them from the item half-step)."""
    parts = pool.map(lambda span: float(np.sum(observed_loss(x[span[0]:span[1]], span[2], unobserved_weight))),
                     by_user.spans())
    return float(sum(parts))


def fit(users: np.ndarray, items: np.ndarray, conf: np.ndarray, n_users: int, n_items: int, rank: int,
        iterations: int, reg: float, unobserved_weight: float, reg_exponent: float, cg_steps: int,
        init_stddev: float, seed: int, on_iteration=None, initial: tuple[np.ndarray, np.ndarray] | None = None,
        tolerance: float = 0.0, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """kernels/wals_tf.fit's contract (arguments, history, tolerance stop) on `threads` CPU threads (default:
    the process's cores). Without `initial` the start is kernels/wals_blocks.initial_rows' (seed, side 1
    for users, 2 for items), the start of the executor engine too."""
    if initial is None:
        x = initial_rows(np.arange(n_users), rank, init_stddev, seed, 1)
        y = initial_rows(np.arange(n_items), rank, init_stddev, seed, 2)
    else:
        x, y = (np.array(m, np.float32, copy=True) for m in initial)
        if x.shape != (n_users, rank) or y.shape != (n_items, rank):
            raise ValueError(f"initial factors {x.shape}, {y.shape} do not fit "
                             f"{n_users} users, {n_items} items at rank {rank}")
    user_reg = row_regularization(np.bincount(users, minlength=n_users), n_items, reg, unobserved_weight, reg_exponent)
    item_reg = row_regularization(np.bincount(items, minlength=n_items), n_users, reg, unobserved_weight, reg_exponent)
    by_user = SideBlocks(users, items, conf, n_users, y, user_reg)
    by_item = SideBlocks(items, users, conf, n_items, x, item_reg)
    with ThreadPoolExecutor(threads or default_threads()) as pool, blas_threads(1):  # one GEMM thread per pool thread
        grams = {"x": gram(x, by_user, pool), "y": gram(y, by_item, pool)}
        start = None
        if tolerance > 0:
            by_user.set_other(y)
            start = loss(start_observed(x, by_user, unobserved_weight, pool), x, y, grams["x"], grams["y"],
                         by_user, by_item, unobserved_weight)

        def step() -> float:
            half_step(x, by_user, y, grams["y"], unobserved_weight, cg_steps, pool)
            grams["x"] = gram(x, by_user, pool)
            observed = half_step(y, by_item, x, grams["x"], unobserved_weight, cg_steps, pool, after=True)
            grams["y"] = gram(y, by_item, pool)
            return loss(observed, x, y, grams["x"], grams["y"], by_user, by_item, unobserved_weight)

        history = iterate(step, iterations, tolerance, start, on_iteration)
    return x, y, history

"""WALS on the driver's CPU cores in numpy (no TensorFlow, no Spark): the run kernel of
kernels/wals_blocks.py over one side's runs of rows of similar degree, taken over the whole side so
runs are few and full, solved by a pool of threads (numpy's gathers and batched BLAS products release
the GIL) and written in place into the factor matrices.

Same objective, same conjugate-gradient updates and same history as kernels/wals_tf.fit; the two give
the same factors from the same start (tests/test_wals.py). Memory beyond the factors: each side's
nonzeros sorted once as int32 rows, int32 columns and float32 confidences (24 bytes per
interaction for both sides), and the temporaries of the runs being solved, bounded per thread
whatever the data size (kernels/wals_blocks.py: one GATHER_NONZEROS x rank buffer and a few
GATHER_ROWS x rank arrays): nothing of size nonzeros x rank.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from recsys_spark.kernels import wals_blocks
from recsys_spark.kernels.blas import blas_threads
from recsys_spark.kernels.confidence import row_regularization
from recsys_spark.kernels.convergence import iterate
from recsys_spark.kernels.wals_blocks import (
    BlockNonzeros,
    block_bounds,
    degree_runs,
    initial_rows,
    observed_loss,
    solve_run,
)

BLOCK_NONZEROS = 1 << 18  # nonzeros of a span of rows the Gramian, penalty and start loss are summed over
BLOCK_ROWS = 1 << 12  # rows of such a span at most
BYTES_PER_INTERACTION = 64  # collected arrays (12), confidences (4), the fit's peak (measured 34-36 at 10M and 30M)


class SideRuns:
    """One side's nonzeros sorted by row once (int32 rows and columns, float32 confidences: the other
    side's indexes and the row's), cut into kernels/wals_blocks.degree_runs' runs, largest first so
    the pool's threads finish together, and into spans of consecutive rows for the sums over rows."""

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
        self.nonzeros = BlockNonzeros(sorted_rows, cols, conf, n_rows, other, indptr=indptr)
        runs = degree_runs(counts, wals_blocks.GATHER_NONZEROS, wals_blocks.GATHER_ROWS)
        self.runs = sorted(runs, key=lambda run: -len(run[0]) * run[1])
        self.bounds = block_bounds(counts, BLOCK_NONZEROS, BLOCK_ROWS)

    def set_other(self, other: np.ndarray) -> None:
        """Point the side at the other side's current factors."""
        self.nonzeros.other = other

    def spans(self):
        """(start row, end row) of consecutive spans of rows."""
        return zip(self.bounds[:-1].tolist(), self.bounds[1:].tolist())

    def span_nonzeros(self, start: int, end: int) -> BlockNonzeros:
        """The nonzeros of rows [start, end) as a block of their own (local rows)."""
        nz = self.nonzeros
        lo, hi = int(nz.indptr[start]), int(nz.indptr[end])
        return BlockNonzeros(nz.rows[lo:hi] - np.int32(start), nz.cols[lo:hi], nz.conf[lo:hi], end - start, nz.other,
                             indptr=nz.indptr[start:end + 1] - lo)


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


def gram(x: np.ndarray, side: SideRuns, pool: ThreadPoolExecutor) -> np.ndarray:
    """X^T X (float32), summed over the side's spans in the pool's threads."""
    parts = list(pool.map(lambda span: x[span[0]:span[1]].T @ x[span[0]:span[1]], side.spans()))
    return np.sum(parts, axis=0, dtype=np.float32) if parts else np.zeros((x.shape[1],) * 2, np.float32)


def half_step(x: np.ndarray, side: SideRuns, other: np.ndarray, other_gram: np.ndarray, unobserved_weight: float,
              cg_steps: int, pool: ThreadPoolExecutor, after: bool = False) -> float | None:
    """Replace x's rows, run by run in the pool's threads, by kernels/wals_blocks.solve_run's with
    `other` fixed (other_gram: its Gramian); with `after`, return the observed loss of the new rows."""
    gram_w0 = (np.float32(unobserved_weight) * other_gram).astype(np.float32)
    side.set_other(other)

    def solve(run):
        rows, width = run
        return solve_run(x, side.nonzeros, rows, width, gram_w0, side.reg, unobserved_weight, cg_steps, after, out=x)[1]

    observed = list(pool.map(solve, side.runs))
    return float(sum(observed)) if after else None


def loss(observed: float, x: np.ndarray, y: np.ndarray, x_gram: np.ndarray, y_gram: np.ndarray, by_user: SideRuns,
         by_item: SideRuns, unobserved_weight: float) -> float:
    """kernels/wals_tf.loss from the observed terms (block_half_step's or observed_loss'): plus
    w0 sum(X^T X * Y^T Y) and both penalties."""
    def penalty(rows, side):
        return sum(float(np.dot(side.reg[a:b], np.vecdot(rows[a:b], rows[a:b]))) for a, b in side.spans())

    total = observed + float(unobserved_weight) * float(np.sum(x_gram.astype(np.float64) * y_gram.astype(np.float64)))
    return total + penalty(x, by_user) + penalty(y, by_item)


def start_observed(x: np.ndarray, by_user: SideRuns, unobserved_weight: float, pool: ThreadPoolExecutor) -> float:
    """The observed terms of the loss at the start (later iterations get them from the item half-step)."""
    parts = pool.map(lambda span: float(np.sum(observed_loss(x[span[0]:span[1]], by_user.span_nonzeros(*span),
                                                             unobserved_weight))), by_user.spans())
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
    by_user = SideRuns(users, items, conf, n_users, y, user_reg)
    by_item = SideRuns(items, users, conf, n_items, x, item_reg)
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

"""WALS for one block of rows in numpy and scipy's CSR products (no Spark, no TensorFlow): the core
of the distributed engine (models/wals_spark.py).

`block_half_step` runs the conjugate-gradient iterations of kernels/wals_tf.half_step on the rows
of one block: the same system (w0 Y^T Y + sum_{i in I_u} (c_ui - w0) y_i y_i^T + lambda_u I) x_u =
sum_{i in I_u} c_ui y_i, the same number of steps from the same current rows, the same updates in
float32, given only the block's nonzeros, the other side's rows they name and the full Gramian.
Memory is O(nnz + rows x rank) for the block: the rows x columns matrix is never formed.

`initial_rows` seeds factor rows per chunk of CHUNK_ROWS indexes, so any subset of rows is generated
where it is needed (an executor) and the whole matrix is the same whatever the partitioning.
"""

from __future__ import annotations

import threading

import numpy as np
from scipy.sparse import csr_matrix

CHUNK_ROWS = 4096  # rows seeded from one generator: initial_rows' unit of work
DOTS_CHUNK = 4096  # nonzeros per step of BlockNonzeros.dots: its two buffers stay in a core's cache (1 MiB each at rank 64)


def _divide_no_nan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (tf.math.divide_no_nan)."""
    out = np.zeros_like(a)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _sorted(rows: np.ndarray, cols: np.ndarray) -> bool:
    """Whether (rows, cols) are in lexicographic order already (a block's structure stores them so)."""
    if len(rows) < 2:
        return True
    step, col_step = np.diff(rows), np.diff(cols)
    return bool(np.all((step > 0) | ((step == 0) & (col_step > 0))))


class BlockNonzeros:
    """A block's nonzeros sorted by (row, column) as a CSR structure over the block's own rows and the
    other side's rows they name (`other`, replaceable between half-steps); `rows`/`cols` are local
    indexes. Held as int32 rows and columns and float32 confidences: 12 bytes per nonzero, no copies
    of arrays that come sorted with their `indptr`."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, conf: np.ndarray, n_rows: int, other: np.ndarray,
                 indptr: np.ndarray | None = None):
        rows, cols = np.asarray(rows, np.int32), np.asarray(cols, np.int32)
        conf = np.asarray(conf, np.float32)
        if indptr is None:
            if not _sorted(rows, cols):
                order = np.lexsort((cols, rows))
                rows, cols, conf = rows[order], cols[order], conf[order]
            indptr = np.zeros(n_rows + 1, np.int64)
            np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
        self.rows, self.conf, self.n_rows = rows, conf, n_rows
        self.other = np.asarray(other, np.float32)
        # .data is replaced (never written) by weighted_sums; conf only names the structure's first values
        self._matrix = csr_matrix((conf, cols, indptr), shape=(n_rows, len(self.other)), copy=False)
        self.cols = self._matrix.indices

    def weighted_sums(self, weights: np.ndarray) -> np.ndarray:
        """sum over each row's nonzeros of weight x y_c -> (n_rows, k); 0 for rows without any."""
        self._matrix.data = np.asarray(weights, np.float32)
        return np.asarray(self._matrix @ self.other, np.float32)

    def dots(self, x: np.ndarray) -> np.ndarray:
        """x_r . y_c for every nonzero (r, c), DOTS_CHUNK nonzeros at a time through two small buffers
        of the calling thread."""
        x = np.asarray(x, np.float32)
        out = np.empty(len(self.rows), np.float32)
        x_buffer, y_buffer = _dot_buffers(min(DOTS_CHUNK, len(self.rows)), self.other.shape[1])
        for start in range(0, len(self.rows), DOTS_CHUNK):
            end = min(start + DOTS_CHUNK, len(self.rows))
            xs, ys = x_buffer[:end - start], y_buffer[:end - start]
            np.take(x, self.rows[start:end], axis=0, out=xs, mode="clip")  # unbuffered
            np.take(self.other, self.cols[start:end], axis=0, out=ys, mode="clip")
            out[start:end] = np.einsum("ij,ij->i", xs, ys)
        return out


_THREAD = threading.local()


def _dot_buffers(chunk: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The calling thread's two (chunk, rank) float32 buffers, reused so no product touches fresh pages."""
    buffers = getattr(_THREAD, "dots", None)
    if buffers is None or buffers[0].shape[0] < chunk or buffers[0].shape[1] != rank:
        buffers = (np.empty((max(chunk, 1), rank), np.float32), np.empty((max(chunk, 1), rank), np.float32))
        _THREAD.dots = buffers
    return buffers


def _matvec(p, nz: BlockNonzeros, gram_w0, extra_conf, reg):
    """A p for every row: w0 G p + sum_nnz (c - w0) (y.p) y + lambda p."""
    out = p @ gram_w0
    out += nz.weighted_sums(extra_conf * nz.dots(p))
    out += reg[:, None] * p
    return out


def _row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def block_half_step(x: np.ndarray, nz: BlockNonzeros, gram_w0: np.ndarray, reg: np.ndarray,
                    unobserved_weight: float, cg_steps: int) -> np.ndarray:
    """New rows (n_rows, k) after `cg_steps` conjugate-gradient iterations from x with the other side
    fixed; gram_w0 is w0 Y^T Y over the whole other side, reg the rows' lambda (row_regularization)."""
    x = np.array(x, np.float32, copy=True)
    gram_w0 = np.asarray(gram_w0, np.float32)
    reg = np.asarray(reg, np.float32)
    w0 = np.float32(unobserved_weight)
    extra_conf = nz.conf - w0
    # r = b - A x with b = sum c y: both sparse sums in one product
    r = nz.weighted_sums(nz.conf - extra_conf * nz.dots(x))
    r -= x @ gram_w0
    r -= reg[:, None] * x
    p = r.copy()
    rs = _row_dots(r, r)
    for _ in range(cg_steps):
        ap = _matvec(p, nz, gram_w0, extra_conf, reg)
        step = _divide_no_nan(rs, _row_dots(p, ap))[:, None]
        x += step * p
        r -= step * ap
        rs_new = _row_dots(r, r)
        p *= _divide_no_nan(rs_new, rs)[:, None]
        p += r
        rs = rs_new
    return x


def observed_loss(x: np.ndarray, nz: BlockNonzeros, unobserved_weight: float) -> np.ndarray:
    """Per row, sum over its nonzeros of c (1 - x.y)^2 - w0 (x.y)^2 (float64): the rows' share of the
    observed part of the objective in kernels/wals_tf.loss."""
    pred = nz.dots(np.asarray(x, np.float32)).astype(np.float64)
    terms = nz.conf * np.square(1.0 - pred) - unobserved_weight * np.square(pred)
    return np.bincount(nz.rows, weights=terms, minlength=nz.n_rows)


def initial_rows(indexes: np.ndarray, rank: int, stddev: float, seed: int, side: int) -> np.ndarray:
    """Gaussian rows (float32, len(indexes) x rank) for these row indexes: row i is row i % CHUNK_ROWS
    of chunk i // CHUNK_ROWS, drawn from numpy's generator seeded with (seed, side, chunk)."""
    indexes = np.asarray(indexes, np.int64)
    out = np.empty((len(indexes), rank), np.float32)
    order = np.argsort(indexes // CHUNK_ROWS, kind="stable")  # rows grouped by chunk: one pass, not one per chunk
    chunks = indexes[order] // CHUNK_ROWS
    starts = np.flatnonzero(np.diff(chunks, prepend=-1))
    for start, end in zip(starts, np.append(starts[1:], len(order))):
        rng = np.random.default_rng([int(seed), int(side), int(chunks[start])])
        block = rng.standard_normal((CHUNK_ROWS, rank), dtype=np.float32) * np.float32(stddev)
        rows = order[start:end]
        out[rows] = block[indexes[rows] % CHUNK_ROWS]
    return out


def pack_rows(counts: np.ndarray, limit: int, filled: int = 0) -> tuple[np.ndarray, int, int]:
    """Greedy blocks of consecutive rows: (block number of each row from 0, blocks started, nonzeros in the
    last block). A block takes rows while its nonzeros stay within `limit`; a row alone over the limit gets
    a block of its own. `filled`: nonzeros already in block 0 (a previous batch's last block)."""
    counts = np.asarray(counts, np.int64)
    blocks = np.empty(len(counts), np.int64)
    block, total = 0, int(filled)
    for at, n in enumerate(counts.tolist()):
        if total > 0 and total + n > limit:
            block, total = block + 1, 0
        blocks[at] = block
        total += n
    return blocks, block + 1, total

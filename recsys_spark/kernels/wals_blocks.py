"""WALS for one block of rows in numpy and scipy's CSR products (no Spark, no TensorFlow): the
kernel of the driver's numpy engine (kernels/wals_cpu.py) and of the distributed one
(models/wals_spark.py).

`block_half_step` runs the conjugate-gradient iterations of kernels/wals_tf.half_step on the rows
of one block: the same system (w0 Y^T Y + sum_{i in I_u} (c_ui - w0) y_i y_i^T + lambda_u I) x_u =
sum_{i in I_u} c_ui y_i, the same number of steps from the same current rows, the same updates in
float32, given only the block's nonzeros, the other side's rows they name and the full Gramian.

Rows are independent systems, so a block is solved in runs of consecutive rows. A run's other-side
rows are gathered once into a per-thread buffer of at most GATHER_NONZEROS rows, which every CG
product then reads in order from cache: the gather from the whole other side, a random access into
memory, is the cost that matters, and CG's products would otherwise repeat it twice a step. A row
with more nonzeros than that is reduced once to its rank x rank system. Memory beyond the block's
12 bytes per nonzero: two GATHER_NONZEROS x rank buffers per thread and a few run-sized arrays.

`initial_rows` seeds factor rows per chunk of CHUNK_ROWS indexes, so any subset of rows is generated
where it is needed (an executor) and the whole matrix is the same whatever the partitioning.
"""

from __future__ import annotations

import threading

import numpy as np
from scipy.sparse import csr_matrix

CHUNK_ROWS = 4096  # rows seeded from one generator: initial_rows' unit of work
GATHER_NONZEROS = 1 << 14  # nonzeros gathered at once (4 MiB at rank 64: two such buffers per thread stay in cache)
GATHER_ROWS = 1 << 12  # rows of a run at most: its CG temporaries are a few (rows x rank) arrays


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


_THREAD = threading.local()


def _buffers(n: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The calling thread's two (n, rank) float32 buffers, reused so no product touches fresh pages."""
    buffers = getattr(_THREAD, "buffers", None)
    if buffers is None or buffers[0].shape[0] < n or buffers[0].shape[1] != rank:
        size = max(n, GATHER_NONZEROS, 1)
        buffers = (np.empty((size, rank), np.float32), np.empty((size, rank), np.float32))
        _THREAD.buffers = buffers
    return buffers[0][:n], buffers[1][:n]


_ARANGE = [np.arange(GATHER_NONZEROS, dtype=np.int32)]  # read-only column numbers of gathered runs' matrices


def _arange(n: int) -> np.ndarray:
    if len(_ARANGE[0]) < n:
        _ARANGE[0] = np.arange(n, dtype=np.int32)
    return _ARANGE[0][:n]


class BlockNonzeros:
    """A block's nonzeros sorted by (row, column) over the block's own rows and the other side's rows
    they name (`other`, replaceable between half-steps); `rows`/`cols` are local indexes. Held as
    int32 rows and columns and float32 confidences (12 bytes per nonzero), with the CSR `indptr`;
    arrays that come sorted with their indptr are not copied."""

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
        self.rows, self.cols, self.conf, self.n_rows = rows, cols, conf, n_rows
        self.indptr = np.asarray(indptr, np.int64)
        self.other = np.asarray(other, np.float32)

    def dots(self, x: np.ndarray) -> np.ndarray:
        """x_r . y_c for every nonzero (r, c), GATHER_NONZEROS at a time through the thread's buffers."""
        x = np.asarray(x, np.float32)
        out = np.empty(len(self.rows), np.float32)
        for start in range(0, len(self.rows), GATHER_NONZEROS):
            end = min(start + GATHER_NONZEROS, len(self.rows))
            xs, ys = _buffers(end - start, self.other.shape[1])
            np.take(x, self.rows[start:end], axis=0, out=xs, mode="clip")  # unbuffered
            np.take(self.other, self.cols[start:end], axis=0, out=ys, mode="clip")
            out[start:end] = np.einsum("ij,ij->i", xs, ys)
        return out


def _observed(conf: np.ndarray, pred: np.ndarray, w0: float) -> float:
    """sum c (1 - p)^2 - w0 p^2 over nonzeros, as sum c - 2 sum c p + sum (c - w0) p^2 (float64)."""
    c, p = conf.astype(np.float64), pred.astype(np.float64)
    return float(c.sum() - 2.0 * np.dot(c, p) + np.dot(c - w0, p * p))


class GatheredRows:
    """Rows [start, end) of a block whose nonzeros (at most GATHER_NONZEROS) have their other-side rows
    gathered once into the calling thread's buffer, for CG's products over them."""

    def __init__(self, nz: BlockNonzeros, start: int, end: int, w0: np.float32):
        lo, hi = int(nz.indptr[start]), int(nz.indptr[end])
        n = hi - lo
        self._other, self._xs = _buffers(n, nz.other.shape[1])
        np.take(nz.other, nz.cols[lo:hi], axis=0, out=self._other, mode="clip")
        self._rows = nz.rows[lo:hi] - np.int32(start)
        self._conf, self._w0 = nz.conf[lo:hi], w0
        self._extra = self._conf - w0
        self._matrix = csr_matrix((self._conf, _arange(n), nz.indptr[start:end + 1] - lo), shape=(end - start, n),
                                  copy=False)  # .data is replaced, never written, by _sums

    def _sums(self, weights: np.ndarray) -> np.ndarray:
        """sum over each row's nonzeros of weight x y -> (rows, k)."""
        self._matrix.data = np.asarray(weights, np.float32)
        return np.asarray(self._matrix @ self._other, np.float32)

    def _dots(self, x: np.ndarray) -> np.ndarray:
        np.take(x, self._rows, axis=0, out=self._xs, mode="clip")
        return np.einsum("ij,ij->i", self._xs, self._other)

    def start(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(sum c y - sum (c - w0) (y.x) y, the rows' observed loss at x)."""
        pred = self._dots(x)
        return self._sums(self._conf - self._extra * pred), _observed(self._conf, pred, float(self._w0))

    def products(self, p: np.ndarray) -> np.ndarray:
        """sum (c - w0) (y.p) y for every row."""
        return self._sums(self._extra * self._dots(p))

    def observed(self, x: np.ndarray) -> float:
        return _observed(self._conf, self._dots(x), float(self._w0))


class HeavyRow:
    """One row with more than GATHER_NONZEROS nonzeros reduced to its system: A = sum (c - w0) y y^T
    (float32 products of the gathered chunks, summed in float64), b = sum c y and sum c, so each
    chunk is gathered once rather than at every CG step."""

    def __init__(self, nz: BlockNonzeros, row: int, w0: np.float32):
        lo, hi = int(nz.indptr[row]), int(nz.indptr[row + 1])
        rank = nz.other.shape[1]
        self._a, self._b = np.zeros((rank, rank), np.float64), np.zeros(rank, np.float64)
        for start in range(lo, hi, GATHER_NONZEROS):
            end = min(start + GATHER_NONZEROS, hi)
            ys, scaled = _buffers(end - start, rank)
            np.take(nz.other, nz.cols[start:end], axis=0, out=ys, mode="clip")
            conf = nz.conf[start:end]
            np.multiply(ys, (conf - w0)[:, None], out=scaled)
            self._a += ys.T @ scaled
            self._b += ys.T @ conf
        self._sum_conf = float(nz.conf[lo:hi].sum(dtype=np.float64))
        self._a32 = self._a.astype(np.float32)

    def _observed(self, x: np.ndarray) -> float:
        v = x[0].astype(np.float64)  # sum c - 2 sum c p + sum (c - w0) p^2 with p = Y v
        return float(self._sum_conf - 2.0 * v @ self._b + v @ self._a @ v)

    def start(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        return (self._b[None, :] - x.astype(np.float64) @ self._a).astype(np.float32), self._observed(x)

    def products(self, p: np.ndarray) -> np.ndarray:
        return p @ self._a32

    def observed(self, x: np.ndarray) -> float:
        return self._observed(x)


def _row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _cg(x: np.ndarray, part, gram_w0: np.ndarray, reg: np.ndarray, cg_steps: int,
        after: bool) -> tuple[np.ndarray, float, float | None]:
    """CG on one run of rows (GatheredRows or HeavyRow): (new rows, observed loss before, after)."""
    x = np.array(x, np.float32, copy=True)
    r, before = part.start(x)  # r = b - A x
    r -= x @ gram_w0
    r -= reg[:, None] * x
    p = r.copy()
    rs = _row_dots(r, r)
    for _ in range(cg_steps):
        ap = p @ gram_w0  # A p = w0 G p + sum (c - w0) (y.p) y + lambda p
        ap += part.products(p)
        ap += reg[:, None] * p
        step = _divide_no_nan(rs, _row_dots(p, ap))[:, None]
        x += step * p
        r -= step * ap
        rs_new = _row_dots(r, r)
        p *= _divide_no_nan(rs_new, rs)[:, None]
        p += r
        rs = rs_new
    return x, before, (part.observed(x) if after else None)


def block_half_step(x: np.ndarray, nz: BlockNonzeros, gram_w0: np.ndarray, reg: np.ndarray,
                    unobserved_weight: float, cg_steps: int, after: bool = True
                    ) -> tuple[np.ndarray, float, float | None]:
    """(new rows (n_rows, k) after `cg_steps` conjugate-gradient iterations from x with the other side
    fixed, the rows' observed loss before, and after (None unless `after`)); gram_w0 is w0 Y^T Y over
    the whole other side, reg the rows' lambda (row_regularization). The observed loss is the rows'
    share of kernels/wals_tf.loss's observed terms, sum c (1 - x.y)^2 - w0 (x.y)^2 (float64)."""
    gram_w0 = np.asarray(gram_w0, np.float32)
    reg = np.asarray(reg, np.float32)
    x = np.asarray(x, np.float32)
    w0 = np.float32(unobserved_weight)
    out = np.empty((nz.n_rows, gram_w0.shape[0]), np.float32)
    before, later = 0.0, 0.0
    bounds = block_bounds(np.diff(nz.indptr), GATHER_NONZEROS, GATHER_ROWS)
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        heavy = nz.indptr[end] - nz.indptr[start] > GATHER_NONZEROS  # block_bounds gives such a row alone
        part = HeavyRow(nz, start, w0) if heavy else GatheredRows(nz, start, end, w0)
        out[start:end], b, a = _cg(x[start:end], part, gram_w0, reg[start:end], cg_steps, after)
        before += b
        later += a if after else 0.0
    return out, before, (later if after else None)


def block_bounds(counts: np.ndarray, max_nonzeros: int, max_rows: int) -> np.ndarray:
    """Row bounds [0, ..., n_rows] of consecutive blocks: each holds at most max_rows rows and, unless it is
    a single row, at most max_nonzeros nonzeros."""
    ends = np.cumsum(np.asarray(counts, np.int64))
    bounds, start, n_rows = [0], 0, len(counts)
    while start < n_rows:
        before = ends[start - 1] if start else 0
        end = int(np.searchsorted(ends, before + max_nonzeros, side="right"))
        end = min(max(end, start + 1), start + max_rows, n_rows)
        bounds.append(end)
        start = end
    return np.asarray(bounds, np.int64)


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

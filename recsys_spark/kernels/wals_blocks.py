"""WALS for one block of rows in numpy's batched products (no Spark, no TensorFlow): the
kernel of the driver's numpy engine (kernels/wals_cpu.py) and of the distributed one
(models/wals_spark.py).

`block_half_step` runs the conjugate-gradient iterations of kernels/wals_tf.half_step on the rows
of one block: the same system (w0 Y^T Y + sum_{i in I_u} (c_ui - w0) y_i y_i^T + lambda_u I) x_u =
sum_{i in I_u} c_ui y_i, the same number of steps from the same current rows, the same updates in
float32, given only the block's nonzeros, the other side's rows they name and the full Gramian.

Rows are independent systems, so a block is solved in runs of rows of similar degree (a run's widest
row has at most 5/4 of its narrowest's nonzeros, plus one). A run's other-side rows are gathered
once into a per-thread (rows, width, rank) buffer, each row's nonzeros padded with zero rows to the
run's width, so that every CG product is one batched matrix product (BLAS, GIL released) over memory
read in order: the gather from the whole other side, a random access into memory, is the cost that
matters, and CG's products would otherwise repeat it twice a step. A row with more nonzeros than
GATHER_NONZEROS is reduced once to its rank x rank system. Memory beyond the block's 12 bytes per
nonzero: one GATHER_NONZEROS x rank buffer per thread and a few run-sized arrays.

`initial_rows` seeds factor rows per chunk of CHUNK_ROWS indexes, so any subset of rows is generated
where it is needed (an executor) and the whole matrix is the same whatever the partitioning.
"""

from __future__ import annotations

import threading

import numpy as np

CHUNK_ROWS = 4096  # rows seeded from one generator: initial_rows' unit of work
GATHER_NONZEROS = 1 << 15  # padded nonzeros gathered at once (8 MiB at rank 64; 2^14 and 2^16 measured slower)
GATHER_ROWS = 1 << 12  # rows of a run at most: its CG temporaries are a few (rows x rank) arrays
RUN_WIDTH_RATIO = 1.25  # a run's widest row over its narrowest: bounds the padding a run reads


def _divide_no_nan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (tf.math.divide_no_nan)."""
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def _sorted(rows: np.ndarray, cols: np.ndarray) -> bool:
    """Whether (rows, cols) are in lexicographic order already (a block's structure stores them so)."""
    if len(rows) < 2:
        return True
    step, col_step = np.diff(rows), np.diff(cols)
    return bool(np.all((step > 0) | ((step == 0) & (col_step > 0))))


_THREAD = threading.local()


def _buffer(n: int, rank: int) -> np.ndarray:
    """The calling thread's (n, rank) float32 buffer, reused so no product touches fresh pages."""
    buffer = getattr(_THREAD, "buffer", None)
    if buffer is None or buffer.shape[0] < n or buffer.shape[1] != rank:
        buffer = np.empty((max(n, GATHER_NONZEROS, 1), rank), np.float32)
        _THREAD.buffer = buffer
    return buffer[:n]


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
            ys = _buffer(end - start, self.other.shape[1])
            np.take(self.other, self.cols[start:end], axis=0, out=ys, mode="clip")
            out[start:end] = np.vecdot(x[self.rows[start:end]], ys)
        return out


def _observed(conf: np.ndarray, pred: np.ndarray, w0: float) -> float:
    """sum c (1 - p)^2 - w0 p^2 over nonzeros, as sum c - 2 sum c p + sum (c - w0) p^2 (float64)."""
    c, p = conf.astype(np.float64).ravel(), pred.astype(np.float64).ravel()
    return float(c.sum() - 2.0 * np.dot(c, p) + np.dot(c - w0, p * p))


class PaddedRows:
    """Some rows of a block (at most `width` nonzeros each) whose other-side rows are gathered once into
    the calling thread's buffer as (rows, width, rank), zero rows after each row's own, for CG's
    products over them as batched matrix products (a zero row adds nothing to a sum or the loss)."""

    def __init__(self, nz: BlockNonzeros, rows: np.ndarray, width: int, w0: np.float32):
        rank, n_rows = nz.other.shape[1], len(rows)
        lo = nz.indptr[rows]
        slots = lo[:, None] + np.arange(width)  # (rows, width) positions in the block's arrays
        pad = slots >= nz.indptr[rows + 1][:, None]
        self._other = _buffer(n_rows * width, rank).reshape(n_rows, width, rank)
        if len(nz.cols):
            np.take(nz.other, np.take(nz.cols, slots, mode="clip"), axis=0, out=self._other, mode="clip")
            self._other[pad] = 0.0
            self._conf = np.take(nz.conf, slots, mode="clip")
            self._conf[pad] = 0.0
        else:  # a block without nonzeros: only the Gramian and the penalty
            self._other[...] = 0.0
            self._conf = np.zeros((n_rows, width), np.float32)
        self._extra = self._conf - w0
        self._extra[pad] = 0.0
        self._w0 = w0

    def _dots(self, x: np.ndarray) -> np.ndarray:
        """y.x for every slot -> (rows, width)."""
        return np.matvec(self._other, x)

    def _sums(self, weights: np.ndarray) -> np.ndarray:
        """sum over each row's slots of weight x y -> (rows, k)."""
        return np.vecmat(weights, self._other)

    def start(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(sum c y - sum (c - w0) (y.x) y, the rows' observed loss at x)."""
        pred = self._dots(x)
        return self._sums(self._conf - self._extra * pred), _observed(self._conf, pred, float(self._w0))

    def add_products(self, p: np.ndarray, out: np.ndarray) -> None:
        """out += sum (c - w0) (y.p) y for every row."""
        weights = self._dots(p)
        weights *= self._extra
        out += self._sums(weights)

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
            ys = _buffer(end - start, rank)
            np.take(nz.other, nz.cols[start:end], axis=0, out=ys, mode="clip")
            conf = nz.conf[start:end]
            self._a += ys.T @ (ys * (conf - w0)[:, None])
            self._b += ys.T @ conf
        self._sum_conf = float(nz.conf[lo:hi].sum(dtype=np.float64))
        self._a32 = self._a.astype(np.float32)

    def _observed(self, x: np.ndarray) -> float:
        v = x[0].astype(np.float64)  # sum c - 2 sum c p + sum (c - w0) p^2 with p = Y v
        return float(self._sum_conf - 2.0 * v @ self._b + v @ self._a @ v)

    def start(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        return (self._b[None, :] - x.astype(np.float64) @ self._a).astype(np.float32), self._observed(x)

    def add_products(self, p: np.ndarray, out: np.ndarray) -> None:
        out += p @ self._a32

    def observed(self, x: np.ndarray) -> float:
        return self._observed(x)


def _cg(x: np.ndarray, part, gram_w0: np.ndarray, reg: np.ndarray, cg_steps: int,
        after: bool) -> tuple[np.ndarray, float, float | None]:
    """CG on one run of rows (PaddedRows or HeavyRow): (new rows, observed loss before, after)."""
    x = np.array(x, np.float32, copy=True)
    r, before = part.start(x)  # r = b - A x
    r -= x @ gram_w0
    r -= reg[:, None] * x
    p = r.copy()
    rs = np.vecdot(r, r)
    ap, reg = np.empty_like(p), reg[:, None]
    for _ in range(cg_steps):
        np.matmul(p, gram_w0, out=ap)  # A p = w0 G p + sum (c - w0) (y.p) y + lambda p
        part.add_products(p, ap)
        ap += reg * p
        step = _divide_no_nan(rs, np.vecdot(p, ap))[:, None]
        x += step * p
        r -= step * ap
        rs_new = np.vecdot(r, r)
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
    x = np.asarray(x, np.float32)
    out = np.empty((nz.n_rows, np.shape(gram_w0)[0]), np.float32)
    before, later = 0.0, 0.0
    for rows, width in degree_runs(np.diff(nz.indptr), GATHER_NONZEROS, GATHER_ROWS):
        b, a = solve_run(x, nz, rows, width, gram_w0, reg, unobserved_weight, cg_steps, after, out)
        before, later = before + b, later + a
    return out, before, (later if after else None)


def solve_run(x: np.ndarray, nz: BlockNonzeros, rows: np.ndarray, width: int, gram_w0: np.ndarray, reg: np.ndarray,
              unobserved_weight: float, cg_steps: int, after: bool, out: np.ndarray) -> tuple[float, float]:
    """block_half_step for one of degree_runs' runs: out[rows] = the rows' new values from x[rows] (out
    may be x: a run reads only its own rows); (observed loss before, after or 0)."""
    w0 = np.float32(unobserved_weight)
    part = HeavyRow(nz, int(rows[0]), w0) if width > GATHER_NONZEROS else PaddedRows(nz, rows, width, w0)
    new, before, later = _cg(x[rows], part, np.asarray(gram_w0, np.float32), np.asarray(reg[rows], np.float32),
                             cg_steps, after)
    out[rows] = new
    return before, (later if after else 0.0)


def degree_runs(counts: np.ndarray, max_slots: int, max_rows: int) -> list[tuple[np.ndarray, int]]:
    """Every row once, in runs (rows, width) of rows by increasing degree: a run's width is its widest
    row's nonzeros (at least 1), at most RUN_WIDTH_RATIO times its narrowest's plus one, and it holds
    at most max_rows rows and max_slots = rows x width; a row over max_slots is a run of its own."""
    counts = np.asarray(counts, np.int64)
    order = np.argsort(counts, kind="stable")
    degrees = counts[order]
    runs, start, n = [], 0, len(order)
    while start < n:
        widest = int(degrees[start] * RUN_WIDTH_RATIO) + 1
        end = min(int(np.searchsorted(degrees, widest, side="right")), start + max_rows)
        width = max(int(degrees[end - 1]), 1)
        end = min(end, start + max(max_slots // width, 1))
        width = max(int(degrees[end - 1]), 1)
        runs.append((order[start:end], width))
        start = end
    return runs


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

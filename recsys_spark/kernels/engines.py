"""Approximate score blocks with a proven error bound: the candidate generators of the top-N kernel.

An engine turns (users x one item block) into ordered keys whose error against the real dot
product is bounded per user by ``margin(user_norms, block_norm)``. The kernel only uses them
to decide which items can still be in a user's top-N, and rescores those exactly, so the
engine's precision changes the speed, never the result.

- ``float32``: numpy (BLAS) GEMM, keys are the float32 scores. Runs everywhere.
- ``bfloat16``: TensorFlow GEMM on bfloat16 copies, keys are the bfloat16 bit patterns read as
  int16 (monotone for positive values). On CPUs with AMX (``amx_bf16``) oneDNN runs it several
  times faster than float32; elsewhere it is slower, which is why ``auto`` picks it only there.
"""

from __future__ import annotations

import functools

import numpy as np

from recsys_spark.kernels.tf_runtime import import_tensorflow

PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_precision(precision: str) -> str:
    """float32 or bfloat16 for `precision`; auto is bfloat16 only where the CPU multiplies it natively."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if cpu_has_amx_bf16() else "float32"
    return precision


@functools.lru_cache(maxsize=1)
def cpu_has_amx_bf16() -> bool:
    """True if /proc/cpuinfo lists amx_bf16 (Linux; elsewhere False)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


class Float32Engine:
    """numpy GEMM; keys are the float32 scores, masked entries -inf."""

    name = "float32"
    masked = -np.inf
    dtype = np.float32
    keys_are_scores = False  # the GEMM's rounding: candidates are rescored exactly

    def __init__(self, items: np.ndarray, width: int):
        self.items, self.width = items, width
        self.rank = items.shape[1]

    def prepare_users(self, user_vectors: np.ndarray):
        return user_vectors

    def block(self, users, start: int, out: np.ndarray) -> np.ndarray:
        """Keys (B, width) of items start..start+width; columns past the catalog are masked."""
        stop = min(start + self.width, len(self.items))
        np.matmul(users, self.items[start:stop].T, out=out[:, :stop - start])
        out[:, stop - start:] = self.masked
        return out

    def margin(self, user_norms: np.ndarray, block_norm: float) -> np.ndarray:
        # float32 accumulation of k products: |error| <= k * 2**-24 * sum|u_i v_i|; twice that here.
        return (self.rank + 4) * 2.0 ** -23 * user_norms * block_norm + _ABSOLUTE

    @staticmethod
    def value(keys: np.ndarray) -> np.ndarray:
        """float64 values of keys (masked: -inf)."""
        return keys.astype(np.float64)

    @staticmethod
    def threshold_key(threshold: np.ndarray) -> np.ndarray:
        """Largest key <= threshold (float64), so `key >= threshold_key` misses no candidate."""
        return np.maximum(_float32_floor(threshold), np.finfo(np.float32).min)  # masked -inf never passes

    @staticmethod
    def usable(threshold: np.ndarray) -> np.ndarray:
        return np.ones(threshold.shape, dtype=bool)


class BFloat16Engine:
    """TensorFlow GEMM on bfloat16 copies; keys are the bfloat16 bits as int16, masked -32768.

    Reading bfloat16 bits as int16 orders positive values correctly and puts every negative
    value below every positive one, so keys are only used against positive thresholds; users
    whose threshold is not positive go back to the float32 engine (``usable``).
    """

    name = "bfloat16"
    masked = np.int16(-32768)
    dtype = np.int16
    keys_are_scores = False

    def __init__(self, items: np.ndarray, width: int):
        tf = import_tensorflow()  # only where this engine is chosen: workers without it never import TF

        self._tf, self.width, self.rank, self.n_items = tf, width, items.shape[1], len(items)
        padded = np.zeros((-(-len(items) // width) * width, self.rank), dtype=np.float32)
        padded[:len(items)] = items
        self.blocks = [tf.constant(padded[start:start + width], dtype=tf.bfloat16)
                       for start in range(0, len(padded), width)]

    def prepare_users(self, user_vectors: np.ndarray):
        return self._tf.constant(user_vectors, dtype=self._tf.bfloat16)

    def block(self, users, start: int, out: np.ndarray) -> np.ndarray:
        """Keys (B, width) of items start..start+width; columns past the catalog are masked."""
        # np.asarray shares the tensor's buffer (writable), where .numpy() would copy it.
        keys = np.asarray(self._tf.matmul(users, self.blocks[start // self.width], transpose_b=True)).view(np.int16)
        keys[:, self.n_items - start:] = self.masked
        return keys

    def margin(self, user_norms: np.ndarray, block_norm: float) -> np.ndarray:
        # TF and oneDNN round to nearest even: inputs carry a relative error <= 2**-8 each, products
        # are exact, float32 accumulation adds <= k * 2**-24, the bfloat16 output <= 2**-8 of |sum|:
        # |error| <= (3 * 2**-8 + 2**-16 + 2 * k * 2**-24) * sum|u_i v_i| <= 0.0118 * |u| |v| at k = 64.
        # 2**-6 leaves room for larger k and the float32 rounding of the exact rescoring; the middle
        # term covers subnormal inputs flushed to zero.
        return ((2.0 ** -6 + self.rank * 2.0 ** -23) * user_norms * block_norm
                + self.rank * 2.0 ** -125 * (user_norms + block_norm) + _ABSOLUTE)

    @staticmethod
    def value(keys: np.ndarray) -> np.ndarray:
        values = (keys.astype(np.int32) << 16).view(np.float32).astype(np.float64)
        return np.where(keys >= 0, values, -np.inf)  # negative keys are not ordered: no bound from them

    @staticmethod
    def threshold_key(threshold: np.ndarray) -> np.ndarray:
        floor = _float32_floor(np.maximum(threshold, 0.0))
        return (floor.view(np.int32) >> 16).astype(np.int16)  # truncation rounds a positive value down

    @staticmethod
    def usable(threshold: np.ndarray) -> np.ndarray:
        return threshold > 0


_ABSOLUTE = 1e-30  # room for the float64 rescoring's own rounding on tiny scores


def make_engine(precision: str, items: np.ndarray, width: int):
    """The engine for a resolved precision over (M, k) float32 items in blocks of `width`."""
    return BFloat16Engine(items, width) if precision == "bfloat16" else Float32Engine(items, width)


def _float32_floor(values: np.ndarray) -> np.ndarray:
    """float32 of each float64 value, rounded down (-inf stays -inf)."""
    values = np.asarray(values, dtype=np.float64)
    rounded = values.astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def set_tf_threads(threads: int) -> None:
    """Limit TensorFlow's CPU pools to the task's cores, if TF has not started yet."""
    tf = import_tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process: keep its pools
        pass


def exact_scores(users: np.ndarray, items: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 of the float64 dot product of each (user row, item row) pair."""
    if rows.size == 0:
        return np.empty(0, dtype=np.float32)
    return np.einsum("ij,ij->i", users[rows], items[cols], dtype=np.float64).astype(np.float32)



class HistoryEngine:
    """Item-item scores of sparse history rows: a user's score of item j is sum_i x_ui C[i, j].

    `columns` (n_history_items, M) float32 holds the candidate items' columns (e.g. EASE's B),
    ordered as the kernel visits them; users are kernels/sparse_rows.SparseRows over its rows.
    A block's keys gather the rows of the user's items and sum them in float64, so they are the
    scores themselves (the float32 rounding of the float64 sum): nothing needs rescoring, and
    memory per call stays within `chunk` history rows x width beyond the output.
    """

    name = "history"
    masked = -np.inf
    dtype = np.float32
    keys_are_scores = True

    def __init__(self, columns: np.ndarray, width: int, chunk: int = 1024):
        self.columns, self.width, self.chunk = columns, width, chunk
        self.rank = columns.shape[0]

    def prepare_users(self, users):
        return users

    def block(self, users, start: int, out: np.ndarray) -> np.ndarray:
        """Keys (B, width) of items start..start+width; columns past the catalog are masked."""
        stop = min(start + self.width, self.columns.shape[1])
        total = np.empty(stop - start, dtype=np.float64)
        for row in range(len(users)):  # one float64 sum of contiguous rows per user (faster than reduceat)
            total[:] = 0.0
            for lo in range(users.indptr[row], users.indptr[row + 1], self.chunk):
                hi = min(lo + self.chunk, users.indptr[row + 1])
                # Index rows and block together: take() on the block's (strided) view would first copy
                # the whole view, n_history_items x width, for every user.
                rows = self.columns[users.indices[lo:hi], start:stop]
                if users.values is not None:
                    rows = rows * users.values[lo:hi, None].astype(np.float64)
                total += rows.sum(axis=0, dtype=np.float64)
            out[row, :stop - start] = total
        out[:, stop - start:] = self.masked
        return out

    def margin(self, user_norms: np.ndarray, block_norm: float) -> np.ndarray:
        return np.zeros(np.shape(user_norms)) + _ABSOLUTE  # keys are the scores

    value = staticmethod(Float32Engine.value)
    threshold_key = staticmethod(Float32Engine.threshold_key)
    usable = staticmethod(Float32Engine.usable)

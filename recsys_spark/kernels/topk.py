"""Exact blockwise top-N of dot-product scores with excluded (seen) items.

Memory per call is bounded by ``batch_users x block_items`` float32 scores, whatever the
catalog size. Ties are broken by the lower item index, so with indexes assigned in id order
ties go to the lower item id.

Selection, not the GEMM, is the cost to beat: a full ``argpartition`` of every score block runs
several times slower than the GEMM. So each block is cut into ``GROUP`` interleaved column groups
and only the group maxima (one vectorised reduction) go through a threshold: the n-th largest of
(current top-n, group maxima) bounds the block's n-th best from below, so only the few groups whose
maximum reaches it can hold a winner. Those candidates are merged exactly on a combined
(score, -index) integer key, which makes the order total and the ties deterministic.
"""

from __future__ import annotations

import numpy as np

MISSING = -1
GROUP = 16  # columns per group: the reduction is one pass, the candidate gather GROUP x wider
_LOWEST = np.finfo(np.float32).min


def top_n(
    user_vectors: np.ndarray,
    item_factors: np.ndarray,
    n: int,
    seen_indptr: np.ndarray | None = None,
    seen_indices: np.ndarray | None = None,
    block_items: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`n` items per user row by ``user_vectors @ item_factors.T``, skipping seen items.

    user_vectors: (B, k) float32; item_factors: (M, k) float32, both finite.
    seen_indptr/seen_indices: CSR rows of item indexes to exclude per user (B + 1 and nnz).
    Returns (indexes (B, n) int32, scores (B, n) float32), best first; where a user has fewer
    than `n` unseen items the tail is MISSING (-1) with score -inf.
    """
    user_vectors = np.asarray(user_vectors, dtype=np.float32)
    item_factors = np.asarray(item_factors, dtype=np.float32)
    n_users, n_items = user_vectors.shape[0], item_factors.shape[0]
    best_idx = np.full((n_users, n), MISSING, dtype=np.int32)
    best_score = np.full((n_users, n), -np.inf, dtype=np.float32)
    if n_users == 0 or n_items == 0:
        return best_idx, best_score
    if not (np.isfinite(item_factors).all() and np.isfinite(user_vectors).all()):
        raise ValueError("factors contain NaN or infinity; retrain the model or fix its factor tables")
    seen_rows, seen_cols = _seen_pairs_by_item(n_users, seen_indptr, seen_indices)
    width = -(-max(1, min(block_items, n_items)) // GROUP) * GROUP
    scores = np.empty((n_users, width), dtype=np.float32)
    for start in range(0, n_items, width):
        stop = min(start + width, n_items)
        used = stop - start
        np.matmul(user_vectors, item_factors[start:stop].T, out=scores[:, :used])
        scores[:, used:] = -np.inf
        lo, hi = np.searchsorted(seen_cols, (start, stop))
        scores[seen_rows[lo:hi], seen_cols[lo:hi] - start] = -np.inf
        _merge_block(scores, start, best_idx, best_score, n)
    best_idx[best_score == -np.inf] = MISSING
    return best_idx, best_score


def _seen_pairs_by_item(n_users, indptr, indices):
    """(row, item) pairs of the CSR exclusions, sorted by item so each block is one slice."""
    if indptr is None or indices is None or len(indices) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    cols = np.asarray(indices, dtype=np.int64)
    order = np.argsort(cols, kind="stable")
    return rows[order], cols[order]


def _merge_block(scores, start, best_idx, best_score, n):
    """Merge one masked score block (B, width) into the running top-n, in place."""
    n_users, width = scores.shape
    stride = width // GROUP
    # Group j holds columns j, j + stride, ...: the max over axis 1 is a fast elementwise pass.
    group_max = scores.reshape(n_users, GROUP, stride).max(axis=1)
    # The running n-th best is a valid bound; rows still short of n take the n-th largest of
    # (running top-n, group maxima), which bounds the merged n-th best from below.
    threshold = best_score[:, -1].copy()
    short = threshold == -np.inf
    if short.any():
        pool = np.concatenate([best_score[short], group_max[short]], axis=1)
        threshold[short] = np.partition(pool, -n, axis=1)[:, -n]
    threshold = np.maximum(threshold, _LOWEST)
    rows, groups = np.nonzero(group_max >= threshold[:, None])
    if rows.size == 0:
        return
    cols = groups[:, None] + np.arange(GROUP) * stride  # (groups, GROUP) block columns
    values = scores.ravel().take(rows[:, None] * width + cols)
    hit = np.flatnonzero(values >= threshold[rows][:, None])
    rows, cols, values = rows[hit // GROUP], cols.ravel()[hit], values.ravel()[hit]
    users, first, counts = np.unique(rows, return_index=True, return_counts=True)
    at_row = np.repeat(np.arange(users.size), counts)
    at_col = np.arange(rows.size) - np.repeat(first, counts)
    cand_score = np.full((users.size, int(counts.max())), -np.inf, dtype=np.float32)
    cand_idx = np.full(cand_score.shape, MISSING, dtype=np.int32)
    cand_score[at_row, at_col] = values
    cand_idx[at_row, at_col] = start + cols
    merged_idx, merged_score = select_top(
        np.concatenate([best_idx[users], cand_idx], axis=1),
        np.concatenate([best_score[users], cand_score], axis=1), n)
    best_idx[users] = merged_idx
    best_score[users] = merged_score


def order_key(idx: np.ndarray, score: np.ndarray) -> np.ndarray:
    """int64 key ordering (score desc, index asc) as one descending integer, ties impossible."""
    bits = np.ascontiguousarray(score, dtype=np.float32).view(np.int32)
    monotone = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)
    return (monotone << 32) | (np.int64(0x7FFFFFFF) - idx.astype(np.int64))


def select_top(idx: np.ndarray, score: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Best `n` columns per row by (score desc, index asc); returns (idx, score), best first."""
    key = order_key(idx, score)
    width = key.shape[1]
    if width > n:
        keep = np.argpartition(key, width - n, axis=1)[:, width - n:]
        key = np.take_along_axis(key, keep, axis=1)
    else:
        keep = np.broadcast_to(np.arange(width), key.shape)
    order = np.take_along_axis(keep, np.argsort(key, axis=1)[:, ::-1], axis=1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(score, order, axis=1)

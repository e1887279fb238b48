"""Exact blockwise top-N of dot-product scores with excluded (seen) items.

Memory per call is bounded by ``batch_users x block_items`` float32 scores, whatever the
catalog size. Ties are broken by the lower item index, so with indexes assigned in id order
ties go to the lower item id.
"""

from __future__ import annotations

import numpy as np

MISSING = -1


def top_n(
    user_vectors: np.ndarray,
    item_factors: np.ndarray,
    n: int,
    seen_indptr: np.ndarray | None = None,
    seen_indices: np.ndarray | None = None,
    block_items: int = 16384,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`n` items per user row by ``user_vectors @ item_factors.T``, skipping seen items.

    user_vectors: (B, k) float32; item_factors: (M, k) float32.
    seen_indptr/seen_indices: CSR rows of item indexes to exclude per user (B + 1 and nnz).
    Returns (indexes (B, n) int32, scores (B, n) float32), best first; where a user has fewer
    than `n` unseen items the tail is MISSING (-1) with score -inf.
    """
    n_users, n_items = user_vectors.shape[0], item_factors.shape[0]
    best_idx = np.full((n_users, n), MISSING, dtype=np.int32)
    best_score = np.full((n_users, n), -np.inf, dtype=np.float32)
    if n_users == 0 or n_items == 0:
        return best_idx, best_score
    seen_rows, seen_cols = _seen_pairs(n_users, seen_indptr, seen_indices)
    for start in range(0, n_items, block_items):
        stop = min(start + block_items, n_items)
        scores = user_vectors @ item_factors[start:stop].T
        in_block = (seen_cols >= start) & (seen_cols < stop)
        scores[seen_rows[in_block], seen_cols[in_block] - start] = -np.inf
        block_idx = np.broadcast_to(np.arange(start, stop, dtype=np.int32), scores.shape)
        best_idx, best_score = _merge(best_idx, best_score, block_idx, scores, n)
    best_idx[~np.isfinite(best_score)] = MISSING
    return best_idx, best_score


def _seen_pairs(n_users, indptr, indices):
    if indptr is None or indices is None or len(indices) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    return rows, np.asarray(indices, dtype=np.int64)


def _merge(idx_a, score_a, idx_b, score_b, n):
    """Best `n` of two candidate sets per row, ordered by score desc then index asc."""
    idx = np.concatenate([idx_a, idx_b], axis=1)
    score = np.concatenate([score_a, score_b], axis=1)
    width = score.shape[1]
    if width > n:
        # Everything at or above the n-th best value is a candidate, ties included.
        kth = -np.partition(-score, n - 1, axis=1)[:, n - 1 : n]
        keep = score >= kth
        counts = keep.sum(axis=1)
        if counts.max() < width:
            cap = int(counts.max())
            order = np.argsort(~keep, axis=1, kind="stable")[:, :cap]
            idx = np.take_along_axis(idx, order, axis=1)
            score = np.take_along_axis(score, order, axis=1)
            score = np.where(np.arange(cap) < counts[:, None], score, -np.inf)
    # Sort by (score desc, index asc); missing entries (-inf) sort last.
    sort_idx = np.where(np.isfinite(score), idx, np.iinfo(np.int32).max)
    order = np.lexsort((sort_idx, -score), axis=1)[:, :n]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(score, order, axis=1)

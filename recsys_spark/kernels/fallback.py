"""Fill short top-N lists from a global ranking (e.g. item popularity), skipping excluded items."""

from __future__ import annotations

import numpy as np

from recsys_spark.kernels.topk import MISSING


def fill_from_ranking(
    idx: np.ndarray,
    ranking: np.ndarray,
    excluded_indptr: np.ndarray,
    excluded_indices: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """Fill each row's MISSING tail with the best-ranked items it neither holds nor excludes.

    idx: (B, n) int32 item indexes, best first, MISSING only in a tail.
    ranking: (L,) distinct item indexes, best first (the only items that may be added).
    excluded_indptr/excluded_indices: CSR rows (B + 1, nnz) of item indexes each row must not get.
    Returns a filled copy; a row keeps MISSING slots when the ranking runs out for it.
    """
    out = idx.copy()
    need = (out == MISSING).sum(axis=1)
    rows = np.flatnonzero(need)
    if rows.size == 0 or ranking.size == 0:
        return out
    rank_of = np.full(n_items, -1, dtype=np.int64)
    rank_of[ranking] = np.arange(ranking.size)
    lengths = excluded_indptr[rows + 1] - excluded_indptr[rows]
    held = out.shape[1] - need[rows]
    # Within the first need + blocked ranks a row always finds `need` free items.
    width = int(min(ranking.size, (need[rows] + lengths + held).max()))
    blocked = np.zeros((rows.size, width), dtype=bool)
    excl_row = np.repeat(np.arange(rows.size), lengths)
    excl_at = np.repeat(excluded_indptr[rows] - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(lengths.sum())
    held_row, held_col = np.nonzero(out[rows] != MISSING)
    for row, item in ((excl_row, np.asarray(excluded_indices, dtype=np.int64)[excl_at]),
                      (held_row, out[rows][held_row, held_col])):
        rank = rank_of[item]
        ok = (rank >= 0) & (rank < width)
        blocked[row[ok], rank[ok]] = True
    free = ~blocked
    take = free & (np.cumsum(free, axis=1) <= need[rows][:, None])
    take_row, take_rank = np.nonzero(take)
    counts = np.bincount(take_row, minlength=rows.size)
    slot = held[take_row] + np.arange(take_row.size) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
    out[rows[take_row], slot] = ranking[take_rank]
    return out

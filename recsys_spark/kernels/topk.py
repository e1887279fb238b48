"""Exact blockwise top-N of dot-product scores with excluded (seen) items.

Memory per call is bounded by ``batch_users x block_items`` scores, whatever the catalog size.
Scores are the float32 rounding of the float64 dot product; ties are broken by the lower item
index, so with indexes assigned in id order ties go to the lower item id.

A GEMM per item block proposes candidates and an exact rescoring decides, so the GEMM may be
approximate (recsys_spark/kernels/engines.py: float32, or bfloat16 on AMX) as long as its error
is bounded: ``margin`` bounds it per user from the user's norm and the block's largest item norm.
Items are visited by decreasing norm, which keeps each block's margin tight and finds good
candidates early.

Selection, not the GEMM, is the cost to beat: a full ``argpartition`` of every block runs several
times slower than the GEMM. So each block is cut into ``GROUP`` interleaved column groups and only
the group maxima (one vectorised reduction) go through a threshold. A user's threshold is a lower
bound on their final n-th best score (the n-th best exact score held so far, or the n-th largest of
held scores and group maxima less the margin), minus the margin: an item below it cannot make the
top n, and only the few groups whose maximum reaches it are looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_spark.errors import ModelError
from recsys_spark.kernels.engines import Float32Engine, HistoryEngine, exact_scores, make_engine, resolve_precision
from recsys_spark.kernels.sparse_rows import SparseRows

MISSING = -1
GROUP = 16  # columns per group: the reduction is one pass, the candidate gather GROUP x wider
DENSE_GROUPS = 48  # more candidate groups than this in a block: a float32 GEMM is cheaper than rescoring


@dataclass
class PreparedItems:
    """Item factors ordered by decreasing norm, in blocks, with the engine that scores them."""
    items: np.ndarray  # (M, k) float32, by decreasing norm (item-item: a view of the engine's columns)
    order: np.ndarray  # (M,) int32: original row of each ordered row
    position: np.ndarray  # (M,) int64: ordered row of each original row
    norms: np.ndarray  # (M,) float64 norm of each ordered row
    block_norms: np.ndarray  # (blocks,) float64: largest norm in each block
    width: int
    engine: object
    exact_engine: Float32Engine | HistoryEngine  # for users the engine cannot bound (bfloat16, non-positive scores)


def prepare_items(item_factors: np.ndarray, block_items: int = 4096, precision: str = "float32") -> PreparedItems:
    """Order, block and load the items once, for many top_n calls (e.g. once per Spark worker)."""
    item_factors = np.asarray(item_factors, dtype=np.float32)
    _require_finite(item_factors)
    norms = np.linalg.norm(item_factors.astype(np.float64), axis=1)
    order, position, width, block_norms = _layout(norms, block_items)
    items = np.ascontiguousarray(item_factors[order])
    exact = Float32Engine(items, width)
    engine = exact if resolve_precision(precision) == "float32" else make_engine("bfloat16", items, width)
    return PreparedItems(items, order, position, norms[order], block_norms, width, engine, exact)


def prepare_history_items(columns: np.ndarray, block_items: int = 4096) -> PreparedItems:
    """The item-item form of prepare_items: item j scores sum_i x_ui columns[i, j] for a user's
    history row x_u (SparseRows over the rows of `columns`, shape (n_history_items, M))."""
    columns = np.asarray(columns, dtype=np.float32)
    _require_finite(columns)
    norms = np.sqrt(np.einsum("ij,ij->j", columns, columns, dtype=np.float64))
    order, position, width, block_norms = _layout(norms, block_items)
    ordered = np.take(columns, order, axis=1)  # one copy, C-contiguous: a block's rows are contiguous runs
    engine = HistoryEngine(ordered, width)
    return PreparedItems(ordered.T, order, position, norms[order], block_norms, width, engine, engine)


def _layout(norms: np.ndarray, block_items: int):
    """Visiting order (decreasing norm), each row's ordered position, the block width and block norms."""
    order = np.argsort(-norms, kind="stable").astype(np.int32)
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    blocks = -(-len(order) // max(1, block_items))
    width = -(-len(order) // max(1, blocks) // GROUP) * GROUP if len(order) else GROUP  # blocks of even size
    block_norms = norms[order][::width].copy() if len(order) else np.zeros(0)
    return order, position, width, block_norms


def _require_finite(values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        raise ModelError("factors contain NaN or infinity; retrain the model or fix its factor tables")


def prepared_once(owner, item_factors: np.ndarray, block_items: int, precision: str,
                  prepare=None) -> PreparedItems:
    """prepare_items (or `prepare(item_factors, block_items)`), cached on `owner` (a broadcast
    value): once per Spark Python worker."""
    cache = owner.__dict__.setdefault("_prepared", {})
    if (block_items, precision) not in cache:
        cache[(block_items, precision)] = (prepare_items(item_factors, block_items, precision) if prepare is None
                                           else prepare(item_factors, block_items))
    return cache[(block_items, precision)]


def top_n(
    user_vectors: np.ndarray | SparseRows,
    item_factors: np.ndarray | PreparedItems,
    n: int,
    seen_indptr: np.ndarray | None = None,
    seen_indices: np.ndarray | None = None,
    block_items: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`n` items per user row by ``user_vectors @ item_factors.T``, skipping seen items.

    user_vectors: (B, k) float32; item_factors: (M, k) float32 or prepare_items() of them, finite.
    Item-item: user_vectors are SparseRows (history rows) and item_factors prepare_history_items().
    seen_indptr/seen_indices: CSR rows of item indexes to exclude per user (B + 1 and nnz).
    Returns (indexes (B, n) int32, scores (B, n) float32), best first; where a user has fewer
    than `n` unseen items the tail is MISSING (-1) with score -inf.
    """
    items = item_factors if isinstance(item_factors, PreparedItems) else prepare_items(item_factors, block_items)
    sparse = isinstance(user_vectors, SparseRows)
    if sparse != isinstance(items.engine, HistoryEngine):
        raise ValueError("history rows go with prepare_history_items, factor rows with prepare_items")
    if not sparse:
        user_vectors = np.asarray(user_vectors, dtype=np.float32)
    n_users, n_items = len(user_vectors), len(items.items)
    best_idx = np.full((n_users, n), MISSING, dtype=np.int32)
    best_score = np.full((n_users, n), -np.inf, dtype=np.float32)
    if n_users == 0 or n_items == 0:
        return best_idx, best_score
    if not (user_vectors.all_finite() if sparse else np.isfinite(user_vectors).all()):
        raise ModelError("factors contain NaN or infinity; retrain the model or fix its factor tables")
    _run(user_vectors, items, *_seen_pairs_by_block(n_users, seen_indptr, seen_indices, items), best_idx, best_score)
    best_idx[best_score == -np.inf] = MISSING
    return best_idx, best_score


def _seen_pairs_by_block(n_users, indptr, indices, items):
    """(row, ordered item) pairs of the CSR exclusions grouped by block, and each block's offset."""
    n_blocks = -(-len(items.items) // items.width)
    if indptr is None or indices is None or len(indices) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.zeros(n_blocks + 1, dtype=np.int64)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    cols = items.position[np.asarray(indices, dtype=np.int64)]
    block = cols // items.width
    order = np.argsort(block.astype(np.int16) if n_blocks < 2 ** 15 else block, kind="stable")  # radix sort
    offsets = np.r_[0, np.cumsum(np.bincount(block, minlength=n_blocks))]
    return rows[order], cols[order], offsets


def _run(users, items, seen_rows, seen_cols, seen_offsets, best_idx, best_score) -> None:
    """Fill best_idx/best_score block by block."""
    n_users = len(users)
    user_norms = users.norms() if isinstance(users, SparseRows) else np.linalg.norm(users.astype(np.float64), axis=1)
    bound = np.full(n_users, -np.inf)  # the final n-th best exact score is known to reach this
    state = users, user_norms, bound, best_idx, best_score
    active = np.arange(n_users)  # rows on items.engine; the others (deferred) go to the exact engine
    deferred = np.empty(0, dtype=np.int64)
    prepared = items.engine.prepare_users(users)
    out = np.empty((n_users, items.width), dtype=items.engine.dtype)
    for block, start in enumerate(range(0, len(items.items), items.width)):
        lo, hi = seen_offsets[block], seen_offsets[block + 1]
        seen = seen_rows[lo:hi], seen_cols[lo:hi] - start
        if active.size:
            undecided = _step(items.engine, prepared, active, items, block, _seen_of(seen, active, n_users), out, state)
            if undecided.size:  # the exact engine takes these users from this block on
                active = np.setdiff1d(active, undecided, assume_unique=True)
                deferred = np.union1d(deferred, undecided)
                prepared = items.engine.prepare_users(users[active])
        if deferred.size:
            _step(items.exact_engine, users[deferred], deferred, items, block, _seen_of(seen, deferred, n_users),
                  np.empty((deferred.size, items.width), np.float32), state)


def _seen_of(seen, rows, n_users):
    """The block's (row, column) exclusions of `rows`, with rows renumbered 0..len(rows)-1."""
    if rows.size == n_users:
        return seen
    local = np.full(n_users, -1)
    local[rows] = np.arange(rows.size)
    mine = local[seen[0]] >= 0
    return local[seen[0][mine]], seen[1][mine]


def _step(engine, prepared, rows, items, block, seen, out, state) -> np.ndarray:
    """Score one block for `rows`, merge their candidates; returns the rows the engine left undecided."""
    users, user_norms, bound, best_idx, best_score = state
    start, width = block * items.width, items.width
    keys = engine.block(prepared, start, out)
    keys[seen] = engine.masked
    # Group j holds columns j, j + stride, ...: the max over axis 1 is a fast elementwise pass.
    group_max = keys.reshape(len(rows), GROUP, width // GROUP).max(axis=1)
    margin = engine.margin(user_norms[rows], items.block_norms[block])
    never = np.iinfo(np.int16).max if engine.dtype == np.int16 else np.inf
    # Where scores crowd within the margin of the bound (e.g. cosines of similar items), rescoring
    # would cost more than a float32 GEMM: the exact engine redoes the block for those users.
    # Item-item keys are the scores: crowded users merge the whole block's keys instead.
    limit = DENSE_GROUPS if engine.keys_are_scores or engine is not items.exact_engine else None
    upper = None
    short = np.flatnonzero(best_score[rows, -1] == -np.inf)
    if short.size:
        # Users without n scores yet: first the items at or above the n-th largest group maximum
        # (at least n of them), rescored exactly, give a bound that carries no margin.
        held = best_idx[rows[short]], best_score[rows[short]], bound[rows[short]]  # copies
        at = max(width // GROUP - best_idx.shape[1], 0)
        nth = engine.value(np.partition(group_max[short], at, axis=1)[:, at])
        upper = np.full(len(rows), never, dtype=keys.dtype)
        upper[short] = np.where(engine.usable(nth), engine.threshold_key(nth), never)
        crowded = _merge_candidates(engine, users, user_norms, items, keys, group_max, upper, rows, start,
                                    best_idx, best_score, bound, limit=limit)
        bound[rows] = np.maximum(bound[rows], best_score[rows, -1])
        bound[rows[crowded]] = -np.inf  # they take the exact engine, which starts this block afresh
    threshold = bound[rows] - margin
    key = engine.threshold_key(threshold)
    unusable = np.flatnonzero(~engine.usable(threshold))
    key[unusable] = never
    crowded = _merge_candidates(engine, users, user_norms, items, keys, group_max, key, rows, start, best_idx,
                                best_score, bound, upper, limit=limit)
    undecided = np.union1d(unusable, crowded)
    if short.size and undecided.size:  # the caller redoes this block for them: undo their first pass
        back = np.isin(short, undecided)
        again = rows[short[back]]
        best_idx[again], best_score[again], bound[again] = (part[back] for part in held)
    bound[rows] = np.maximum(bound[rows], best_score[rows, -1])
    return rows[undecided]


def _merge_candidates(engine, users, user_norms, items, keys, group_max, key, rows_of, start, best_idx, best_score,
                      bound, upper=None, limit=None) -> np.ndarray:
    """Rescore the block's items that may reach the row's bound; merge them into the top n.

    keys: (len(rows_of), width) keys of the users `rows_of`; key: their threshold keys for the
    block (bound less the block's largest margin); upper: keys already merged from (key >= upper).
    Returns the rows (indexes into rows_of) left alone for having more than `limit` candidate groups.
    """
    crowded = np.empty(0, dtype=np.int64)
    n_users, width = keys.shape
    stride = width // GROUP
    n = best_idx.shape[1]
    some = np.flatnonzero(group_max.max(axis=1) >= key)  # most users have nothing in most blocks
    if some.size == 0:
        return crowded
    local, groups = np.nonzero(group_max[some] >= key[some, None])
    if limit is not None:
        over = np.bincount(local, minlength=some.size) > limit
        if over.any():
            crowded = some[over]
            local, groups = local[~over[local]], groups[~over[local]]
            if engine.keys_are_scores:
                _merge_rows(keys, crowded, key, upper, rows_of, items, start, best_idx, best_score)
                crowded = np.empty(0, dtype=np.int64)
    rows = some[local]
    cols = groups[:, None] + np.arange(GROUP) * stride  # (groups, GROUP) block columns
    values = keys.ravel().take(rows[:, None] * width + cols)
    hit = values >= key[rows][:, None]
    if upper is not None:
        hit &= values < upper[rows][:, None]
    hit = np.flatnonzero(hit)
    rows, cols, values = rows[hit // GROUP], cols.ravel()[hit], values.ravel()[hit]
    # Each item's own margin (its norm, not the block's largest) drops most near misses unscored.
    user = rows_of[rows]
    margin = engine.margin(user_norms[user], items.norms[start + cols])
    near = engine.value(values) >= bound[user] - margin
    rows, cols, user = rows[near], cols[near], user[near]
    if rows.size == 0:
        return crowded
    if engine.keys_are_scores:  # item-item: the keys are the exact scores already
        scores = engine.value(values[near]).astype(np.float32)
    else:
        scores = exact_scores(users, items.items, user, start + cols)
    users_hit, first, counts = np.unique(user, return_index=True, return_counts=True)
    at_row = np.repeat(np.arange(users_hit.size), counts)
    at_col = np.arange(user.size) - np.repeat(first, counts)
    cand_score = np.full((users_hit.size, int(counts.max())), -np.inf, dtype=np.float32)
    cand_idx = np.full(cand_score.shape, MISSING, dtype=np.int32)
    cand_score[at_row, at_col] = scores
    cand_idx[at_row, at_col] = items.order[start + cols]
    merged_idx, merged_score = select_top(
        np.concatenate([best_idx[users_hit], cand_idx], axis=1),
        np.concatenate([best_score[users_hit], cand_score], axis=1), n)
    best_idx[users_hit] = merged_idx
    best_score[users_hit] = merged_score
    return crowded


def _merge_rows(keys, local, key, upper, rows_of, items, start, best_idx, best_score) -> None:
    """Merge whole key rows (keys that are the scores) of the users `rows_of[local]` into their top n,
    taking the same keys as the candidate path: key <= keys < upper."""
    block = keys[local]
    hit = block >= key[local][:, None]
    if upper is not None:
        hit &= block < upper[local][:, None]
    cols = start + np.arange(keys.shape[1])
    idx = np.where(cols < len(items.order), items.order[np.minimum(cols, len(items.order) - 1)], MISSING)
    user = rows_of[local]
    merged_idx, merged_score = select_top(
        np.concatenate([best_idx[user], np.broadcast_to(idx.astype(np.int32), block.shape)], axis=1),
        np.concatenate([best_score[user], np.where(hit, block, -np.inf).astype(np.float32)], axis=1),
        best_idx.shape[1])
    best_idx[user] = merged_idx
    best_score[user] = merged_score


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

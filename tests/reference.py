"""Brute-force numpy references the tests compare against."""

import numpy as np


def top_n_reference(user_vectors, item_factors, n, seen_per_user):
    """Per user: list of (item_index, score) best first, ties by lower index, seen items skipped.

    Scores are the float32 rounding of the float64 dot product, the kernel's contract: items
    whose float64 scores differ by less than float32 can tell apart are ties.
    """
    result = []
    for u, vector in enumerate(user_vectors):
        scores = (item_factors.astype(np.float64) @ vector.astype(np.float64)).astype(np.float32)
        seen = set(seen_per_user[u])
        candidates = [i for i in range(len(item_factors)) if i not in seen]
        candidates.sort(key=lambda i: (-scores[i], i))
        result.append([(i, scores[i]) for i in candidates[:n]])
    return result


def cosine_reference(item_factors, k):
    """Per item: list of (other_index, cosine) best first, no self pair."""
    norms = np.linalg.norm(item_factors, axis=1)
    unit = item_factors / np.where(norms > 0, norms, 1.0)[:, None]
    sims = unit.astype(np.float64) @ unit.T.astype(np.float64)
    return top_n_reference(unit, unit, k, [[i] for i in range(len(unit))]), sims


def precision_at_k(recs: dict, held_out: dict, k: int) -> float:
    """Mean over held-out users of |top-k ∩ held-out| / k (users without recs count 0)."""
    values = [len(set(recs.get(u, [])[:k]) & items) / k for u, items in held_out.items() if items]
    return float(np.mean(values))

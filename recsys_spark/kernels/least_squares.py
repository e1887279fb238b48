"""Exact per-user weighted least squares against fixed item factors (numpy; fold-in).

Row u solves the WALS user half-step exactly:

    (w0 V^T V + sum_{i in I_u} (c_ui - w0) v_i v_i^T + lambda_u I) x_u = sum_{i in I_u} c_ui v_i
"""

from __future__ import annotations

import numpy as np


def gramian(item_factors: np.ndarray, unobserved_weight: float) -> np.ndarray:
    """w0 V^T V in float64 (rank x rank): computed once, shared by every user."""
    v = item_factors.astype(np.float64)
    return unobserved_weight * (v.T @ v)


def solve_users(indptr: np.ndarray, item_indexes: np.ndarray, conf: np.ndarray, item_factors: np.ndarray,
                gram_w0: np.ndarray, user_reg: np.ndarray, unobserved_weight: float) -> np.ndarray:
    """Factors (n_users, rank) float32 for users given as CSR rows (indptr, item_indexes, conf).

    user_reg: lambda per user (confidence.row_regularization). The systems are solved in one batched
    call: pass batches of a few thousand users (memory n_users x rank x rank x 8 bytes).
    """
    n_users, rank = len(indptr) - 1, item_factors.shape[1]
    a = np.empty((n_users, rank, rank))
    b = np.empty((n_users, rank))
    for user in range(n_users):
        at = slice(indptr[user], indptr[user + 1])
        v = item_factors[item_indexes[at]].astype(np.float64)
        c = conf[at].astype(np.float64)
        a[user] = gram_w0 + (v.T * (c - unobserved_weight)) @ v
        b[user] = v.T @ c
    a[:, np.arange(rank), np.arange(rank)] += user_reg.astype(np.float64)[:, None]
    return np.linalg.solve(a, b[:, :, None])[:, :, 0].astype(np.float32)

"""Implicit-feedback weighting shared by WALS training and fold-in (numpy only).

Observed entries get a confidence c = 1 + alpha * f(w); unobserved entries get the weight w0
(model.wals.unobserved_weight). Row regularisation grows with the row's evidence.
"""

from __future__ import annotations

import numpy as np

from recsys_spark.errors import ConfidenceError

CONFIDENCE_SCHEMES = ("linear", "log", "bm25")


def bm25_statistics(users: np.ndarray, items: np.ndarray, weights: np.ndarray, n_users: int,
                    n_items: int) -> tuple[np.ndarray, float]:
    """(item idf, mean user total weight) of the training data, as BM25 needs them.

    idf = max(0, log(n_users / (1 + number of users of the item))).
    """
    users_per_item = np.bincount(items, minlength=n_items)
    idf = np.maximum(np.log(n_users / (1.0 + users_per_item)), 0.0)
    user_total = np.bincount(users, weights=weights.astype(np.float64), minlength=n_users)
    return idf, float(user_total.mean()) if n_users else 1.0


def confidence(users: np.ndarray, items: np.ndarray, weights: np.ndarray, scheme: str, *, alpha: float,
               epsilon: float | None = None, bm25_k1: float | None = None, bm25_b: float | None = None,
               item_idf: np.ndarray | None = None, mean_user_weight: float = 1.0) -> np.ndarray:
    """Confidence c = 1 + alpha * f(w) of each observed entry (float32).

    No defaults here: the values come from model.wals (config/model.py) or a model's fold-in
    parameters. log needs `epsilon`, bm25 needs `bm25_k1`, `bm25_b` and `item_idf`.

    linear: f = w. log: f = log(1 + w / epsilon). bm25: f = w (k1 + 1) / (k1 L_u + w) idf_i with
    L_u = 1 - b + b * (user total weight / mean_user_weight); needs `item_idf` (bm25_statistics).
    `users` only matter for bm25 (they group the user totals); any dense user numbering works.
    """
    w = weights.astype(np.float64)
    if scheme == "linear":
        f = w
    elif scheme == "log":
        if epsilon is None:
            raise ValueError("log confidence needs epsilon")
        f = np.log1p(w / epsilon)
    elif scheme == "bm25":
        if item_idf is None or bm25_k1 is None or bm25_b is None:
            raise ValueError("bm25 confidence needs bm25_k1, bm25_b and item_idf (bm25_statistics)")
        user_total = np.bincount(users, weights=w)
        length_norm = (1.0 - bm25_b) + bm25_b * user_total[users] / max(mean_user_weight, 1e-12)
        f = w * (bm25_k1 + 1.0) / (bm25_k1 * length_norm + w) * item_idf[items]
    else:
        raise ValueError(f"confidence must be one of {', '.join(CONFIDENCE_SCHEMES)}; got {scheme!r}")
    conf = 1.0 + alpha * f
    if not (np.abs(conf) <= np.finfo(np.float32).max).all():
        raise ConfidenceError(f"a confidence 1 + alpha * f(weight) overflows float32 (largest weight {w.max():.3g}, "
                              f"alpha {alpha}); rescale the weights or use model.wals.confidence=log")
    return conf.astype(np.float32)


def row_regularization(counts: np.ndarray, n_other: int, reg: float, unobserved_weight: float,
                       exponent: float) -> np.ndarray:
    """lambda per row: reg * (count + w0 * n_other) ** exponent (Rendle et al., "Revisiting iALS").

    count is the row's number of observed entries; exponent 0 gives the constant reg.
    """
    scale = (counts.astype(np.float64) + unobserved_weight * n_other) ** exponent
    return (reg * scale).astype(np.float32)

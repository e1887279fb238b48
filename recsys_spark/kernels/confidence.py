"""Implicit-feedback weighting shared by WALS training and fold-in (numpy only).

Observed entries get a confidence c = 1 + alpha * f(w); unobserved entries get the weight w0
(model.wals.unobserved_weight). Row regularisation grows with the row's evidence.

`auto` is resolved once per training run by `auto_confidence` into a log transform whose
parameters come from the training weights; the resolved scheme is what models record and what
fold-in applies, so new users are weighted exactly as the training data was.
"""

from __future__ import annotations

import numpy as np

from recsys_spark.errors import ConfidenceError

CONFIDENCE_SCHEMES = ("auto", "linear", "log", "bm25")


def bm25_statistics(users: np.ndarray, items: np.ndarray, weights: np.ndarray, n_users: int,
                    n_items: int) -> tuple[np.ndarray, float]:
    """(item idf, mean user total weight) of the training data, as BM25 needs them.

    idf = max(0, log(n_users / (1 + number of users of the item))).
    """
    users_per_item = np.bincount(items, minlength=n_items)
    idf = np.maximum(np.log(n_users / (1.0 + users_per_item)), 0.0)
    user_total = np.bincount(users, weights=weights.astype(np.float64), minlength=n_users)
    return idf, float(user_total.mean()) if n_users else 1.0


def log_scaled(weights: np.ndarray, epsilon: float) -> np.ndarray:
    """log(1 + w / epsilon), finite for every finite w >= 0 and epsilon > 0 (w / epsilon may not be)."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(0.0, np.log(np.maximum(weights, 0.0)) - np.log(epsilon))


def weight_profile(weights: np.ndarray) -> str:
    """A name for the shape of the weights, for logs and the manifest (auto treats them all alike):
    constant (every weight equal, i.e. binary), scale (at most 10 distinct values within a factor
    10, e.g. ratings), heavy-tailed (largest over 100 x the median, e.g. counts, durations) or
    continuous."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or w.min() == w.max():
        return "constant"
    positive = w[w > 0]
    median = float(np.median(positive)) if positive.size else 0.0
    if np.unique(w).size <= 10 and w.min() > 0 and w.max() <= 10 * w.min():
        return "scale"
    if median > 0 and w.max() > 100 * median:
        return "heavy-tailed"
    return "continuous"


def relative_log_weights(weights: np.ndarray) -> tuple[np.ndarray, dict]:
    """log(1 + w / median positive w), divided by its mean: unit-free weights averaging 1 (every
    weight equal gives all ones). Returns them and the {"epsilon", "scale"} that produced them."""
    w = np.asarray(weights, dtype=np.float64)
    positive = w[w > 0]
    epsilon = float(np.median(positive)) if positive.size else 1.0
    f = log_scaled(w, epsilon)
    mean_f = float(f.mean()) if w.size else 0.0
    scale = 1.0 / mean_f if mean_f > 0 else 0.0
    return f * scale, {"epsilon": epsilon, "scale": scale}


def auto_confidence(weights: np.ndarray, mean_extra: float) -> dict:
    """The log transform `auto` stands for, fitted to these training weights.

    f(w) = log(1 + w / m) with m the median positive weight, so a typical interaction has f = log 2
    whatever the unit (stars, plays, seconds) and a heavy tail is compressed; alpha is set so the
    mean of alpha * f(w) over the interactions is `mean_extra` (model.wals.alpha), so confidences
    average 1 + mean_extra on every data set. With every weight equal this is exactly linear
    confidence 1 + mean_extra: binary data is weighted as before. Returns the confidence() keyword
    arguments (scheme, alpha, epsilon) plus the weights' profile.
    """
    _, fitted = relative_log_weights(weights)
    return {"scheme": "log", "alpha": mean_extra * fitted["scale"], "epsilon": fitted["epsilon"],
            "profile": weight_profile(weights)}


def confidence(users: np.ndarray, items: np.ndarray, weights: np.ndarray, scheme: str, *, alpha: float,
               epsilon: float | None = None, bm25_k1: float | None = None, bm25_b: float | None = None,
               item_idf: np.ndarray | None = None, mean_user_weight: float = 1.0) -> np.ndarray:
    """Confidence c = 1 + alpha * f(w) of each observed entry (float32).

    No defaults here: the values come from model.wals (config/model.py) or a model's fold-in
    parameters. log needs `epsilon`, bm25 needs `bm25_k1`, `bm25_b` and `item_idf`.

    linear: f = w. log: f = log(1 + w / epsilon). auto must be resolved first (auto_confidence). bm25: f = w (k1 + 1) / (k1 L_u + w) idf_i with
    L_u = 1 - b + b * (user total weight / mean_user_weight); needs `item_idf` (bm25_statistics).
    `users` only matter for bm25 (they group the user totals); any dense user numbering works.
    """
    w = weights.astype(np.float64)
    if scheme == "auto":
        raise ValueError("auto confidence is resolved by auto_confidence() before training; pass its scheme")
    if scheme == "linear":
        f = w
    elif scheme == "log":
        if epsilon is None:
            raise ValueError("log confidence needs epsilon")
        f = log_scaled(w, epsilon)
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


AUTO_UNOBSERVED_SCALE = 4.0  # w0 = min(1, 4 sqrt(density)): 1 on MovieLens-dense data, ~0.17 at 0.2% density


def auto_unobserved_weight(n_interactions: int, n_rows: int, n_cols: int) -> float:
    """The unobserved weight w0 for data of this density: min(1, 4 sqrt(interactions / (rows x cols))).

    Sparse data needs a lighter w0, or the unobserved mass (w0 x catalog per row) swamps the few
    observed entries of each row and the factors learn popularity; measured across MovieLens 100K
    (5.2% dense), generated data (1.2%) and Steam play hours (0.18%) in docs/benchmarks-models.md.
    """
    density = n_interactions / max(float(n_rows) * float(n_cols), 1.0)
    return float(min(1.0, AUTO_UNOBSERVED_SCALE * np.sqrt(density)))


def row_regularization(counts: np.ndarray, n_other: int, reg: float, unobserved_weight: float,
                       exponent: float) -> np.ndarray:
    """lambda per row: reg * (count + w0 * n_other) ** exponent (Rendle et al., "Revisiting iALS").

    count is the row's number of observed entries; exponent 0 gives the constant reg.
    """
    scale = (counts.astype(np.float64) + unobserved_weight * n_other) ** exponent
    return (reg * scale).astype(np.float32)

"""The statistics of the interaction weights that WALS's fold-in parameters need, computed with Spark
aggregations instead of numpy on collected arrays (the distributed engine, models/wals_spark.py).

Each returns what its numpy twin in kernels/confidence.py returns on the same float32 weights:
auto_confidence (the median is exact, not approximate) and bm25_statistics.
"""

from __future__ import annotations

import math

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

QUANTILE_ERROR = 1e-4  # approxQuantile's bracket around the median; the exact median is found inside it


def exact_median_positive(df: DataFrame, column: str) -> float | None:
    """np.median of the positive values of `column` (the mean of the two middle ones for an even count),
    or None when there are none: an approximate bracket, then the value counts inside it."""
    positive = df.select(column).filter(F.col(column) > 0)
    n = positive.count()
    if n == 0:
        return None
    ranks = ((n - 1) // 2, n // 2)
    lo, hi = positive.approxQuantile(column, [max(0.0, 0.5 - 3 * QUANTILE_ERROR), min(1.0, 0.5 + 3 * QUANTILE_ERROR)],
                                     QUANTILE_ERROR)
    for low, high in ((lo, hi), (-math.inf, math.inf)):  # the second only if the bracket missed
        inside = F.col(column).between(low, high) if math.isfinite(low) else F.lit(True)
        below = positive.filter(F.col(column) < low).count() if math.isfinite(low) else 0
        counts = positive.filter(inside).groupBy(column).count().orderBy(column).collect()
        values = np.array([row[0] for row in counts], np.float64)
        ends = below + np.cumsum([row[1] for row in counts])
        if len(values) and below <= ranks[0] and ends[-1] > ranks[1]:
            at = np.searchsorted(ends, np.array(ranks) + 1)  # the value whose run of ties holds the rank
            return float((values[at[0]] + values[at[1]]) / 2.0)
    raise AssertionError("the median is inside the full range")


def log_scaled(column: Column, epsilon: float) -> Column:
    """log(1 + w / epsilon) for w > 0, 0 otherwise (kernels/confidence.log_scaled), overflow-free."""
    z = F.log(column) - F.lit(math.log(epsilon))
    return F.when(column > 0, F.greatest(z, F.lit(0.0)) + F.log1p(F.exp(-F.abs(z)))).otherwise(F.lit(0.0))


def weight_profile(df: DataFrame, column: str, median: float | None) -> str:
    """kernels/confidence.weight_profile of the column: constant, scale, heavy-tailed or continuous."""
    row = df.agg(F.count(column).alias("n"), F.min(column).alias("lo"), F.max(column).alias("hi")).first()
    if row["n"] == 0 or row["lo"] == row["hi"]:
        return "constant"
    distinct = df.select(column).distinct().limit(11).count()
    if distinct <= 10 and row["lo"] > 0 and row["hi"] <= 10 * row["lo"]:
        return "scale"
    if median and median > 0 and row["hi"] > 100 * median:
        return "heavy-tailed"
    return "continuous"


def auto_confidence(df: DataFrame, column: str, mean_extra: float) -> dict:
    """kernels/confidence.auto_confidence of the column's weights: the log transform auto stands for."""
    median = exact_median_positive(df, column)
    epsilon = median if median is not None else 1.0
    mean_f = df.agg(F.avg(log_scaled(F.col(column).cast("double"), epsilon))).first()[0] or 0.0
    scale = 1.0 / mean_f if mean_f > 0 else 0.0
    return {"scheme": "log", "alpha": mean_extra * scale, "epsilon": epsilon,
            "profile": weight_profile(df, column, median)}


def bm25_statistics(df: DataFrame, user_col: str, item_col: str, weight_col: str, n_users: int,
                    n_items: int) -> tuple[np.ndarray, float]:
    """kernels/confidence.bm25_statistics: (item idf over n_items, mean user total weight)."""
    users_per_item = np.zeros(n_items, np.int64)
    for row in df.groupBy(item_col).count().collect():  # one row per item: the idf the model records anyway
        users_per_item[row[0]] = row[1]
    idf = np.maximum(np.log(n_users / (1.0 + users_per_item)), 0.0)
    total = df.agg(F.sum(F.col(weight_col).cast("double"))).first()[0] or 0.0
    return idf, float(total / n_users) if n_users else 1.0

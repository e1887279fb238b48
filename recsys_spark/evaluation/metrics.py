"""Evaluation metrics computed in Spark for every test user (see docs/metrics.md).

Inputs are a recommendations table (user, rank, item[, score]) as the scoring stage writes it and
a test table (user, item[, weight]); column names are arguments. Ranking metrics average over
the users of the test table: a test user without recommendations counts as zero, a user with
recommendations but nothing in test is not counted. Results are small lists of
(metric, k, value) rows; nothing per user is collected to the driver.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Optional, Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.data.schema import ITEM_ID, RANK, USER_ID, WEIGHT
from recsys_spark.errors import EvaluationError

log = logging.getLogger(__name__)

PREDICTION, LABEL = "prediction", "label"
POPULARITY_RANK = "popularity_rank"


class MetricRow(NamedTuple):
    metric: str
    k: Optional[int]
    value: float


def ranking_metrics(
    recs: DataFrame,
    test: DataFrame,
    ks: Sequence[int],
    user_col: str = USER_ID,
    item_col: str = ITEM_ID,
    rank_col: str = RANK,
    weight_col: str = WEIGHT,
    relevance_threshold: Optional[float] = None,
) -> list[MetricRow]:
    """precision, recall, ndcg, map, hit_rate and mrr at every k, plus test user counts.

    A test item is relevant when its weight >= relevance_threshold (every test item when None);
    test users left without relevant items are not counted. Also returns the rows
    ("test_users", None, n) and ("test_users_without_recs", None, n).
    """
    ks = _check_ks(ks)
    per_user = user_lists(recs, test, max(ks), user_col, item_col, rank_col, weight_col, relevance_threshold)
    # One aggregation for every metric and k: the means of the per-user values per_user_metric gives.
    means = [F.avg(PER_USER[name](_hits(k), k)).alias(f"{name}@{k}") for name in PER_USER for k in ks]
    empty_lists = F.sum((F.size(PREDICTION) == 0).cast("long"))
    result = per_user.agg(F.count(F.lit(1)).alias("users"), empty_lists.alias("empty"), *means).first().asDict()
    if not result["users"]:
        raise EvaluationError("the test set has no users with relevant items; check the split "
                              "and evaluate.relevance_threshold")
    empty = result["empty"] or 0
    if empty:
        log.warning("evaluate: %d of %d test users have no recommendations; they count as zero",
                    empty, result["users"])
    return [MetricRow("test_users", None, float(result["users"])),
            MetricRow("test_users_without_recs", None, float(empty)),
            *[MetricRow(name, k, float(result[f"{name}@{k}"])) for name in PER_USER for k in ks]]


def user_lists(
    recs: DataFrame,
    test: DataFrame,
    k_max: int,
    user_col: str = USER_ID,
    item_col: str = ITEM_ID,
    rank_col: str = RANK,
    weight_col: str = WEIGHT,
    relevance_threshold: Optional[float] = None,
) -> DataFrame:
    """One row per test user: prediction (top-k_max items by rank), label (relevant items).

    Both are array<double>. Only equality within a user matters,
    so items are coded per user, with no global index: the user's relevant items are 1..R and a
    recommended item that is not relevant gets R + its position. Test users without
    recommendations get an empty prediction.
    """
    relevant = test
    if relevance_threshold is not None:
        relevant = relevant.filter(F.col(weight_col) >= F.lit(float(relevance_threshold)))
    labels = relevant.groupBy(user_col).agg(F.collect_set(item_col).alias("_labels"))
    ranked = (recs.filter(F.col(rank_col) <= k_max)
              .groupBy(user_col)
              .agg(F.array_sort(F.collect_list(F.struct(F.col(rank_col).alias("r"), F.col(item_col).alias("i"))))
                   .alias("_ranked")))
    n_labels = F.size("_labels")

    def code(entry, position):
        found = F.array_position("_labels", entry["i"])
        return F.when(found > 0, found).otherwise(n_labels + position + 1).cast("double")

    prediction = F.when(F.col("_ranked").isNull(), F.array().cast("array<double>")) \
        .otherwise(F.transform("_ranked", code))
    label = F.transform("_labels", lambda _, position: (position + 1).cast("double"))
    return labels.join(ranked, user_col, "left").select(user_col, prediction.alias(PREDICTION), label.alias(LABEL))


def per_user_metric(
    recs: DataFrame,
    test: DataFrame,
    metric: str,
    k: int,
    user_col: str = USER_ID,
    item_col: str = ITEM_ID,
    rank_col: str = RANK,
    weight_col: str = WEIGHT,
    relevance_threshold: Optional[float] = None,
) -> DataFrame:
    """user, value: one ranking metric at k for each test user with relevant items, defined as
    ranking_metrics defines it (their mean is its value). For paired comparisons of two models."""
    if metric not in PER_USER:
        raise EvaluationError(f"per-user values exist for {', '.join(PER_USER)}; got {metric!r}")
    k = _check_ks([k])[0]
    per_user = user_lists(recs, test, k, user_col, item_col, rank_col, weight_col, relevance_threshold)
    return per_user.select(user_col, PER_USER[metric](_hits(k), k).alias("value"))


def _hits(k: int) -> "F.Column":
    """1.0 or 0.0 at positions 1..k of a user's prediction: whether the item there is relevant (its code
    is at most R, user_lists)."""
    return F.expr(f"transform(slice({PREDICTION}, 1, {k}), x -> IF(x <= size({LABEL}), 1D, 0D))")


def _sum(array) -> "F.Column":
    return F.aggregate(array, F.lit(0.0), lambda acc, x: acc + x)


def _ndcg(hits, k: int):
    ideal = F.transform(F.sequence(F.lit(0), F.least(F.size(LABEL), F.lit(k)) - 1), lambda i: 1.0 / F.log2(i + 2))
    return _sum(F.transform(hits, lambda h, i: h / F.log2(i + 2))) / _sum(ideal)


def _average_precision(hits, k: int):
    precisions = F.transform(hits, lambda h, i: h * _sum(F.slice(hits, 1, i + 1)) / (i + 1))
    return _sum(precisions) / F.least(F.size(LABEL), F.lit(k))


def _first_hit(hits):
    return F.array_position(hits, F.lit(1.0))


PER_USER = {  # metric -> value per user of its hits (1.0 or 0.0 at positions 1..k) and k
    "precision": lambda hits, k: _sum(hits) / k,
    "recall": lambda hits, k: _sum(hits) / F.size(LABEL),
    "ndcg": _ndcg,
    "map": _average_precision,
    "hit_rate": lambda hits, k: F.when(_sum(hits) > 0, 1.0).otherwise(0.0),
    "mrr": lambda hits, k: F.when(_first_hit(hits) > 0, 1.0 / _first_hit(hits)).otherwise(0.0),
}


def catalog_metrics(
    recs: DataFrame,
    interactions: DataFrame,
    ks: Sequence[int],
    n_catalog: int,
    item_col: str = ITEM_ID,
    rank_col: str = RANK,
) -> list[MetricRow]:
    """coverage@k (share of the catalog recommended to anyone in the top k) and novelty@k.

    novelty@k is the mean popularity rank (1 = most popular item in `interactions`) over all
    recommended (user, item) pairs at rank <= k; items absent from `interactions` rank last.
    Higher means less popular, more novel recommendations.
    """
    ks = _check_ks(ks)
    if n_catalog < 1:
        raise EvaluationError(f"n_catalog must be >= 1; got {n_catalog!r}")
    ranks = popularity_ranks(interactions, item_col)
    unranked = interactions.select(item_col).distinct().count() + 1
    top = (recs.filter(F.col(rank_col) <= max(ks)).select(item_col, rank_col)
           .join(ranks, item_col, "left")
           .withColumn(POPULARITY_RANK, F.coalesce(F.col(POPULARITY_RANK), F.lit(unranked))))
    aggregates = []
    for k in ks:
        within = F.col(rank_col) <= k
        aggregates.append(F.count_distinct(F.when(within, F.col(item_col))).alias(f"coverage@{k}"))
        aggregates.append(F.avg(F.when(within, F.col(POPULARITY_RANK))).alias(f"novelty@{k}"))
    result = top.agg(*aggregates).first().asDict()
    rows = [MetricRow("coverage", k, result[f"coverage@{k}"] / n_catalog) for k in ks]
    for k in ks:
        novelty = result[f"novelty@{k}"]
        rows.append(MetricRow("novelty", k, float(novelty) if novelty is not None else float("nan")))
    return rows


def popularity_ranks(interactions: DataFrame, item_col: str = ITEM_ID) -> DataFrame:
    """item, popularity_rank: 1 for the item with most interactions, ties by item id.

    An item's rank is the number of items with more interactions (from the small histogram of
    counts, collected) plus its place among the items with as many, by id: a window partitioned
    by count, so no partition holds more than the items tied on one count (the long tail's).
    """
    counts = interactions.groupBy(item_col).agg(F.count(F.lit(1)).alias("_n"))
    ahead, offsets = 0, []
    for row in sorted(counts.groupBy("_n").count().collect(), key=lambda r: -r["_n"]):
        offsets.append((row["_n"], ahead))
        ahead += row["count"]
    offset_df = interactions.sparkSession.createDataFrame(offsets or [(0, 0)], "_n long, _ahead long")
    within = F.row_number().over(Window.partitionBy("_n").orderBy(item_col))
    return (counts.join(F.broadcast(offset_df), "_n")
            .select(item_col, (F.col("_ahead") + within).cast("int").alias(POPULARITY_RANK)))


def rating_metrics(
    predictions: DataFrame,
    test: DataFrame,
    user_col: str = USER_ID,
    item_col: str = ITEM_ID,
    prediction_col: str = PREDICTION,
    weight_col: str = WEIGHT,
) -> list[MetricRow]:
    """rmse and mae of predicted vs actual weight over the test pairs that have a prediction.

    Also returns ("rated_pairs", None, n) and ("unpredicted_pairs", None, n) for test pairs
    without a prediction (unknown user or item), which are left out of rmse and mae.
    """
    pairs = (test.select(user_col, item_col, F.col(weight_col).alias("_actual"))
             .join(predictions.select(user_col, item_col, F.col(prediction_col).alias("_pred")),
                   [user_col, item_col], "left"))
    error = F.col("_pred") - F.col("_actual")
    result = pairs.agg(
        F.sqrt(F.avg(error * error)).alias("rmse"), F.avg(F.abs(error)).alias("mae"),
        F.count("_pred").alias("rated"), F.count(F.lit(1)).alias("pairs")).first()
    if not result["rated"]:
        raise EvaluationError("no test pair has a prediction; check that the model knows the test users and items")
    return [MetricRow("rmse", None, float(result["rmse"])), MetricRow("mae", None, float(result["mae"])),
            MetricRow("rated_pairs", None, float(result["rated"])),
            MetricRow("unpredicted_pairs", None, float(result["pairs"] - result["rated"]))]


def _check_ks(ks: Sequence[int]) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise EvaluationError(f"cut-offs k must be positive integers; got {list(ks)!r}")
    return ks

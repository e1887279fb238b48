"""Audit a staged run before it is published, in Spark (aggregations; nothing is collected
but a handful of counts), and the quality gate against the last published run (a metric drop,
publish.max_metric_drop; list churn against the previous published date, publish.max_churn).

user_recs: every served user has exactly min(N, items they may get) rows (the rules decide which
items and users: rules.item_pools, rules.served_users), ranks 1..k, unique (user, item), no seen
or excluded item, no item outside the allowed set, `model` rows before `fallback` rows, finite
scores non-increasing with rank within each source, fallback scores (popularity) in [0, 1].
item_similar: every item has min(K, items - 1) neighbours, ranks 1..k, no self pair, unique
neighbours, cosine finite and in [-1, 1], non-increasing with rank.
"""

from __future__ import annotations

import logging
import math

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.data.schema import ITEM_ID, ITEM_INDEX, RANK, SCORE, SIMILAR_ITEM_ID, SOURCE, USER_ID, USER_INDEX
from recsys_spark.errors import AuditError, QualityGateError
from recsys_spark.serving.rules import SOURCE_FALLBACK, SOURCE_MODEL

log = logging.getLogger(__name__)

EXPECTED = "expected"


def _count_if(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def _mark(table: DataFrame, other: DataFrame, keys: list, flag: str) -> DataFrame:
    """`table` with column `flag` true on the rows whose `keys` are in `other`, null on the others:
    a left join on other's distinct keys, so every row of `table` stays once (null keys match nothing,
    as in a semi or anti join)."""
    return table.join(other.select(*keys).distinct().withColumn(flag, F.lit(True)), keys, "left")


def _last(result: dict, names: dict) -> dict:
    """`result` with the counts of `names` moved to its end (where the manifest has always had them)."""
    for name in names:
        result[name] = result.pop(name)
    return result


def _audit_topn(table: DataFrame, key: str, item: str, expected: DataFrame, row_checks: dict,
                key_checks: dict | None = None, segment: tuple = ()) -> dict:
    """Violation counts of a long top-k table (key, rank, item, score) against `expected` (key, expected).

    `row_checks` maps a check name to a boolean Column over table rows that marks a violation;
    `key_checks` a name to a boolean Column over per-key aggregates (`_min_rank`, ...) and
    `segment` names columns within which scores must not increase with rank.
    """
    # The window is over the key alone (a segment is compared with its own previous row), so the
    # aggregation by key below reuses its partitioning instead of shuffling the table again.
    window = Window.partitionBy(key).orderBy(*segment, RANK)
    same_segment = F.lit(True)
    for column in segment:
        same_segment = same_segment & (F.lag(column).over(window) == F.col(column))
    flagged = table.withColumn("_prev", F.when(same_segment, F.lag(SCORE).over(window)))
    flags = {"non_finite_score": F.isnan(SCORE) | (F.abs(SCORE) == math.inf) | F.col(SCORE).isNull(),
             "score_increases_with_rank": F.col(SCORE) > F.col("_prev"), **row_checks}
    per_key = flagged.groupBy(key).agg(
        F.count(F.lit(1)).alias("_rows"), F.min(RANK).alias("_min_rank"), F.max(RANK).alias("_max_rank"),
        F.size(F.collect_set(RANK)).alias("_ranks"), F.size(F.collect_set(item)).alias("_items"),
        *[_count_if(flag).alias(name) for name, flag in flags.items()],
        *[agg.alias(name) for name, agg in (key_checks or {}).get("aggregates", {}).items()])
    per_key_flags = (key_checks or {}).get("flags", {})
    joined = per_key.join(expected, key, "full_outer")
    rows, want = F.coalesce(F.col("_rows"), F.lit(0)), F.coalesce(F.col(EXPECTED), F.lit(0))
    result = joined.agg(
        _count_if(F.col(EXPECTED).isNull()).alias("rows_for_unknown_keys"),
        _count_if(F.col(EXPECTED).isNotNull() & (rows != want)).alias("wrong_row_count"),
        _count_if((rows > 0) & ((F.col("_min_rank") != 1) | (F.col("_max_rank") != rows) | (F.col("_ranks") != rows)))
        .alias("ranks_not_1_to_k"),
        _count_if(F.col("_items") != rows).alias("duplicate_items"),
        *[F.coalesce(F.sum(name), F.lit(0)).alias(name) for name in flags],
        *[_count_if(flag).alias(name) for name, flag in per_key_flags.items()],
        F.coalesce(F.sum("_rows"), F.lit(0)).alias("_total_rows"),
        F.count(F.col(EXPECTED)).alias("_expected_keys"),
    ).first().asDict()
    return {name: int(value) for name, value in result.items()}


def expected_list_lengths(users: DataFrame, items: DataFrame, blocked: DataFrame, top_n: int) -> DataFrame:
    """user_id, expected: how many rows each served user must get, min(N, pool - blocked in pool).

    users: user_index, user_id, has_factors (rules.served_users); items: item_index, model_pool,
    fallback_pool (rules.item_pools); blocked: distinct user_index, item_index pairs a user must
    not get (seen and per-user exclusions). Users with factors draw from the model pool, others
    from the fallback pool.
    """
    # The pool sizes join as a one-row table: part of the audit's query, not a Spark action of their own.
    pools = items.agg(_count_if(F.col("model_pool")).alias("_m"), _count_if(F.col("fallback_pool")).alias("_f"))
    per_user = (blocked.join(items, ITEM_INDEX).groupBy(USER_INDEX)
                .agg(_count_if(F.col("model_pool")).alias("_bm"), _count_if(F.col("fallback_pool")).alias("_bf")))
    free = F.when(F.col("has_factors"), F.coalesce(F.col("_m"), F.lit(0)) - F.coalesce(F.col("_bm"), F.lit(0))) \
        .otherwise(F.coalesce(F.col("_f"), F.lit(0)) - F.coalesce(F.col("_bf"), F.lit(0)))
    return (users.join(per_user, USER_INDEX, "left").crossJoin(pools)
            .select(USER_ID, F.greatest(F.least(F.lit(top_n), free), F.lit(0)).alias(EXPECTED)))


def audit_recs(recs: DataFrame, expected: DataFrame, seen: DataFrame, *, excluded: DataFrame | None = None,
               allowed_items: DataFrame | None = None) -> dict:
    """Violation counts (and `_total_rows`, `_expected_keys`, `_fallback_rows`) of user_recs.

    recs: user_id, rank, item_id, score, source. expected: user_id, expected (expected_list_lengths).
    seen: user_id, item_id pairs the users interacted with; excluded: pairs the rules forbid;
    allowed_items: item_id of every item that may be recommended (None: any item).
    """
    is_fallback = F.col(SOURCE) == SOURCE_FALLBACK
    row_checks = {"unknown_source": ~F.col(SOURCE).isin(SOURCE_MODEL, SOURCE_FALLBACK) | F.col(SOURCE).isNull(),
                  "fallback_score_out_of_range": is_fallback & ((F.col(SCORE) < 0.0) | (F.col(SCORE) > 1.0)),
                  "_fallback_rows": is_fallback}  # a count, not a violation
    key_checks = {
        "aggregates": {"_last_model": F.max(F.when(F.col(SOURCE) == SOURCE_MODEL, F.col(RANK))),
                       "_first_fallback": F.min(F.when(is_fallback, F.col(RANK)))},
        "flags": {"fallback_before_model": F.col("_first_fallback") < F.col("_last_model")},
    }
    # Rows matching (or, for the allowed items, missing from) another table: marked by a left join
    # on its distinct keys and counted in the same aggregation as the checks above.
    pair = [USER_ID, ITEM_ID]
    recs, found = _mark(recs, seen, pair, "_seen"), {"seen_item_recommended": F.col("_seen").isNotNull()}
    if excluded is not None:
        recs = _mark(recs, excluded, pair, "_excluded")
        found["excluded_item_recommended"] = F.col("_excluded").isNotNull()
    if allowed_items is not None:
        recs = _mark(recs, allowed_items, [ITEM_ID], "_allowed")
        found["item_not_allowed"] = F.col("_allowed").isNull()
    result = _audit_topn(recs, USER_ID, ITEM_ID, expected, {**row_checks, **found}, key_checks, segment=(SOURCE,))
    return _last(result, found)


def audit_similar(similar: DataFrame, item_ids: DataFrame, top_k: int, neighbours: DataFrame | None = None) -> dict:
    """Violation counts (and `_total_rows`, `_expected_keys`) of item_similar.

    similar: item_id, rank, similar_item_id, score. item_ids: item_id of every item with factors.
    neighbours: item_id of the items the rules allow as neighbours (None: every item).
    """
    pool = item_ids if neighbours is None else neighbours
    n_pool = pool.agg(F.count(F.lit(1)).alias("_pool"))  # one row, joined: no Spark action of its own
    is_pool = pool.select(ITEM_ID, F.lit(1).alias("_in_pool"))
    free = F.col("_pool") - F.coalesce("_in_pool", F.lit(0))
    expected = (item_ids.join(is_pool, ITEM_ID, "left").crossJoin(n_pool)
                .select(ITEM_ID, F.greatest(F.least(F.lit(top_k), free), F.lit(0)).alias(EXPECTED)))
    checks = {"self_pair": F.col(ITEM_ID) == F.col(SIMILAR_ITEM_ID),
              "cosine_out_of_range": (F.col(SCORE) < -1.0) | (F.col(SCORE) > 1.0)}
    found = {}
    if neighbours is not None:
        similar = _mark(similar, neighbours.withColumnRenamed(ITEM_ID, SIMILAR_ITEM_ID), [SIMILAR_ITEM_ID], "_allowed")
        found["item_not_allowed"] = F.col("_allowed").isNull()
    return _last(_audit_topn(similar, ITEM_ID, SIMILAR_ITEM_ID, expected, {**checks, **found}), found)


def violations(results: dict) -> dict:
    """{table.check: count} of the failed checks in {table: audit result}."""
    return {f"{table}.{check}": count for table, result in results.items()
            for check, count in result.items() if count and not check.startswith("_")}


def require_clean(results: dict) -> None:
    """Raise AuditError naming every failed check."""
    failed = violations(results)
    if failed:
        detail = ", ".join(f"{name}={count}" for name, count in sorted(failed.items()))
        raise AuditError(f"the staged run failed its audit ({detail}); nothing was published, "
                         "the previous run of this date (if any) stays visible")
    log.info("audit passed: %s", {t: r.get("_total_rows") for t, r in results.items()})


def quality_gate(metrics: dict | None, previous: dict | None, model_kind: str, metric: str,
                 max_drop: float) -> dict:
    """Compare `metric` of this run's model with the last published run's; raise QualityGateError
    when it fell by more than `max_drop` (a fraction). `metrics`/`previous` are manifest metrics
    {model: {metric@k: value}}. Returns what was compared (for the manifest)."""
    current = (metrics or {}).get(model_kind, {}).get(metric)
    before = (previous or {}).get(model_kind, {}).get(metric)
    outcome = {"metric": metric, "model": model_kind, "value": current, "previous": before,
               "max_drop": max_drop, "passed": True}
    if current is None or before is None:
        outcome["skipped"] = "no metric to compare (evaluation off, or no earlier published run with it)"
        return outcome
    floor = before * (1.0 - max_drop)
    if not math.isfinite(current) or current < floor:
        raise QualityGateError(
            f"{model_kind} {metric} is {current:.4f}, below {floor:.4f} (the last published run's {before:.4f} "
            f"minus {max_drop:.0%}); nothing was published: check the input and model, or raise "
            f"publish.max_metric_drop to accept it")
    return outcome


def churn_gate(stability: dict | None, max_churn: float | None) -> dict:
    """Refuse the run (QualityGateError) when user_recs churn against the previous published date
    (stability["user_recs"]["churn"], 1 - mean top-N overlap) passes `max_churn` (None: off).
    Returns what was compared (for the manifest)."""
    recs = (stability or {}).get("user_recs") or {}
    churn = recs.get("churn")
    outcome = {"churn": churn, "max_churn": max_churn, "compared_with": (stability or {}).get("compared_with"),
               "passed": True}
    if max_churn is None:
        outcome["skipped"] = "publish.max_churn is not set"
        return outcome
    if churn is None:
        outcome["skipped"] = "no churn to compare (no earlier published date, or no user in both dates' user_recs)"
        return outcome
    if churn > max_churn:
        raise QualityGateError(
            f"user_recs churn against {outcome['compared_with']} is {churn:.4f} (mean top-N overlap "
            f"{1.0 - churn:.4f}), above publish.max_churn {max_churn:.4f}; nothing was published: check the "
            "input and model, or raise publish.max_churn to accept it")
    return outcome

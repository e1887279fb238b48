"""Prepare interactions: validate, clean, aggregate, filter and index ids.

Input: a DataFrame with columns user_id, item_id, weight, ts (as read; CSV gives strings).
Output: PreparedData with dense int32 indexes assigned in id order, the id maps, and counts of
every row that was rejected (by reason), merged or filtered, so nothing is dropped silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config import PrepareConfig
from recsys_spark.data.schema import ITEM_ID, ITEM_INDEX, MAX_INDEX, TS, USER_ID, USER_INDEX, WEIGHT
from recsys_spark.errors import PrepareError

log = logging.getLogger(__name__)

REJECT_REASONS = (
    "null_user_id", "null_item_id", "null_weight", "unparseable_weight",
    "non_finite_weight", "weight_out_of_range", "negative_weight", "unparseable_ts",
)
_CANONICAL_INT = r"^-?(0|[1-9][0-9]{0,17})$"
MAX_WEIGHT = float(np.finfo(np.float32).max)  # trainers and scores are float32


@dataclass
class PreparedData:
    interactions: DataFrame  # user_index int, item_index int, weight double, ts long
    user_ids: DataFrame  # user_index int, user_id
    item_ids: DataFrame  # item_index int, item_id
    n_users: int
    n_items: int
    stats: dict = field(default_factory=dict)
    rejected_rows: Optional[DataFrame] = None  # user_id, item_id, weight, ts as read + reason (for quarantine)


def prepare(raw: DataFrame, cfg: PrepareConfig, id_type: str = "auto") -> PreparedData:
    """Validate, aggregate duplicates, filter rare users/items and index ids."""
    started = time.time()
    typed = cast_columns(raw, id_type)
    tagged = typed.withColumn("_reason", reject_reason(typed)).persist()
    counts = {row["_reason"]: row["count"] for row in tagged.groupBy("_reason").count().collect()}
    rows_read = sum(counts.values())
    rejected = {reason: int(counts.get(reason, 0)) for reason in REJECT_REASONS}
    valid_rows = int(counts.get(None, 0))
    for reason, count in rejected.items():
        if count:
            log.warning("prepare: rejected %d rows: %s", count, reason)
    valid = tagged.filter(F.col("_reason").isNull()).select(USER_ID, ITEM_ID, "_weight", "_ts")
    aggregated = valid.groupBy(USER_ID, ITEM_ID).agg(
        F.sum("_weight").alias(WEIGHT), F.max("_ts").alias(TS))
    filtering = cfg.min_user_interactions > 1 or cfg.min_item_interactions > 1
    if filtering:
        aggregated = aggregated.persist()
    filtered = filter_min_interactions(aggregated, cfg.min_user_interactions, cfg.min_item_interactions).persist()
    summary = filtered.agg(F.count(F.lit(1)).alias("n"), F.max(WEIGHT).alias("max_weight")).first()
    n_pairs = summary["n"]
    n_aggregated = aggregated.count() if filtering else n_pairs
    if summary["max_weight"] is not None and not summary["max_weight"] <= MAX_WEIGHT:
        raise PrepareError(f"a (user, item) weight summed over its duplicate rows is {summary['max_weight']}, "
                           f"beyond the float32 range ({MAX_WEIGHT:.3g}) the trainers compute in; "
                           "rescale the weight column (e.g. log or cap it) before the run")
    if n_pairs == 0:
        raise PrepareError(f"no valid interactions left to train on: {rows_read} rows read, "
                           f"{sum(rejected.values())} rejected ({_nonzero(rejected)}), {valid_rows} valid before filtering")
    user_ids, n_users = dense_index(filtered.select(USER_ID), USER_ID, USER_INDEX)
    item_ids, n_items = dense_index(filtered.select(ITEM_ID), ITEM_ID, ITEM_INDEX)
    interactions = (filtered.join(item_ids, ITEM_ID)
                    .join(user_ids, USER_ID)
                    .select(USER_INDEX, ITEM_INDEX, WEIGHT, TS))
    tagged.unpersist()
    if filtering:
        aggregated.unpersist()
    stats = {
        "rows_read": rows_read,
        "rows_valid": valid_rows,
        "rejected": rejected,
        "duplicates_merged": valid_rows - n_aggregated,
        "filtered_interactions": n_aggregated - n_pairs,
        "interactions": n_pairs,
        "users": n_users,
        "items": n_items,
    }
    log.info("prepare: %d rows read, %d interactions, %d users, %d items in %.1fs",
             rows_read, n_pairs, n_users, n_items, time.time() - started)
    rejected_rows = tagged.filter(F.col("_reason").isNotNull()).select(
        USER_ID, ITEM_ID, WEIGHT, TS, F.col("_reason").alias("reason"))
    return PreparedData(interactions, user_ids, item_ids, n_users, n_items, stats, rejected_rows)


def _nonzero(counts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items() if v) or "none"


def cast_columns(raw: DataFrame, id_type: str = "auto") -> DataFrame:
    """Add typed `_weight` (double) and `_ts` (long) and settle the id types.

    String ids from text files become long only when every one is a canonical integer
    (id_type auto) or when asked (long); otherwise they stay strings, value for value.
    """
    df = raw.withColumn("_weight", F.col(WEIGHT).try_cast(T.DoubleType())) \
            .withColumn("_ts", F.col(TS).try_cast(T.LongType()))
    for col in (USER_ID, ITEM_ID):
        if isinstance(df.schema[col].dataType, T.StringType) and id_type != "string":
            if id_type == "long" or _all_canonical_ints(df, col):
                df = df.withColumn(col, F.col(col).try_cast(T.LongType()))
    return df


def _all_canonical_ints(df: DataFrame, col: str) -> bool:
    bad = df.filter(F.col(col).isNotNull() & ~F.col(col).rlike(_CANONICAL_INT)).limit(1).count()
    return bad == 0


def reject_reason(df: DataFrame):
    """A column naming why a row is rejected, or null for a valid row."""
    weight, raw_weight = F.col("_weight"), F.col(WEIGHT)
    return (F.when(F.col(USER_ID).isNull(), "null_user_id")
            .when(F.col(ITEM_ID).isNull(), "null_item_id")
            .when(raw_weight.isNull(), "null_weight")
            .when(weight.isNull(), "unparseable_weight")
            .when(F.isnan(weight) | (F.abs(weight) == float("inf")), "non_finite_weight")
            .when(F.abs(weight) > MAX_WEIGHT, "weight_out_of_range")  # finite, but not as float32
            .when(weight < 0, "negative_weight")
            .when(F.col(TS).isNotNull() & F.col("_ts").isNull(), "unparseable_ts"))


def filter_min_interactions(df: DataFrame, min_user: int, min_item: int) -> DataFrame:
    """Keep users with >= min_user items, then items with >= min_item users (one pass each)."""
    if min_user > 1:
        keep = df.groupBy(USER_ID).count().filter(F.col("count") >= min_user).select(USER_ID)
        df = df.join(keep, USER_ID, "left_semi")
    if min_item > 1:
        keep = df.groupBy(ITEM_ID).count().filter(F.col("count") >= min_item).select(ITEM_ID)
        df = df.join(keep, ITEM_ID, "left_semi")
    return df


def dense_index(ids: DataFrame, id_col: str, index_col: str) -> tuple[DataFrame, int]:
    """Map each distinct id to 0..n-1 in id order, without moving the ids to one partition.

    Returns the map (index_col int, id_col) and the number of ids. A row's index is its partition's
    offset plus its place in the partition; the offsets are a literal array in the plan (not a joined
    table, whose broadcast would cost every reader of the map a Spark job of its own).
    """
    ordered = (ids.select(id_col).distinct().orderBy(id_col)
               .withColumn("_part", F.spark_partition_id())
               .withColumn("_mid", F.monotonically_increasing_id())
               .persist())
    sizes = dict((r["_part"], r["count"]) for r in ordered.groupBy("_part").count().collect())
    total = sum(sizes.values())
    if total > MAX_INDEX:
        raise PrepareError(f"{total} distinct values of {id_col} exceed the int32 index limit of {MAX_INDEX}")
    starts = np.concatenate([[0], np.cumsum([sizes.get(part, 0) for part in range(max(sizes, default=0) + 1)])])
    offsets = F.array(*(F.lit(int(start)).cast(T.LongType()) for start in starts[:-1]))
    offset = F.element_at(offsets, F.col("_part") + 1)  # every partition with rows has its entry
    index = (offset + F.col("_mid") - F.shiftleft(F.col("_part").cast("long"), 33)).cast(T.IntegerType())
    return ordered.select(index.alias(index_col), id_col), total


def item_popularity(prepared: PreparedData):
    """DataFrame item_index, popularity (share of users who interacted with the item)."""
    counts = prepared.interactions.groupBy(ITEM_INDEX).agg(F.count(F.lit(1)).alias("users"))
    return counts.select(ITEM_INDEX, (F.col("users") / F.lit(float(max(prepared.n_users, 1)))).alias("popularity"))

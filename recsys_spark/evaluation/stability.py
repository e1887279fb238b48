"""Stability of published lists from one date to the next: how much of each top-N stayed.

Pure DataFrame in, a handful of numbers out (two Spark aggregations, one row each reaches the
driver); storage/ and app/ read the tables. Definitions (also in docs/publishing.md, Manifest):

- Both tables are cut to rank <= top_n (this run's score.top_n), over *all* rows, model and
  fallback alike: the list a consumer shows is the whole list, so a user moved from the popular
  fallback to model rows sees a changed list and that counts as churn.
- overlap of a key (a user of user_recs, an item of item_similar) present in both tables:
  |new ∩ old| / min(|new|, |old|). The shorter list is the denominator so that a list that only
  grew or shrank (more or fewer items left to recommend) but kept what it could scores 1:
  the share measures replaced entries, not length changes.
- churn = 1 - mean overlap; percentiles are exact (Spark's `percentile`, linear interpolation as
  pandas' default quantile): an overlap takes at most top_n * top_n distinct values, so the exact
  aggregate stays small.
- new / dropped keys: keys with a list today and none on the earlier date, and the reverse.
- new / dropped entries: distinct recommended items (user_recs.item_id, item_similar.similar_item_id)
  found in one table and not the other: the catalog that reached users, which the two published
  tables hold whatever model made them (the earlier model may be gone with retention).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys_spark.data.schema import ITEM_ID, RANK, SIMILAR_ITEM_ID, USER_ID

PERCENTILES = (0.1, 0.5, 0.9)


def _count_if(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def list_stability(new: DataFrame, old: DataFrame, key: str, entry: str, top_n: int) -> dict:
    """Overlap of the top-`top_n` lists of `key` between two long tables (key, rank, entry, ...).

    Returns {compared, overlap: {mean, p10, p50, p90}, churn, new_keys, dropped_keys, new_entries,
    dropped_entries}; overlap values and churn are None when no key is in both tables.
    """
    # Ids compared as text: a date whose ids were integers and one whose ids are strings still compare.
    new_top = new.filter(F.col(RANK) <= top_n).select(F.col(key).cast("string"), F.col(entry).cast("string"))
    old_top = old.filter(F.col(RANK) <= top_n).select(F.col(key).cast("string"), F.col(entry).cast("string"))
    lengths = (new_top.groupBy(key).agg(F.count(F.lit(1)).alias("_new"))
               .join(old_top.groupBy(key).agg(F.count(F.lit(1)).alias("_old")), key, "full_outer"))
    common = new_top.join(old_top, [key, entry]).groupBy(key).agg(F.count(F.lit(1)).alias("_common"))
    in_both = F.col("_new").isNotNull() & F.col("_old").isNotNull()  # (least() skips nulls, so say it)
    overlap = F.when(in_both, F.coalesce(F.col("_common"), F.lit(0)) / F.least(F.col("_new"), F.col("_old")))
    percentiles = ", ".join(str(p) for p in PERCENTILES)
    keys = (lengths.join(common, key, "left").withColumn("_overlap", overlap)
            .agg(F.count("_overlap").alias("compared"), F.avg("_overlap").alias("mean"),
                 F.expr(f"percentile(_overlap, array({percentiles}))").alias("_percentiles"),
                 _count_if(F.col("_old").isNull()).alias("new_keys"),
                 _count_if(F.col("_new").isNull()).alias("dropped_keys"))
            .first())
    entries = (new_top.select(entry).distinct().withColumn("_in_new", F.lit(True))
               .join(old_top.select(entry).distinct().withColumn("_in_old", F.lit(True)), entry, "full_outer")
               .agg(_count_if(F.col("_in_old").isNull()).alias("new_entries"),
                    _count_if(F.col("_in_new").isNull()).alias("dropped_entries"))
               .first())
    mean = None if keys["mean"] is None else float(keys["mean"])
    values = keys["_percentiles"] or [None] * len(PERCENTILES)
    return {
        "compared": int(keys["compared"]),
        "overlap": {"mean": mean, **{f"p{round(p * 100)}": None if v is None else float(v)
                                     for p, v in zip(PERCENTILES, values)}},
        "churn": None if mean is None else 1.0 - mean,
        "new_keys": int(keys["new_keys"] or 0), "dropped_keys": int(keys["dropped_keys"] or 0),
        "new_entries": int(entries["new_entries"] or 0), "dropped_entries": int(entries["dropped_entries"] or 0),
    }


def user_recs_stability(new: DataFrame, old: DataFrame, top_n: int) -> dict:
    """list_stability of user_recs with its keys named: users compared, new/dropped users and items."""
    s = list_stability(new, old, USER_ID, ITEM_ID, top_n)
    return {"users_compared": s["compared"], "overlap": s["overlap"], "churn": s["churn"],
            "new_users": s["new_keys"], "dropped_users": s["dropped_keys"],
            "new_items": s["new_entries"], "dropped_items": s["dropped_entries"]}


def item_similar_stability(new: DataFrame, old: DataFrame, top_k: int) -> dict:
    """list_stability of item_similar: items compared, new/dropped items (with neighbours), and
    new/dropped neighbours (items appearing as someone's neighbour)."""
    s = list_stability(new, old, ITEM_ID, SIMILAR_ITEM_ID, top_k)
    return {"items_compared": s["compared"], "overlap": s["overlap"], "churn": s["churn"],
            "new_items": s["new_keys"], "dropped_items": s["dropped_keys"],
            "new_neighbours": s["new_entries"], "dropped_neighbours": s["dropped_entries"]}

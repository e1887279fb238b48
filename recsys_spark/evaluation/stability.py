"""Stability of published lists from one date to the next: how much of each top-N stayed.

Pure DataFrame in, a handful of numbers out (one Spark action per table, one row reaches the
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
    # One pass: both tables' (key, entry) pairs in one shuffle, each marked with the dates it is in;
    # the per-key counts and the per-entry presence both aggregate those pairs, in one Spark action.
    def top(table: DataFrame, in_new: bool) -> DataFrame:
        # Ids compared as text: a date whose ids were integers and one whose ids are strings still compare.
        return table.filter(F.col(RANK) <= top_n).select(
            F.col(key).cast("string").alias(key), F.col(entry).cast("string").alias(entry),
            F.lit(int(in_new)).alias("_in_new"), F.lit(int(not in_new)).alias("_in_old"))

    pairs = (top(new, True).unionByName(top(old, False)).groupBy(key, entry)
             .agg(F.max("_in_new").alias("_in_new"), F.max("_in_old").alias("_in_old")))
    per_key = pairs.groupBy(key).agg(F.sum("_in_new").alias("_new"), F.sum("_in_old").alias("_old"),
                                     F.sum(F.col("_in_new") * F.col("_in_old")).alias("_common"))
    in_both = (F.col("_new") > 0) & (F.col("_old") > 0)
    overlap = F.when(in_both, F.col("_common") / F.least(F.col("_new"), F.col("_old")))
    percentiles = ", ".join(str(p) for p in PERCENTILES)
    keys = (per_key.withColumn("_overlap", overlap)
            .agg(F.count("_overlap").alias("compared"), F.avg("_overlap").alias("mean"),
                 F.expr(f"percentile(_overlap, array({percentiles}))").alias("_percentiles"),
                 _count_if(F.col("_old") == 0).alias("new_keys"), _count_if(F.col("_new") == 0).alias("dropped_keys")))
    entries = (pairs.groupBy(entry).agg(F.max("_in_new").alias("_in_new"), F.max("_in_old").alias("_in_old"))
               .agg(_count_if(F.col("_in_old") == 0).alias("new_entries"),
                    _count_if(F.col("_in_new") == 0).alias("dropped_entries")))
    row = keys.crossJoin(entries).first()
    mean = None if row["mean"] is None else float(row["mean"])
    values = row["_percentiles"] or [None] * len(PERCENTILES)
    return {
        "compared": int(row["compared"]),
        "overlap": {"mean": mean, **{f"p{round(p * 100)}": None if v is None else float(v)
                                     for p, v in zip(PERCENTILES, values)}},
        "churn": None if mean is None else 1.0 - mean,
        "new_keys": int(row["new_keys"] or 0), "dropped_keys": int(row["dropped_keys"] or 0),
        "new_entries": int(row["new_entries"] or 0), "dropped_entries": int(row["dropped_entries"] or 0),
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

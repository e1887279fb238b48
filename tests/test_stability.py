"""Churn between two dates' lists (evaluation/stability.py) against hand-computed and pandas values."""

import numpy as np
import pandas as pd
import pytest

from recsys_spark.evaluation.stability import item_similar_stability, user_recs_stability

RECS_SCHEMA = "user_id string, rank int, item_id string, score double, source string"


def _rows(lists: dict) -> list:
    return [(user, rank, item, 1.0 / rank, "model") for user, items in lists.items()
            for rank, item in enumerate(items, start=1)]


def pandas_stability(new: pd.DataFrame, old: pd.DataFrame, key: str, entry: str, top_n: int) -> dict:
    """The definition of docs/publishing.md, brute force in pandas."""
    new, old = new[new["rank"] <= top_n], old[old["rank"] <= top_n]
    new_lists = new.groupby(key)[entry].apply(set).to_dict()
    old_lists = old.groupby(key)[entry].apply(set).to_dict()
    both = sorted(set(new_lists) & set(old_lists))
    overlaps = pd.Series([len(new_lists[k] & old_lists[k]) / min(len(new_lists[k]), len(old_lists[k]))
                          for k in both], dtype=float)
    mean = float(overlaps.mean()) if both else None
    return {"compared": len(both),
            "overlap": {"mean": mean, **{f"p{int(q * 100)}": float(overlaps.quantile(q)) if both else None
                                         for q in (0.1, 0.5, 0.9)}},
            "churn": None if mean is None else 1 - mean,
            "new_keys": len(set(new_lists) - set(old_lists)), "dropped_keys": len(set(old_lists) - set(new_lists)),
            "new_entries": len(set(new[entry]) - set(old[entry])),
            "dropped_entries": len(set(old[entry]) - set(new[entry]))}


def flat(numbers: dict, prefix: str = "") -> dict:
    """A nested dict of numbers as one level, for pytest.approx (which does not nest)."""
    out = {}
    for name, value in numbers.items():
        out.update(flat(value, f"{prefix}{name}.") if isinstance(value, dict) else {f"{prefix}{name}": value})
    return out


def _as_user_recs(s: dict) -> dict:
    return {"users_compared": s["compared"], "overlap": s["overlap"], "churn": s["churn"],
            "new_users": s["new_keys"], "dropped_users": s["dropped_keys"],
            "new_items": s["new_entries"], "dropped_items": s["dropped_entries"]}


def test_hand_made_lists(spark):
    old = {"stays": ["a", "b", "c"], "half": ["a", "b", "c", "d"], "gone": ["a", "e"], "shorter": ["x"],
           "moved": ["a", "b", "c", "d"]}
    new = {"stays": ["c", "a", "b"], "half": ["a", "f", "c", "g"], "shorter": ["x", "a", "b"], "fresh": ["a"],
           "moved": ["h", "i", "j", "k"]}
    got = user_recs_stability(spark.createDataFrame(_rows(new), RECS_SCHEMA),
                              spark.createDataFrame(_rows(old), RECS_SCHEMA), top_n=4)
    # stays 3/3, half 2/4, shorter 1/min(3,1), moved 0/4: overlaps 1, 0.5, 1, 0.
    assert got["users_compared"] == 4
    assert got["overlap"]["mean"] == pytest.approx(0.625)
    assert got["churn"] == pytest.approx(0.375)
    assert got["overlap"]["p50"] == pytest.approx(0.75)  # between 0.5 and 1, as pandas interpolates
    assert (got["new_users"], got["dropped_users"]) == (1, 1)  # fresh; gone
    assert (got["new_items"], got["dropped_items"]) == (6, 2)  # f g h i j k; d e
    assert flat(got) == pytest.approx(flat(_as_user_recs(pandas_stability(
        pd.DataFrame(_rows(new), columns=["user_id", "rank", "item_id", "score", "source"]),
        pd.DataFrame(_rows(old), columns=["user_id", "rank", "item_id", "score", "source"]), "user_id", "item_id", 4))))


def test_rows_past_top_n_of_the_earlier_date_are_not_compared(spark):
    old = spark.createDataFrame(_rows({"u": ["a", "b", "c", "d"]}), RECS_SCHEMA)
    new = spark.createDataFrame(_rows({"u": ["a", "c"]}), RECS_SCHEMA)
    got = user_recs_stability(new, old, top_n=2)  # old cut to a, b: only a stayed
    assert got["overlap"]["mean"] == pytest.approx(0.5)
    assert got["dropped_items"] == 1  # b; c and d were past the cut


def test_random_lists_match_pandas(spark):
    rng = np.random.default_rng(16)

    def lists(users):
        return {f"u{u}": list(rng.choice([f"i{i}" for i in range(25)], size=rng.integers(1, 8), replace=False))
                for u in users}

    old, new = lists(range(0, 40)), lists(range(10, 55))
    for user in list(new)[:15]:  # some users keep part of yesterday's list
        if user in old:
            new[user] = old[user][:3] + [i for i in new[user] if i not in old[user][:3]][:3]
    columns = ["user_id", "rank", "item_id", "score", "source"]
    got = user_recs_stability(spark.createDataFrame(_rows(new), RECS_SCHEMA),
                              spark.createDataFrame(_rows(old), RECS_SCHEMA), top_n=5)
    want = _as_user_recs(pandas_stability(pd.DataFrame(_rows(new), columns=columns),
                                          pd.DataFrame(_rows(old), columns=columns), "user_id", "item_id", 5))
    assert flat(got) == pytest.approx(flat(want))
    assert 0 < got["churn"] < 1


def test_no_common_key_gives_no_overlap_and_item_similar_names(spark):
    schema = "item_id string, rank int, similar_item_id string, score double"
    old = spark.createDataFrame([("a", 1, "b", 0.9), ("a", 2, "c", 0.5)], schema)
    new = spark.createDataFrame([("d", 1, "b", 0.9)], schema)
    got = item_similar_stability(new, old, top_k=2)
    assert got == {"items_compared": 0, "overlap": {"mean": None, "p10": None, "p50": None, "p90": None},
                   "churn": None, "new_items": 1, "dropped_items": 1, "new_neighbours": 0, "dropped_neighbours": 1}

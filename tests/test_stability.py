"""Churn between two dates' lists (evaluation/stability.py) against hand-computed and pandas values."""

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
from frames import local_frame

from recsys_spark.app.cli import main
from recsys_spark.app.nightly import run_nightly
from recsys_spark.config import load_config
from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.errors import QualityGateError
from recsys_spark.evaluation.stability import item_similar_stability, user_recs_stability
from recsys_spark.storage.audit import churn_gate

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


def _as_item_similar(s: dict) -> dict:
    return {"items_compared": s["compared"], "overlap": s["overlap"], "churn": s["churn"],
            "new_items": s["new_keys"], "dropped_items": s["dropped_keys"],
            "new_neighbours": s["new_entries"], "dropped_neighbours": s["dropped_entries"]}


def test_hand_made_lists(spark):
    old = {"stays": ["a", "b", "c"], "half": ["a", "b", "c", "d"], "gone": ["a", "e"], "shorter": ["x"],
           "moved": ["a", "b", "c", "d"]}
    new = {"stays": ["c", "a", "b"], "half": ["a", "f", "c", "g"], "shorter": ["x", "a", "b"], "fresh": ["a"],
           "moved": ["h", "i", "j", "k"]}
    got = user_recs_stability(local_frame(spark, _rows(new), RECS_SCHEMA),
                              local_frame(spark, _rows(old), RECS_SCHEMA), top_n=4)
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
    old = local_frame(spark, _rows({"u": ["a", "b", "c", "d"]}), RECS_SCHEMA)
    new = local_frame(spark, _rows({"u": ["a", "c"]}), RECS_SCHEMA)
    got = user_recs_stability(new, old, top_n=2)  # old cut to a, b: only a stayed
    assert got["overlap"]["mean"] == pytest.approx(0.5)
    assert got["dropped_items"] == 1  # b; c and d were past the cut


def test_ids_that_changed_type_between_dates_compare_as_text(spark):
    old = local_frame(spark, [("1", 1, "7", 1.0, "model"), ("u3", 1, "7", 1.0, "model")],
                      "user_id string, rank int, item_id string, score float, source string")
    new = local_frame(spark, [(1, 1, 7, 1.0, "model"), (2, 1, 8, 1.0, "model")],
                      "user_id bigint, rank int, item_id bigint, score float, source string")
    got = user_recs_stability(new, old, top_n=1)  # user 1 kept item 7; u3 dropped, 2 new
    assert (got["users_compared"], got["overlap"]["mean"]) == (1, 1.0)
    assert (got["new_users"], got["dropped_users"], got["new_items"], got["dropped_items"]) == (1, 1, 1, 0)


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
    got = user_recs_stability(local_frame(spark, _rows(new), RECS_SCHEMA),
                              local_frame(spark, _rows(old), RECS_SCHEMA), top_n=5)
    want = _as_user_recs(pandas_stability(pd.DataFrame(_rows(new), columns=columns),
                                          pd.DataFrame(_rows(old), columns=columns), "user_id", "item_id", 5))
    assert flat(got) == pytest.approx(flat(want))
    assert 0 < got["churn"] < 1


def test_no_common_key_gives_no_overlap_and_item_similar_names(spark):
    schema = "item_id string, rank int, similar_item_id string, score double"
    old = local_frame(spark, [("a", 1, "b", 0.9), ("a", 2, "c", 0.5)], schema)
    new = local_frame(spark, [("d", 1, "b", 0.9)], schema)
    got = item_similar_stability(new, old, top_k=2)
    assert got == {"items_compared": 0, "overlap": {"mean": None, "p10": None, "p50": None, "p90": None},
                   "churn": None, "new_items": 1, "dropped_items": 1, "new_neighbours": 0, "dropped_neighbours": 1}


# -- in a nightly run ------------------------------------------------------------------------

RUN_SETTINGS = ["model.kind=popularity", "score.top_n=5", "similar.top_k=3"]


def _published(out, table: str, date: str) -> pd.DataFrame:
    return pd.read_parquet(os.path.join(out, table, f"run_date={date}"))


def _files(root: str) -> dict:
    """sha256 of every file under a published partition (through a link) or a date's run directory."""
    return {path: hashlib.sha256(open(path, "rb").read()).hexdigest()
            for base, _, names in os.walk(root, followlinks=True) for name in names
            if name != ".lock" for path in [os.path.join(base, name)]}


def test_nightly_manifest_records_churn_and_max_churn_refuses_a_run(spark, tmp_path):
    out = str(tmp_path / "out")
    days = {"2026-06-01": (60, 8), "2026-06-02": (75, 9)}  # more users, other interactions the next day
    sources = {}
    for date, (users, seed) in days.items():
        sources[date] = str(tmp_path / f"{date}.csv")
        generate_interactions(n_users=users, n_items=30, n_interactions=15 * users, seed=seed).to_csv(
            sources[date], index=False)
    cfg = load_config(None, RUN_SETTINGS)
    first = run_nightly(spark, cfg, sources["2026-06-01"], out, "2026-06-01").manifest
    assert first["stability"] == {"compared_with": None, "reason": "no date published before 2026-06-01"}
    assert first["churn_gate"]["skipped"]

    second = run_nightly(spark, cfg, sources["2026-06-02"], out, "2026-06-02").manifest
    stability = second["stability"]
    assert stability["compared_with"] == "2026-06-01" and stability["compared_with_run"] == first["run_id"]
    for table, key, entry, n, named in (("user_recs", "user_id", "item_id", 5, _as_user_recs),
                                        ("item_similar", "item_id", "similar_item_id", 3, _as_item_similar)):
        want = named(pandas_stability(_published(out, table, "2026-06-02"), _published(out, table, "2026-06-01"),
                                      key, entry, n))
        assert flat(stability[table]) == pytest.approx(flat(want)), table
    recs = stability["user_recs"]
    assert recs["new_users"] > 0 and 0 < recs["churn"] < 1
    on_disk = json.load(open(os.path.join(out, "_runs", "2026-06-02", "current", "manifest.json")))
    assert on_disk["stability"] == stability and on_disk["churn_gate"]["passed"]

    # Re-running 2026-06-02 with a churn limit below its churn: refused (exit 4), both dates stay as they were.
    before = {date: {**_files(os.path.join(out, "user_recs", f"run_date={date}")),
                     **_files(os.path.join(out, "item_similar", f"run_date={date}")),
                     **_files(os.path.join(out, "_runs", date))} for date in days}
    limit = recs["churn"] / 2
    argv = ["run", "--input", sources["2026-06-02"], "--output", out, "--run-date", "2026-06-02", "--quiet",
            *[a for s in RUN_SETTINGS for a in ("--set", s)], "--set", f"publish.max_churn={limit}",
            "--set", "spark.conf={spark.sql.shuffle.partitions: 4, spark.default.parallelism: 4}"]
    assert main(argv) == QualityGateError.exit_code == 4
    for date in days:
        after = {**_files(os.path.join(out, "user_recs", f"run_date={date}")),
                 **_files(os.path.join(out, "item_similar", f"run_date={date}")),
                 **_files(os.path.join(out, "_runs", date))}
        assert {p: h for p, h in after.items() if ".staging-" not in p} == before[date], date
    with pytest.raises(QualityGateError, match=r"user_recs churn against 2026-06-01 is .*above publish.max_churn"):
        churn_gate(stability, limit)

"""Splits: every interaction lands exactly once, per-user counts as specified, deterministic."""

import numpy as np
import pandas as pd
import pytest
from frames import local_frame

from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.data.split import SplitError, last_n_split, parse_cutoff, random_split, split, time_split

COLS = ["user_id", "item_id", "weight", "ts"]


@pytest.fixture(scope="module")
def interactions(spark):
    pdf = generate_interactions(n_users=120, n_items=60, n_interactions=2500, seed=7)
    pdf = pdf.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)
    return pdf, spark.createDataFrame(pdf)


def _rows(df) -> pd.DataFrame:
    return df.toPandas()[COLS].sort_values(["user_id", "item_id"]).reset_index(drop=True)


def _assert_partition(input_pdf, train, test):
    both = pd.concat([_rows(train), _rows(test)]).sort_values(["user_id", "item_id"]).reset_index(drop=True)
    expected = input_pdf[COLS].sort_values(["user_id", "item_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(both, expected, check_dtype=False)
    keys_train = set(map(tuple, _rows(train)[["user_id", "item_id"]].to_numpy()))
    keys_test = set(map(tuple, _rows(test)[["user_id", "item_id"]].to_numpy()))
    assert not keys_train & keys_test


def test_random_split_partitions_input_with_per_user_counts(interactions):
    pdf, df = interactions
    train, test = random_split(df, fraction=0.25, min_history=5, seed=3, user_col="user_id", item_col="item_id")
    _assert_partition(pdf, train, test)
    n = pdf.groupby("user_id").size()
    expected = {u: (0 if c < 5 else min(c - 1, max(1, int(np.floor(c * 0.25 + 0.5))))) for u, c in n.items()}
    got = _rows(test).groupby("user_id").size().to_dict()
    assert {u: got.get(u, 0) for u in expected} == expected


def test_random_split_is_independent_of_partitioning_and_seeded(interactions):
    _, df = interactions
    kwargs = dict(fraction=0.3, min_history=3, user_col="user_id", item_col="item_id")
    _, a = random_split(df.repartition(1), seed=11, **kwargs)
    _, b = random_split(df.repartition(7, "item_id"), seed=11, **kwargs)
    _, c = random_split(df, seed=12, **kwargs)
    pd.testing.assert_frame_equal(_rows(a), _rows(b))
    assert not _rows(a).equals(_rows(c))


def test_last_n_holds_out_latest_and_keeps_short_histories(interactions):
    pdf, df = interactions
    train, test = last_n_split(df, n=2, min_history=4, user_col="user_id", item_col="item_id", ts_col="ts")
    _assert_partition(pdf, train, test)
    counts = pdf.groupby("user_id").size()
    got = _rows(test)
    for user, group in pdf.groupby("user_id"):
        held = got[got.user_id == user]
        if counts[user] < 4:
            assert held.empty
            continue
        assert len(held) == 2
        rest = group[~group.item_id.isin(held.item_id)]
        assert held.ts.min() >= rest.ts.max()


def test_last_n_breaks_timestamp_ties_deterministically(spark):
    pdf = pd.DataFrame({"user_id": ["a"] * 5 + ["b"] * 3, "item_id": ["x", "y", "z", "w", "v", "x", "y", "z"],
                        "weight": 1.0, "ts": [5, 9, 9, 9, 1, 2, 2, 2]})
    df = spark.createDataFrame(pdf)
    kwargs = dict(n=2, user_col="user_id", item_col="item_id", ts_col="ts")
    train, test = last_n_split(df.repartition(3), **kwargs)
    _assert_partition(pdf, train, test)
    first = _rows(test)
    assert set(first[first.user_id == "a"].item_id) <= {"y", "z", "w"}
    assert len(first) == 4
    for partitions in (1, 5):
        pd.testing.assert_frame_equal(_rows(last_n_split(df.repartition(partitions), **kwargs)[1]), first)


def test_last_n_counts_null_timestamps_as_oldest(spark):
    pdf = pd.DataFrame({"user_id": ["a"] * 3, "item_id": ["x", "y", "z"], "weight": 1.0, "ts": [None, 3.0, 2.0]})
    df = spark.createDataFrame(pdf, "user_id string, item_id string, weight double, ts double")
    _, test = last_n_split(df, n=2, user_col="user_id", item_col="item_id", ts_col="ts")
    assert sorted(_rows(test).item_id) == ["y", "z"]


def test_time_split_by_cutoff(interactions):
    pdf, df = interactions
    cutoff = int(pdf.ts.quantile(0.8))
    train, test = time_split(df, cutoff, ts_col="ts")
    _assert_partition(pdf, train, test)
    assert len(_rows(test)) == int((pdf.ts >= cutoff).sum())
    assert _rows(train).ts.max() < cutoff


def test_time_split_keeps_null_timestamps_in_train(spark):
    df = local_frame(spark, [("a", "x", 1.0, None), ("a", "y", 1.0, 10)], "user_id string, item_id string, weight double, ts long")
    train, test = time_split(df, 5)
    assert train.count() == 1 and test.collect()[0]["item_id"] == "y"


def test_parse_cutoff_accepts_epoch_and_iso():
    assert parse_cutoff(1700000000) == 1700000000
    assert parse_cutoff("1700000000") == 1700000000
    assert parse_cutoff("2024-01-01") == 1704067200
    assert parse_cutoff("2024-01-01T01:00:00+01:00") == 1704067200
    with pytest.raises(SplitError, match="ISO date"):
        parse_cutoff("last tuesday")
    with pytest.raises(SplitError, match="needs a cutoff"):
        parse_cutoff(None)


def test_split_dispatch_rejects_unknown_kind(interactions):
    _, df = interactions
    with pytest.raises(SplitError, match="random, last_n, time"):
        split(df, "stratified")
    with pytest.raises(SplitError, match="fraction"):
        random_split(df, fraction=1.0, user_col="user_id", item_col="item_id")

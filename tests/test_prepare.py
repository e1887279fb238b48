import pytest
from frames import local_frame

from recsys_spark.config import PrepareConfig
from recsys_spark.data.prepare import PrepareError, prepare

RAW = "user_id string, item_id string, weight string, ts string"


def test_each_rejection_reason_is_counted(spark):
    rows = [
        ("u1", "a", "1", "10"), ("u1", "b", "2", "11"), ("u2", "a", "1.5", None),
        (None, "a", "1", "1"),                      # null_user_id
        ("u3", None, "1", "1"), ("u3", None, "1", "1"),  # null_item_id x2
        ("u4", "a", None, "1"),                     # null_weight
        ("u4", "a", "heavy", "1"),                  # unparseable_weight
        ("u5", "a", "NaN", "1"), ("u5", "b", "Infinity", "1"),  # non_finite_weight x2
        ("u6", "a", "-1", "1"),                     # negative_weight
        ("u6", "b", "1e39", "1"),                   # weight_out_of_range (beyond float32)
        ("u7", "a", "1", "yesterday"),              # unparseable_ts
    ]
    prepared = prepare(local_frame(spark, rows, RAW), PrepareConfig())
    assert prepared.stats["rejected"] == {
        "null_user_id": 1, "null_item_id": 2, "null_weight": 1, "unparseable_weight": 1,
        "non_finite_weight": 2, "weight_out_of_range": 1, "negative_weight": 1, "unparseable_ts": 1,
    }
    assert prepared.stats["rows_read"] == len(rows)
    assert prepared.stats["interactions"] == 3
    assert prepared.n_users == 2 and prepared.n_items == 2


def test_duplicates_are_summed_with_latest_ts(spark):
    rows = [("u1", "a", "1", "10"), ("u1", "a", "2.5", "30"), ("u1", "a", "0.5", "20"), ("u2", "a", "1", "5")]
    prepared = prepare(local_frame(spark, rows, RAW), PrepareConfig())
    got = {(r.user_index, r.item_index): (r.weight, r.ts) for r in prepared.interactions.collect()}
    assert got == {(0, 0): (4.0, 30), (1, 0): (1.0, 5)}
    assert prepared.stats["duplicates_merged"] == 2


@pytest.mark.parametrize("ids", [
    ["b", "a", "10", "9", "007"],                       # strings stay strings, "007" kept as is
    ["éclair", "日本", "naïve", "Ω", "emoji-🎬"],        # unicode
])
def test_string_ids_round_trip_exactly(spark, ids):
    rows = [(u, f"item-{u}", "1", "1") for u in ids]
    prepared = prepare(local_frame(spark, rows, RAW), PrepareConfig())
    mapped = {r.user_index: r.user_id for r in prepared.user_ids.collect()}
    assert sorted(mapped.values()) == sorted(ids)
    assert sorted(mapped) == list(range(len(ids)))
    assert [mapped[i] for i in range(len(ids))] == sorted(ids)  # indexes follow id order


def test_integer_ids_stay_integers(spark):
    rows = [("10", "3", "1", "1"), ("2", "-5", "1", "1"), ("9007199254740993", "3", "1", "1")]
    prepared = prepare(local_frame(spark, rows, RAW), PrepareConfig())
    users = {r.user_id for r in prepared.user_ids.collect()}
    items = {r.item_id for r in prepared.item_ids.collect()}
    assert users == {10, 2, 9007199254740993} and items == {3, -5}
    typed = local_frame(spark, [(10, 3, 1.0, 1)], "user_id long, item_id long, weight double, ts long")
    assert prepare(typed, PrepareConfig()).user_ids.schema["user_id"].dataType.typeName() == "long"


def test_minimum_interactions_filter(spark):
    rows = [("u1", i, "1", "1") for i in "abc"] + [("u2", "a", "1", "1"), ("u3", "a", "1", "1"), ("u3", "b", "1", "1")]
    prepared = prepare(local_frame(spark, rows, RAW), PrepareConfig(min_user_interactions=2, min_item_interactions=2))
    assert {r.user_id for r in prepared.user_ids.collect()} == {"u1", "u3"}
    assert {r.item_id for r in prepared.item_ids.collect()} == {"a", "b"}
    assert prepared.stats["filtered_interactions"] == 2


def test_all_invalid_input_is_a_clear_error(spark):
    rows = [(None, "a", "1", "1"), ("u1", "a", "-2", "1")]
    with pytest.raises(PrepareError, match="no valid interactions"):
        prepare(local_frame(spark, rows, RAW), PrepareConfig())


def test_a_weight_beyond_float32_is_rejected_with_its_reason(spark):
    rows = [("u1", "a", "1e39", "1"), ("u1", "b", "-1e300", "1"), ("u2", "b", "1", "1")]
    prepared = prepare(local_frame(spark, rows, RAW), PrepareConfig())
    assert prepared.stats["rejected"]["weight_out_of_range"] == 2
    assert prepared.stats["interactions"] == 1


@pytest.mark.parametrize("weights", [("3e38", "1e38"), ("2e38", "2e38", "1")])
def test_a_summed_weight_beyond_float32_is_a_clear_error(spark, weights):
    # Each row is valid on its own; the sum over duplicates overflows float32.
    rows = [("u1", "a", w, "1") for w in weights] + [("u2", "b", "1", "1")]
    with pytest.raises(PrepareError, match="beyond the float32 range"):
        prepare(local_frame(spark, rows, RAW), PrepareConfig())


def test_the_largest_float32_weight_is_kept(spark):
    rows = [("u1", "a", "1.7e38", "1"), ("u1", "a", "1.7e38", "1")]
    prepared = prepare(local_frame(spark, rows, RAW), PrepareConfig())
    assert [r.weight for r in prepared.interactions.collect()] == [pytest.approx(3.4e38)]

"""Metrics against hand-computed values and a plain-Python reference of the formulas."""

import math

import numpy as np
import pytest
from frames import local_frame

from recsys_spark.evaluation.metrics import (
    EvaluationError,
    catalog_metrics,
    popularity_ranks,
    per_user_metric,
    ranking_metrics,
    rating_metrics,
)

RECS_SCHEMA = "user_id string, rank int, item_id string, score float"
TEST_SCHEMA = "user_id string, item_id string, weight double"


def _table(rows):
    return {(r.metric, r.k): r.value for r in rows}


@pytest.fixture(scope="module")
def small(spark):
    # u1 has 2 relevant items, u2 one (fewer than k) and only 2 recs, u3 no recs, u4 no test items.
    recs = local_frame(spark, [
        ("u1", 1, "x", 0.9), ("u1", 2, "a", 0.8), ("u1", 3, "b", 0.7),
        ("u2", 1, "c", 0.5), ("u2", 2, "y", 0.5),
        ("u4", 1, "a", 0.3),
    ], RECS_SCHEMA)
    test = local_frame(spark, [
        ("u1", "a", 4.0), ("u1", "b", 2.0), ("u1", "a", 4.0),
        ("u2", "c", 5.0),
        ("u3", "a", 1.0), ("u3", "d", 1.0), ("u3", "e", 1.0),
    ], TEST_SCHEMA)
    return recs, test


def test_ranking_metrics_hand_computed(small):
    recs, test = small
    got = _table(ranking_metrics(recs, test, ks=[3, 1, 2]))
    log2 = math.log2
    ndcg_u1_k2 = (1 / log2(3)) / (1 + 1 / log2(3))
    ndcg_u1_k3 = (1 / log2(3) + 1 / log2(4)) / (1 + 1 / log2(3))
    expected = {
        ("test_users", None): 3, ("test_users_without_recs", None): 1,
        ("precision", 1): 1 / 3, ("recall", 1): 1 / 3, ("ndcg", 1): 1 / 3, ("map", 1): 1 / 3,
        ("hit_rate", 1): 1 / 3, ("mrr", 1): 1 / 3,
        ("precision", 2): (1 / 2 + 1 / 2) / 3, ("recall", 2): (1 / 2 + 1) / 3,
        ("ndcg", 2): (ndcg_u1_k2 + 1) / 3, ("map", 2): ((1 / 2) / 2 + 1) / 3,
        ("hit_rate", 2): 2 / 3, ("mrr", 2): (1 / 2 + 1) / 3,
        # u2 has 2 recs but precision@3 still divides by 3.
        ("precision", 3): (2 / 3 + 1 / 3) / 3, ("recall", 3): (1 + 1) / 3,
        ("ndcg", 3): (ndcg_u1_k3 + 1) / 3, ("map", 3): ((1 / 2 + 2 / 3) / 2 + 1) / 3,
        ("hit_rate", 3): 2 / 3, ("mrr", 3): (1 / 2 + 1) / 3,
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_relevance_threshold_drops_low_weights_and_users_left_without_items(small):
    recs, test = small
    got = _table(ranking_metrics(recs, test, ks=[3], relevance_threshold=3.0))
    # Relevant: u1 {a}, u2 {c}; u3 has nothing relevant and is not counted.
    assert got[("test_users", None)] == 2
    assert got[("recall", 3)] == pytest.approx(1.0)
    assert got[("precision", 3)] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert got[("mrr", 3)] == pytest.approx((1 / 2 + 1) / 2)


def test_all_users_without_recs_score_zero(spark, small):
    _, test = small
    empty = local_frame(spark, [], RECS_SCHEMA)
    got = _table(ranking_metrics(empty, test, ks=[5]))
    assert got[("test_users_without_recs", None)] == 3
    assert all(v == 0.0 for (m, _), v in got.items() if not m.startswith("test_users"))


def test_empty_test_is_an_error(spark, small):
    recs, _ = small
    with pytest.raises(EvaluationError, match="no users"):
        ranking_metrics(recs, local_frame(spark, [], TEST_SCHEMA), ks=[5])
    with pytest.raises(EvaluationError, match="positive"):
        ranking_metrics(recs, recs, ks=[0])


def _reference_per_user(recs: dict, test: dict, k: int) -> dict:
    """Textbook formulas, one user at a time: metric -> {user: value}."""
    values = {name: {} for name in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")}
    for user, relevant in test.items():
        top = recs.get(user, [])[:k]
        hits = [item in relevant for item in top]
        values["precision"][user] = sum(hits) / k
        values["recall"][user] = sum(hits) / len(relevant)
        dcg = sum(1 / math.log2(i + 2) for i, hit in enumerate(hits) if hit)
        values["ndcg"][user] = dcg / sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
        precisions = [sum(hits[:i + 1]) / (i + 1) for i, hit in enumerate(hits) if hit]
        values["map"][user] = sum(precisions) / min(k, len(relevant))
        values["hit_rate"][user] = float(any(hits))
        values["mrr"][user] = 1 / (hits.index(True) + 1) if any(hits) else 0.0
    return values


def _reference(recs: dict, test: dict, k: int) -> dict:
    return {name: sum(per_user.values()) / len(test) for name, per_user in _reference_per_user(recs, test, k).items()}


def _random_lists(spark, seed=5):
    rng = np.random.default_rng(seed)
    recs, test, rec_rows, test_rows = {}, {}, [], []
    for u in range(40):
        ranked = [int(i) for i in rng.permutation(30)[: rng.integers(0, 12)]]
        relevant = {int(i) for i in rng.choice(30, size=rng.integers(1, 8), replace=False)}
        recs[u] = ranked
        rec_rows += [(u, r + 1, item, 1.0) for r, item in enumerate(ranked)]
        if u % 7:
            test[u] = relevant
            test_rows += [(u, item, 1.0) for item in relevant]
    return (recs, test, local_frame(spark, rec_rows, "user_id long, rank int, item_id long, score double"),
            local_frame(spark, test_rows, "user_id long, item_id long, weight double"))


def test_per_user_metric_matches_reference_per_user(spark):
    recs, test, rec_frame, test_frame = _random_lists(spark, seed=9)
    for k in (1, 5, 10):
        expected = _reference_per_user(recs, test, k)
        for name in expected:
            got = {r.user_id: r.value for r in per_user_metric(rec_frame, test_frame, name, k).collect()}
            assert got.keys() == expected[name].keys(), (name, k)
            for user, value in expected[name].items():
                assert got[user] == pytest.approx(value, abs=1e-12), (name, k, user)
    with pytest.raises(EvaluationError, match="per-user"):
        per_user_metric(rec_frame, test_frame, "coverage", 5)


def test_ranking_metrics_match_reference_on_random_lists(spark):
    recs, test, rec_frame, test_frame = _random_lists(spark)
    got = _table(ranking_metrics(rec_frame, test_frame, ks=[1, 5, 10]))
    for k in (1, 5, 10):
        for name, value in _reference(recs, test, k).items():
            assert got[(name, k)] == pytest.approx(value, abs=1e-12), (name, k)


def test_custom_column_names(spark):
    recs = local_frame(spark, [(1, 1, 10), (1, 2, 11)], "u int, pos int, it int")
    test = local_frame(spark, [(1, 11)], "u int, it int")
    got = _table(ranking_metrics(recs, test, ks=[2], user_col="u", item_col="it", rank_col="pos"))
    assert got[("mrr", 2)] == pytest.approx(0.5)


def test_catalog_metrics_hand_computed(spark, small):
    recs, _ = small
    train = local_frame(spark, 
        [(f"t{i}", item) for i, item in enumerate("aaabbccd")], "user_id string, item_id string")
    ranks = {r.item_id: r.popularity_rank for r in popularity_ranks(train).collect()}
    assert ranks == {"a": 1, "b": 2, "c": 3, "d": 4}  # b and c tie on 2: broken by id
    got = _table(catalog_metrics(recs, train, ks=[1, 3], n_catalog=10))
    # Unknown items x and y rank 5 (after the 4 ranked items).
    assert got[("coverage", 1)] == pytest.approx(3 / 10)  # x, c, a
    assert got[("coverage", 3)] == pytest.approx(5 / 10)
    assert got[("novelty", 1)] == pytest.approx((5 + 3 + 1) / 3)
    assert got[("novelty", 3)] == pytest.approx((5 + 1 + 2 + 3 + 5 + 1) / 6)


def test_rating_metrics_hand_computed(spark, small):
    _, test = small
    predictions = local_frame(spark, 
        [("u1", "a", 3.5), ("u1", "b", 3.0), ("u9", "a", 1.0)], "user_id string, item_id string, prediction double")
    got = _table(rating_metrics(predictions, test.filter("user_id != 'u3'").dropDuplicates()))
    assert got[("rmse", None)] == pytest.approx(math.sqrt((0.5 ** 2 + 1.0 ** 2) / 2))
    assert got[("mae", None)] == pytest.approx(0.75)
    assert got[("rated_pairs", None)] == 2 and got[("unpredicted_pairs", None)] == 1

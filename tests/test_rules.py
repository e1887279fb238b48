"""Business rules in scoring: exclusions, include list and popularity fallback, against a hand reference."""

import numpy as np
import pytest
from frames import local_frame

from recsys_spark.config import RulesConfig, ScoreConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.serving.rules import RulesError, build_rules
from recsys_spark.serving.scoring import recommend

N_USERS, N_ITEMS, RANK, TOP = 12, 15, 4, 6
MODEL_USERS = range(9)  # users 9..11 have no factors
MODEL_ITEMS = [i for i in range(N_ITEMS) if i != 13]  # item 13 has no factors


@pytest.fixture(scope="module")
def world(spark):
    rng = np.random.default_rng(21)
    interactions = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, N_USERS, 60), rng.integers(0, N_ITEMS, 60))})
    interactions += [(u, i) for u in (0, 1, 2) for i in range(N_ITEMS) if i % 2 and (u, i) not in interactions]
    interactions = [(u, i) for u, i in interactions if (u, i) != (4, 13)]
    interactions += [(4, i) for i in range(N_ITEMS) if i not in (7, 13) and (4, i) not in interactions]
    users = rng.normal(size=(N_USERS, RANK)).astype(np.float32)
    items = rng.normal(size=(N_ITEMS, RANK)).astype(np.float32)
    user_ids = local_frame(spark, [(u, f"u{u:02d}") for u in range(N_USERS)], "user_index int, user_id string")
    item_ids = local_frame(spark, [(i, f"i{i:02d}") for i in range(N_ITEMS)], "item_index int, item_id string")
    model_users = user_ids.filter(user_ids.user_index.isin(list(MODEL_USERS)))
    model = FactorModel.from_numpy(users[: len(MODEL_USERS)], items, model_users, item_ids, {"kind": "test"})
    model.item_factors = model.item_factors.filter(model.item_factors.item_index != 13)
    frame = local_frame(spark, [(u, i, 1.0, 0) for u, i in interactions],
                        "user_index int, item_index int, weight double, ts long")
    prepared = PreparedData(frame, user_ids, item_ids, N_USERS, N_ITEMS)
    return model, prepared, users, items, interactions


def reference(users, items, interactions, excluded_items, user_excl, include, fallback):
    """Per user id: list of (item index, score, source), computed directly from the definitions."""
    seen = {u: {i for uu, i in interactions if uu == u} for u in range(N_USERS)}
    counts = np.bincount([i for _, i in interactions], minlength=N_ITEMS)
    popularity = counts / N_USERS
    allowed = [i for i in range(N_ITEMS) if (include is None or i in include) and i not in excluded_items]
    result = {}
    for u in range(N_USERS):
        blocked = seen[u] | {i for uu, i in user_excl if uu == u}
        rows = []
        if u in MODEL_USERS:
            scores = items.astype(np.float64) @ users[u].astype(np.float64)
            pool = [i for i in allowed if i not in blocked and i in MODEL_ITEMS]
            rows = [(i, scores[i], "model") for i in sorted(pool, key=lambda i: (-scores[i], i))[:TOP]]
        if fallback:
            taken = {i for i, _, _ in rows}
            pool = [i for i in allowed if i not in blocked and i not in taken and counts[i] > 0]
            rows += [(i, popularity[i], "fallback") for i in sorted(pool, key=lambda i: (-counts[i], i))][: TOP - len(rows)]
        if rows:
            result[f"u{u:02d}"] = rows
    return result


def check(recs, expected):
    assert set(recs.user_id) == set(expected)
    for user, rows in expected.items():
        got = recs[recs.user_id == user].sort_values("rank")
        assert got["rank"].tolist() == list(range(1, len(rows) + 1)), user
        assert got["item_id"].tolist() == [f"i{i:02d}" for i, _, _ in rows], user
        assert got["source"].tolist() == [s for _, _, s in rows], user
        np.testing.assert_allclose(got["score"], [s for _, s, _ in rows], atol=1e-5)


@pytest.mark.parametrize("fallback", [False, True])
def test_every_rule_applied_exactly(spark, world, fallback):
    model, prepared, users, items, interactions = world
    exclude_items = {3, 13}
    include = set(range(N_ITEMS)) - {0, 1}
    user_excl = {(5, 2), (5, 6), (9, 4), (10, 14), (6, 99)}  # item 99 is unknown: ignored
    rules = build_rules(
        prepared, RulesConfig(fallback=fallback),
        exclude_items=local_frame(spark, [(f"i{i:02d}",) for i in exclude_items] + [("nope",)], "item_id string"),
        exclude_user_items=local_frame(spark, [(f"u{u:02d}", f"i{i:02d}") for u, i in user_excl], "user_id string, item_id string"),
        include_items=local_frame(spark, [(f"i{i:02d}",) for i in include], "item_id string"),
    )
    seen = prepared.interactions.select("user_index", "item_index")
    recs = recommend(model, seen, ScoreConfig(top_n=TOP, batch_users=4, block_items=5), rules=rules).toPandas()
    check(recs, reference(users, items, interactions, exclude_items, user_excl, include, fallback))
    assert not recs.item_id.isin(["i03", "i13", "i00", "i01"]).any()


def test_fallback_fills_users_without_factors_and_short_lists(spark, world):
    model, prepared, users, items, interactions = world
    rules = build_rules(prepared, RulesConfig(fallback=True))
    seen = prepared.interactions.select("user_index", "item_index")
    recs = recommend(model, seen, ScoreConfig(top_n=TOP), rules=rules).toPandas()
    check(recs, reference(users, items, interactions, set(), set(), None, True))
    cold = recs[recs.user_id.isin(["u09", "u10", "u11"])]
    assert len(cold) == 3 * TOP and (cold.source == "fallback").all()
    # User 4 saw every item but 7 and 13; 13 has no factors, so it comes from the fallback at rank 2.
    short = recs[recs.user_id == "u04"].sort_values("rank")
    assert short.item_id.tolist() == ["i07", "i13"] and short.source.tolist() == ["model", "fallback"]


def test_rule_table_without_item_id_is_rejected(spark, world):
    _, prepared, _, _, _ = world
    with pytest.raises(ValueError, match="needs column"):
        build_rules(prepared, RulesConfig(), exclude_items=local_frame(spark, [("x",)], "item string"))


def test_similar_items_take_neighbours_only_among_allowed_items(spark, world):
    from recsys_spark.config import SimilarConfig
    from recsys_spark.serving.similarity import similar_items

    model, prepared, _, items, _ = world
    exclude_items, include = {3, 5}, set(range(N_ITEMS)) - {0, 1}
    rules = build_rules(
        prepared, RulesConfig(),
        exclude_items=local_frame(spark, [(f"i{i:02d}",) for i in exclude_items], "item_id string"),
        include_items=local_frame(spark, [(f"i{i:02d}",) for i in include], "item_id string"))
    k = 4
    similar = similar_items(model, SimilarConfig(top_k=k), ScoreConfig(batch_users=3, block_items=5), rules=rules).toPandas()
    unit = items / np.linalg.norm(items, axis=1, keepdims=True)
    pool = [i for i in MODEL_ITEMS if i in include and i not in exclude_items]
    assert set(similar.item_id) == {f"i{i:02d}" for i in MODEL_ITEMS}  # excluded anchors keep their own list
    for anchor in MODEL_ITEMS:
        cosine = unit.astype(np.float64) @ unit[anchor].astype(np.float64)
        expected = sorted((i for i in pool if i != anchor), key=lambda i: (-cosine[i], i))[:k]
        got = similar[similar.item_id == f"i{anchor:02d}"].sort_values("rank")
        assert got.similar_item_id.tolist() == [f"i{i:02d}" for i in expected], anchor
        np.testing.assert_allclose(got.score, cosine[expected], atol=1e-5)


def test_rule_ids_read_as_text_match_integer_catalog_ids_and_unreadable_ones_are_ignored(spark):
    item_ids = local_frame(spark, [(i, 10 + i) for i in range(5)], "item_index int, item_id long")
    user_ids = local_frame(spark, [(0, 7)], "user_index int, user_id long")
    frame = local_frame(spark, [(0, i, 1.0, 0) for i in range(5)], "user_index int, item_index int, weight double, ts long")
    prepared = PreparedData(frame, user_ids, item_ids, 1, 5)
    text = "item_id string"
    rules = build_rules(prepared, RulesConfig(fallback=False),
                        exclude_items=local_frame(spark, [("12",), ("N/A",), ("12.5",), ("99",)], text),
                        exclude_user_items=local_frame(spark, [("7", "13"), ("x", "13")], "user_id string, item_id string"),
                        include_items=local_frame(spark, [("11",), ("12",), ("13",), ("14",)], text))
    assert [r.item_index for r in rules.exclude_items.collect()] == [2]
    assert [tuple(r) for r in rules.exclude_user_items.collect()] == [(0, 3)]
    assert rules.summary["exclude_items"] == {"rows": 4, "matched": 1}
    with pytest.raises(RulesError, match="no item may be recommended"):
        build_rules(prepared, RulesConfig(), exclude_items=local_frame(spark, [("12",)], text),
                    include_items=local_frame(spark, [("12",)], text))

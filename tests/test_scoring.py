import numpy as np
import pytest
from frames import local_frame

from recsys_spark.config import ScoreConfig, SimilarConfig
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.serving.scoring import recommend
from recsys_spark.serving.similarity import similar_items
from tests.reference import cosine_reference, top_n_reference


@pytest.fixture(scope="module")
def random_model(spark):
    rng = np.random.default_rng(11)
    n_users, n_items, rank = 60, 23, 5
    users = rng.normal(size=(n_users, rank)).astype(np.float32)
    items = rng.normal(size=(n_items, rank)).astype(np.float32)
    user_ids = local_frame(spark, [(i, f"user-{i:03d}") for i in range(n_users)], "user_index int, user_id string")
    item_ids = local_frame(spark, [(i, 1000 + i) for i in range(n_items)], "item_index int, item_id long")
    model = FactorModel.from_numpy(users, items, user_ids, item_ids, {"kind": "test"})
    seen = [rng.choice(n_items, size=rng.integers(0, 8), replace=False).tolist() for _ in range(n_users)]
    seen[0] = list(range(n_items - 4))  # 4 unseen: fewer than N
    seen[1] = list(range(n_items))  # everything seen
    return model, users, items, seen


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_recommend_equals_numpy_reference(spark, random_model, precision):
    model, users, items, seen = random_model
    seen_df = local_frame(spark, [(u, i) for u, s in enumerate(seen) for i in s], "user_index int, item_index int")
    # bfloat16 scores with TensorFlow in the Python workers: one task, so one worker pays its import (~8 s of CPU)
    tasks = 1 if precision == "bfloat16" else 0
    recs = recommend(model, seen_df, ScoreConfig(top_n=10, batch_users=7, block_items=5, partitions=tasks,
                                                 precision=precision)).toPandas()
    expected = top_n_reference(users, items, 10, seen)
    for u in range(len(users)):
        got = recs[recs.user_id == f"user-{u:03d}"].sort_values("rank")
        assert got["rank"].tolist() == list(range(1, len(expected[u]) + 1))
        assert got["item_id"].tolist() == [1000 + i for i, _ in expected[u]]
        np.testing.assert_allclose(got["score"], [s for _, s in expected[u]], atol=1e-5)
    assert len(recs[recs.user_id == "user-000"]) == 4
    assert len(recs[recs.user_id == "user-001"]) == 0
    assert recs["item_id"].dtype == np.int64


def test_similar_items_equal_numpy_cosine(spark, random_model):
    model, _, items, _ = random_model
    similar = similar_items(model, SimilarConfig(top_k=5), ScoreConfig(batch_users=4, block_items=6)).toPandas()
    expected, _ = cosine_reference(items, 5)
    assert len(similar) == len(items) * 5
    for i in range(len(items)):
        got = similar[similar.item_id == 1000 + i].sort_values("rank")
        assert got["similar_item_id"].tolist() == [1000 + j for j, _ in expected[i]]
        np.testing.assert_allclose(got["score"], [s for _, s in expected[i]], atol=1e-5)
    assert (similar.item_id != similar.similar_item_id).all()


def test_scoring_and_similarity_run_in_the_configured_number_of_tasks(spark, random_model):
    # Adaptive execution would coalesce these small inputs into one task (one busy core).
    model, _, _, seen = random_model
    seen_df = local_frame(spark, [(u, i) for u, s in enumerate(seen) for i in s], "user_index int, item_index int")
    assert recommend(model, seen_df, ScoreConfig(partitions=3)).rdd.getNumPartitions() == 3
    assert similar_items(model, SimilarConfig(top_k=2), ScoreConfig(partitions=5)).rdd.getNumPartitions() == 5


def test_factor_tables_hold_each_matrix_row_at_its_index_across_arrow_batches(spark, monkeypatch):
    """from_numpy sends the matrices as Arrow batches (here of 3 rows); the tables read back by a
    plain collect hold row i at index i with its id, and item_factor_matrix gives the matrix back."""
    from recsys_spark.models import factor_model

    monkeypatch.setattr(factor_model, "FRAME_VALUES", 3 * 4)
    rng = np.random.default_rng(5)
    users, items = rng.normal(size=(7, 4)).astype(np.float32), rng.normal(size=(10, 4)).astype(np.float32)
    user_ids = local_frame(spark, [(i, f"u{i}") for i in range(7)], "user_index int, user_id string")
    item_ids = local_frame(spark, [(i, 100 + i) for i in range(10)], "item_index int, item_id long")
    model = FactorModel.from_numpy(users, items, user_ids, item_ids, {"kind": "test"})
    rows = {r.user_index: (r.user_id, r.factors) for r in model.user_factors.collect()}
    assert sorted(rows) == list(range(7))
    for i, (user_id, factors) in rows.items():
        assert user_id == f"u{i}"
        np.testing.assert_array_equal(np.array(factors, np.float32), users[i])
    np.testing.assert_array_equal(model.item_factor_matrix(), items)
    assert dict(model.item_factors.dtypes)["factors"] == "array<float>"

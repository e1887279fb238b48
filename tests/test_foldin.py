"""Fold-in: a new user's factors equal the exact solve against fixed item factors (dense numpy)."""

import numpy as np
import pandas as pd
import pytest
from frames import local_frame

from recsys_spark.kernels.least_squares import gramian, solve_users
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.models.foldin import FoldInError, add_new_users, fold_in

PARAMS = {"unobserved_weight": 0.5, "reg": 0.03, "reg_exponent": 1.0, "confidence": "linear", "alpha": 2.0}


def _dense_row(item_factors, items, weights, params):
    """argmin_x sum_i W_i (P_i - x.v_i)^2 + lambda |x|^2 over every item, W = w0 or 1 + alpha f(w),
    f(w) = w (linear) or log(1 + w / epsilon) (log)."""
    n_items, rank = item_factors.shape
    w0 = params["unobserved_weight"]
    weight = np.full(n_items, w0)
    target = np.zeros(n_items)
    for item, w in zip(items, weights):
        f = w if params["confidence"] == "linear" else np.log(1.0 + w / params["epsilon"])
        weight[item] = 1.0 + params["alpha"] * f
        target[item] = 1.0
    lam = params["reg"] * (len(items) + w0 * n_items) ** params["reg_exponent"]
    v = item_factors.astype(np.float64)
    return np.linalg.solve(v.T @ (weight[:, None] * v) + lam * np.eye(rank), v.T @ (weight * target))


def test_solve_users_matches_dense_closed_form():
    rng = np.random.default_rng(0)
    item_factors = rng.normal(size=(12, 4)).astype(np.float32)
    baskets = [([1, 5, 7], [1.0, 2.0, 1.0]), ([0], [3.0]), ([2, 3, 4, 11], [1.0, 1.0, 4.0, 2.0])]
    indptr = np.cumsum([0] + [len(b[0]) for b in baskets])
    items = np.concatenate([b[0] for b in baskets])
    weights = np.concatenate([b[1] for b in baskets])
    conf = 1.0 + PARAMS["alpha"] * weights
    reg = PARAMS["reg"] * (np.diff(indptr) + PARAMS["unobserved_weight"] * 12)
    got = solve_users(indptr, items, conf, item_factors, gramian(item_factors, PARAMS["unobserved_weight"]),
                      reg, PARAMS["unobserved_weight"])
    for row, (basket_items, basket_weights) in enumerate(baskets):
        np.testing.assert_allclose(got[row], _dense_row(item_factors, basket_items, basket_weights, PARAMS),
                                   rtol=1e-4, atol=1e-5)


def _model(spark, item_factors, known_users=("u1", "u2")):
    rank = item_factors.shape[1]
    users = pd.DataFrame({"user_index": np.arange(len(known_users), dtype=np.int32), "user_id": list(known_users)})
    items = pd.DataFrame({"item_index": np.arange(len(item_factors), dtype=np.int32),
                          "item_id": [f"i{k}" for k in range(len(item_factors))]})
    user_ids = spark.createDataFrame(users, "user_index int, user_id string")
    item_ids = spark.createDataFrame(items, "item_index int, item_id string")
    user_factors = np.ones((len(known_users), rank), dtype=np.float32)
    return FactorModel.from_numpy(user_factors, item_factors, user_ids, item_ids, {"kind": "wals", "foldin": PARAMS})


def test_fold_in_new_users_on_executors_equals_dense_solve(spark):
    rng = np.random.default_rng(1)
    item_factors = rng.normal(size=(15, 3)).astype(np.float32)
    model = _model(spark, item_factors)
    rows = [
        ("u1", "i0", 1.0),  # known user: left alone
        ("n1", "i2", 1.0), ("n1", "i4", 2.0), ("n1", "i2", 1.0),  # duplicate pair: weights add up
        ("n1", "unknown", 5.0),  # item not in the model: ignored
        ("n0", "i14", 3.0),
        ("n2", "unknown", 1.0),  # no known item: no factors
    ]
    interactions = local_frame(spark, rows, "user_id string, item_id string, weight double")
    got = {r["user_id"]: r for r in fold_in(model, interactions).collect()}
    assert set(got) == {"n0", "n1"}
    assert sorted(r["user_index"] for r in got.values()) == [2, 3]  # after the model's users, in id order
    assert got["n0"]["user_index"] == 2
    np.testing.assert_allclose(got["n1"]["factors"], _dense_row(item_factors, [2, 4], [2.0, 2.0], PARAMS),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["n0"]["factors"], _dense_row(item_factors, [14], [3.0], PARAMS),
                               rtol=1e-4, atol=1e-5)
    extended = add_new_users(model, interactions)
    assert extended.user_factors.count() == 4


def test_fold_in_of_a_trained_users_row_equals_the_exact_solve(spark):
    pytest.importorskip("tensorflow")
    from recsys_spark.config import ModelConfig, TrainConfig, WalsConfig
    from recsys_spark.data.sample_data import generate_interactions
    from recsys_spark.models import wals
    from tests.prepared_frames import prepared_from_pandas

    frame = generate_interactions(50, 30, 600, seed=5)
    prepared = prepared_from_pandas(spark, frame)
    model = wals.train(prepared, ModelConfig(kind="wals", rank=4, seed=1, wals=WalsConfig(iterations=2)), TrainConfig())
    # The default confidence=auto is recorded resolved: a log transform with the training weights' median.
    positive = frame.groupby(["user_id", "item_id"]).weight.sum()
    assert model.metadata["foldin"]["confidence"] == "log"
    assert model.metadata["foldin"]["epsilon"] == pytest.approx(float(np.median(positive[positive > 0])))
    item_factors = model.item_factor_matrix()
    item_index = {r["item_id"]: r["item_index"] for r in prepared.item_ids.collect()}
    user = frame[frame.user_id == frame.user_id.iloc[0]].groupby("item_id", as_index=False).weight.sum()
    renamed = spark.createDataFrame(user.assign(user_id="newcomer")[["user_id", "item_id", "weight"]])
    got = fold_in(model, renamed).collect()
    assert len(got) == 1 and got[0]["user_index"] == prepared.n_users
    expected = _dense_row(item_factors, [item_index[i] for i in user.item_id], user.weight.to_numpy(),
                          model.metadata["foldin"])
    np.testing.assert_allclose(got[0]["factors"], expected, rtol=1e-3, atol=1e-5)


def test_fold_in_needs_parameters(spark):
    model = _model(spark, np.ones((2, 2), dtype=np.float32))
    model.metadata.pop("foldin")
    interactions = local_frame(spark, [("n", "i0", 1.0)], "user_id string, item_id string, weight double")
    with pytest.raises(FoldInError, match="fold-in parameters"):
        fold_in(model, interactions)

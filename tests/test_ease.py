"""EASE (model.kind=ease): B against the numpy closed form, its published top-N against numpy brute
force through the scoring engine, the driver budget, save/load, item_similar and fold-in."""

import numpy as np
import pandas as pd
import pytest
from prepared_frames import prepared_from_pandas
from reference import cosine_reference, top_n_reference

from recsys_spark.config import ModelConfig, RulesConfig, ScoreConfig, SimilarConfig, TrainConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import ITEM_INDEX, USER_INDEX
from recsys_spark.errors import DriverMemoryError, ModelError
from recsys_spark.kernels.sparse_rows import SparseRows
from recsys_spark.kernels.topk import prepare_history_items, top_n
from recsys_spark.models import ease
from recsys_spark.models.foldin import add_new_users
from recsys_spark.serving.rules import Rules, build_rules
from recsys_spark.serving.scoring import recommend
from recsys_spark.serving.similarity import similar_items

N_USERS, N_ITEMS, REG = 40, 25, 2.0


def _interactions(seed=0, users=N_USERS, prefix="u"):
    rng = np.random.default_rng(seed)
    x = rng.random((users, N_ITEMS)) < rng.uniform(0.1, 0.5, N_ITEMS)  # items of unequal popularity
    x[:, 0] = True  # every item index exists and every user has a history
    x[0, :] = True
    rows, cols = np.nonzero(x)
    return pd.DataFrame({"user_id": [f"{prefix}{r:03d}" for r in rows], "item_id": [f"i{c:03d}" for c in cols],
                         "weight": rng.integers(1, 6, len(rows)).astype(float)}), x


def _closed_form(x, reg):
    """B = I - P diag(1/diag P), P = (X^T X + lambda I)^-1, lambda = reg x mean item count; diag(B) = 0."""
    gram = x.T.astype(np.float64) @ x.astype(np.float64)
    lam = reg * np.trace(gram) / gram.shape[0]
    p = np.linalg.inv(gram + lam * np.eye(gram.shape[0]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.fixture(scope="module")
def fitted(spark):
    frame, x = _interactions()
    prepared = prepared_from_pandas(spark, frame)
    cfg = ModelConfig(kind="ease")
    cfg.ease.reg = REG
    return prepared, x, ease.train(prepared, cfg, TrainConfig())


def _recs(model, prepared, top, rules=None):
    seen = prepared.interactions.select(USER_INDEX, ITEM_INDEX, "weight")
    return recommend(model, seen, ScoreConfig(top_n=top, block_items=8), rules=rules).toPandas()


def test_b_matches_the_numpy_closed_form(fitted):
    prepared, x, model = fitted
    b = _closed_form(x, REG)
    assert model.item_item and model.kind == "ease" and model.width == N_ITEMS
    np.testing.assert_allclose(model.item_factor_matrix(), b.T, atol=2e-6)  # row j = column j of B
    assert model.metadata["lambda"] == pytest.approx(REG * x.sum() / N_ITEMS)


def test_top_n_matches_brute_force_with_seen_removed(fitted):
    prepared, x, model = fitted
    top = 6
    recs = _recs(model, prepared, top)
    b = _closed_form(x, REG).astype(np.float32)
    expected = top_n_reference(x.astype(np.float32), b.T, top, [np.flatnonzero(row) for row in x])
    for user in range(N_USERS):
        got = recs[recs.user_id == f"u{user:03d}"].sort_values("rank")
        want = expected[user]
        assert len(got) == len(want)
        np.testing.assert_allclose(got.score.to_numpy(), [s for _, s in want], atol=1e-5)
        # the same items, up to ties within float32 resolution
        assert got.score.diff().dropna().le(1e-7).all()
        strict = [i for (i, s) in want if sum(abs(s - t) < 1e-5 for _, t in want) == 1]
        assert {f"i{i:03d}" for i in strict} <= set(got.item_id)
        assert not set(got.item_id) & {f"i{i:03d}" for i in np.flatnonzero(x[user])}


def test_rules_and_fallback_apply_to_ease(spark, fitted):
    prepared, x, model = fitted
    excluded = [3, 7]
    rules = Rules(exclude_items=spark.createDataFrame(pd.DataFrame({"item_index": np.array(excluded, np.int32)}),
                                                      "item_index int"))
    recs = _recs(model, prepared, 5, rules)
    assert not set(recs.item_id) & {f"i{i:03d}" for i in excluded}
    b = _closed_form(x, REG)
    scores = x.astype(np.float64) @ b
    scores[x] = -np.inf
    scores[:, excluded] = -np.inf
    for user in (1, 2, 5):
        got = recs[recs.user_id == f"u{user:03d}"].sort_values("rank").score.to_numpy()
        np.testing.assert_allclose(got, np.sort(scores[user])[::-1][:len(got)], atol=1e-5)


def test_a_history_without_evidence_gets_the_popularity_fallback_not_index_order(spark):
    frame, _ = _interactions(seed=3)
    lonely = pd.DataFrame({"user_id": ["u999"], "item_id": ["i999"], "weight": [1.0]})  # an item no one else has
    prepared = prepared_from_pandas(spark, pd.concat([frame, lonely], ignore_index=True))
    cfg = ModelConfig(kind="ease")
    cfg.ease.reg = REG
    model = ease.train(prepared, cfg, TrainConfig())
    recs = _recs(model, prepared, 5, build_rules(prepared, RulesConfig()))
    # every x_u B of u999 is 0: the five slots are the five most popular items, as the fallback ranks them
    got = recs[recs.user_id == "u999"].sort_values("rank")
    users_per_item = frame.groupby("item_id").user_id.nunique()
    assert list(got.source) == ["fallback"] * 5
    np.testing.assert_array_equal(users_per_item[got.item_id].to_numpy(),
                                  np.sort(users_per_item.to_numpy())[::-1][:5])
    # everyone else's model rows carry evidence
    others = recs[recs.user_id != "u999"]
    assert (others[others.source == "model"].score > 0).all()


def test_history_kernel_matches_numpy_in_small_blocks():
    rng = np.random.default_rng(3)
    columns = rng.normal(size=(30, 50)).astype(np.float32)
    x = rng.random((20, 30)) < 0.2
    x[4] = False  # no history: all scores 0, ties to the lower index
    weights = rng.uniform(0.5, 2.0, int(x.sum())).astype(np.float32)
    seen = rng.random((20, 50)) < 0.1
    indptr = np.r_[0, np.cumsum(x.sum(1))]
    seen_indptr = np.r_[0, np.cumsum(seen.sum(1))]
    for values in (None, weights):
        dense = np.zeros(x.shape, np.float32)
        dense[x] = 1.0 if values is None else values
        want = top_n_reference(dense, columns.T, 7, [np.flatnonzero(r) for r in seen])
        for block in (4096, 16, 5):
            idx, scores = top_n(SparseRows(indptr, np.nonzero(x)[1], values), prepare_history_items(columns, block), 7,
                                seen_indptr, np.nonzero(seen)[1])
            assert idx.tolist() == [[i for i, _ in row] for row in want]
            np.testing.assert_allclose(scores, [[s for _, s in row] for row in want], atol=1e-6)


def test_budget_refusal_before_any_work():
    prepared = PreparedData(None, None, None, n_users=10, n_items=20_000)  # touching the data would fail
    with pytest.raises(DriverMemoryError, match="model.kind=ease on 20000 items"):
        ease.train(prepared, ModelConfig(kind="ease"), TrainConfig(driver_max_bytes=1 << 30))
    assert ease.driver_bytes(20_000) > 1 << 30 > ease.driver_bytes(4_000)


def test_save_load_round_trip(spark, fitted, tmp_path):
    from recsys_spark.storage.stores import load_model, save_model

    prepared, x, model = fitted
    save_model(model, str(tmp_path / "model"))
    loaded = load_model(spark, str(tmp_path / "model"))
    assert loaded.item_item and loaded.metadata["lambda"] == model.metadata["lambda"]
    np.testing.assert_array_equal(loaded.item_factor_matrix(), model.item_factor_matrix())
    before = _recs(model, prepared, 4).sort_values(["user_id", "rank"]).reset_index(drop=True)
    after = _recs(loaded, prepared, 4).sort_values(["user_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


def test_item_similar_is_the_cosine_of_b_columns(fitted):
    prepared, x, model = fitted
    k = 4
    table = similar_items(model, SimilarConfig(top_k=k), ScoreConfig(block_items=8)).toPandas()
    expected, _ = cosine_reference(_closed_form(x, REG).T, k)
    for item in (0, 5, 11, 24):
        got = table[table.item_id == f"i{item:03d}"].sort_values("rank")
        np.testing.assert_allclose(got.score.to_numpy(), [s for _, s in expected[item]], atol=1e-5)
        assert f"i{item:03d}" not in set(got.similar_item_id)


def test_new_users_are_scored_from_their_history(spark, fitted):
    prepared, x, model = fitted
    frame, new_x = _interactions(seed=9, users=5, prefix="new")
    extended = add_new_users(model, spark.createDataFrame(frame[["user_id", "item_id", "weight"]]))
    new_rows = extended.user_factors.toPandas()
    new_rows = new_rows[new_rows.user_id.str.startswith("new")].sort_values("user_id")
    assert len(new_rows) == 5 and (new_rows.user_index >= N_USERS).all() and new_rows.factors.map(len).eq(0).all()
    seen = spark.createDataFrame(pd.DataFrame({
        "user_index": np.repeat(new_rows.user_index.to_numpy(), new_x.sum(1)).astype(np.int32),
        "item_index": np.nonzero(new_x)[1].astype(np.int32)}), "user_index int, item_index int")
    recs = recommend(extended, seen, ScoreConfig(top_n=3)).toPandas()
    scores = new_x.astype(np.float64) @ _closed_form(x, REG)
    scores[new_x] = -np.inf
    for row, user in enumerate(new_rows.user_id):
        got = recs[recs.user_id == user].sort_values("rank").score.to_numpy()
        finite = scores[row][np.isfinite(scores[row])]  # the first user has seen every item
        np.testing.assert_allclose(got, np.sort(finite)[::-1][:3], atol=1e-5)
    # the model's own users have no seen items here: no history, so no model rows (the fallback would serve them)
    assert set(recs.user_id) == set(new_rows.user_id[1:])


def _session_reference(users, items, ts, n_items, seconds):
    """S[i, j] = sum over users having both of exp(-|t_ui - t_uj| / seconds), by brute force."""
    s = np.zeros((n_items, n_items))
    for user in np.unique(users):
        mine = users == user
        for i, ti in zip(items[mine], ts[mine]):
            for j, tj in zip(items[mine], ts[mine]):
                s[i, j] += np.exp(-abs(ti - tj) / seconds)
    return s


def test_session_gram_and_b_match_a_brute_force_reference(spark):
    frame, x = _interactions(seed=3)
    rng = np.random.default_rng(4)
    frame["ts"] = 1_700_000_000 + rng.integers(0, 3 * 3600, len(frame))  # gaps of seconds to hours
    prepared = prepared_from_pandas(spark, frame)
    users = frame.user_id.str[1:].astype(int).to_numpy()
    items = frame.item_id.str[1:].astype(int).to_numpy()
    seconds, weight = 600.0, 1.5
    grams = ease.input_grams(prepared.interactions, N_ITEMS, seconds)
    gram, session = grams.counts, grams.sessions
    np.testing.assert_allclose(gram, x.T.astype(float) @ x.astype(float))
    reference = _session_reference(users, items, frame.ts.to_numpy(float), N_ITEMS, seconds)
    np.testing.assert_allclose(session, reference, rtol=1e-9)
    assert np.linalg.eigvalsh(gram + weight * session).min() > -1e-6  # still a Gram: the solve's Cholesky holds

    cfg = ModelConfig(kind="ease")
    cfg.ease.reg, cfg.ease.session_seconds, cfg.ease.session_weight = REG, seconds, weight
    model = ease.train(prepared, cfg, TrainConfig())
    counts = x.T.astype(np.float64) @ x.astype(np.float64)
    lam = REG * np.trace(counts) / N_ITEMS  # lambda stays in units of the plain counts
    p = np.linalg.inv(counts + weight * reference + lam * np.eye(N_ITEMS))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.item_factor_matrix(), b.T, atol=2e-6)
    assert model.metadata["sessions"] == {"used": True, "reason": None}
    assert model.metadata["params"]["session_seconds"] == seconds


@pytest.mark.parametrize("ts", ["constant", "missing"])
def test_sessions_are_left_out_when_the_data_has_no_time(spark, ts):
    frame, x = _interactions(seed=5)
    prepared = prepared_from_pandas(spark, frame.assign(ts=1_700_000_000))
    if ts == "missing":
        from pyspark.sql import functions as F
        prepared = PreparedData(prepared.interactions.withColumn("ts", F.lit(None).cast("long")), prepared.user_ids,
                                prepared.item_ids, prepared.n_users, prepared.n_items)
    cfg = ModelConfig(kind="ease")
    cfg.ease.reg = REG  # sessions at their defaults (on)
    model = ease.train(prepared, cfg, TrainConfig())
    np.testing.assert_allclose(model.item_factor_matrix(), _closed_form(x, REG).T, atol=2e-6)
    assert model.metadata["sessions"]["used"] is False
    assert "no time" in model.metadata["sessions"]["reason"]


def _heavy_reference(x, heavy, reg, heavy_reg):
    """Channel EASE by brute force: inputs F = [X, H], target X, one constrained least squares per column
    (F^T F + diag(lambda)) b = F^T x_j with b[j] = b[n + j] = 0, solved on the free inputs only."""
    f = np.hstack([x, heavy]).astype(np.float64)
    n = x.shape[1]
    lam = reg * x.sum() / n
    lams = np.r_[np.full(n, lam), np.full(n, heavy_reg * x.sum() / n)]
    b = np.zeros((2 * n, n))
    for j in range(n):
        free = np.setdiff1d(np.arange(2 * n), [j, n + j])
        a = f[:, free].T @ f[:, free] + np.diag(lams[free])
        b[free, j] = np.linalg.solve(a, f[:, free].T @ x[:, j].astype(np.float64))
    return b


def _heavy_tailed(seed=7):
    frame, x = _interactions(seed=seed)
    rng = np.random.default_rng(seed)
    frame["weight"] = np.round(np.exp(rng.normal(0.0, 2.5, len(frame))), 3) + 0.001  # hours-like: max >> 100 x median
    return frame, x


def test_heavy_use_channel_matches_the_constrained_least_squares_and_scores_through_the_engine(spark):
    frame, x = _heavy_tailed()
    prepared = prepared_from_pandas(spark, frame)
    cfg = ModelConfig(kind="ease")
    cfg.ease.reg, cfg.ease.heavy_reg = REG, 3.0
    model = ease.train(prepared, cfg, TrainConfig())
    channel = model.metadata["heavy_channel"]
    assert channel["used"] and channel["profile"] == "heavy-tailed"
    assert channel["threshold"] == pytest.approx(np.median(frame.weight))
    heavy = np.zeros_like(x)
    for row in frame.itertuples():
        if row.weight > channel["threshold"]:
            heavy[int(row.user_id[1:]), int(row.item_id[1:])] = True
    b = _heavy_reference(x, heavy, REG, 3.0)
    assert model.width == 2 * N_ITEMS and model.heavy_threshold == channel["threshold"]
    np.testing.assert_allclose(model.item_factor_matrix(), b.T, atol=5e-6)

    top = 5
    recs = _recs(model, prepared, top)
    inputs = np.hstack([x, heavy]).astype(np.float32)
    expected = top_n_reference(inputs, b.T.astype(np.float32), top, [np.flatnonzero(row) for row in x])
    for user in range(N_USERS):
        got = recs[recs.user_id == f"u{user:03d}"].sort_values("rank")
        np.testing.assert_allclose(got.score.to_numpy(), [s for _, s in expected[user]], atol=1e-5)
    with pytest.raises(ModelError, match="needs a weight column"):
        recommend(model, prepared.interactions.select(USER_INDEX, ITEM_INDEX), ScoreConfig(top_n=top))


@pytest.mark.parametrize("weights, mode, used", [("heavy", "off", False), ("scale", "auto", False),
                                                  ("scale", "on", True), ("constant", "on", False)])
def test_heavy_use_channel_applies_to_heavy_tailed_weights_unless_asked(spark, weights, mode, used):
    frame, x = _heavy_tailed(seed=8) if weights == "heavy" else _interactions(seed=8)
    if weights == "constant":
        frame["weight"] = 1.0
    cfg = ModelConfig(kind="ease")
    cfg.ease.reg, cfg.ease.heavy_channel = REG, mode
    model = ease.train(prepared_from_pandas(spark, frame), cfg, TrainConfig())
    assert model.metadata["heavy_channel"]["used"] is used
    assert model.width == (2 if used else 1) * N_ITEMS
    if not used:
        np.testing.assert_allclose(model.item_factor_matrix(), _closed_form(x, REG).T, atol=2e-6)


def test_heavy_use_channel_on_is_refused_past_the_driver_budget_and_auto_falls_back(spark):
    frame, _ = _heavy_tailed(seed=9)
    prepared = prepared_from_pandas(spark, frame)
    budget = TrainConfig(driver_max_bytes=ease.driver_bytes(N_ITEMS) + 1)  # plain EASE fits, 2n inputs do not
    cfg = ModelConfig(kind="ease")
    cfg.ease.heavy_channel = "on"
    with pytest.raises(DriverMemoryError, match="heavy_channel=on doubles"):
        ease.train(prepared, cfg, budget)
    cfg.ease.heavy_channel = "auto"
    model = ease.train(prepared, cfg, budget)
    assert not model.metadata["heavy_channel"]["used"] and "over the budget" in model.metadata["heavy_channel"]["reason"]

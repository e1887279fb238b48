"""WALS on the executors (models/wals_spark.py) against driver WALS (kernels/wals_tf.fit) from the same
initial factors, its block packing, the median it needs, the engine choice, and a model that scores."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_spark.config import Config, ModelConfig, TrainConfig, WalsConfig
from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.kernels.confidence import confidence, weight_profile
from recsys_spark.kernels.wals_blocks import initial_rows, pack_rows

tf = pytest.importorskip("tensorflow")

SHARED = Path(__file__).resolve().parents[2] / "shared"
ML100K = SHARED / "data" / "ml-100k"
PROTOCOL = SHARED / "tools" / "protocol.py"


def _prepared(spark, n_users=160, n_items=70, n_interactions=2500, seed=3):
    from recsys_spark.data.prepare import prepare

    frame = spark.createDataFrame(generate_interactions(n_users=n_users, n_items=n_items,
                                                        n_interactions=n_interactions, seed=seed))
    return prepare(frame, Config().prepare)


def _matrix(factors_df, index_col, n):
    pdf = factors_df.select(index_col, "factors").toPandas()
    out = np.full((n, len(pdf["factors"].iloc[0])), np.nan, np.float32)
    out[pdf[index_col].to_numpy()] = np.stack(pdf["factors"].to_numpy())
    return out


def _driver_reference(prepared, cfg: WalsConfig, rank, seed):
    """kernels/wals_tf.fit on the collected data, from initial_rows' factors (what the spark engine seeds)."""
    from recsys_spark.kernels import wals_tf
    from recsys_spark.models.driver_data import collect_interactions
    from recsys_spark.models.wals import _idf, foldin_parameters

    data = collect_interactions(prepared.interactions, prepared.n_users, prepared.n_items)
    foldin = foldin_parameters(data, cfg)
    conf = confidence(data.users, data.items, data.weights, foldin["confidence"], alpha=foldin["alpha"],
                      epsilon=foldin["epsilon"], bm25_k1=cfg.bm25_k1, bm25_b=cfg.bm25_b, item_idf=_idf(foldin),
                      mean_user_weight=foldin.get("bm25_mean_user_weight", 1.0))
    start = (initial_rows(np.arange(data.n_users), rank, cfg.init_stddev, seed, 1),
             initial_rows(np.arange(data.n_items), rank, cfg.init_stddev, seed, 2))
    x, y, history = wals_tf.fit(data.users, data.items, conf, data.n_users, data.n_items, rank, cfg.iterations,
                                cfg.reg, foldin["unobserved_weight"], cfg.reg_exponent, cfg.cg_steps,
                                cfg.init_stddev, seed, initial=start, tolerance=cfg.tolerance)
    return x, y, history, foldin


@pytest.mark.parametrize("scheme", ["auto", "bm25"])
def test_spark_engine_gives_driver_wals_factors_from_the_same_start(spark, scheme):
    from recsys_spark.models import wals_spark

    prepared = _prepared(spark)
    rank, seed = 6, 11
    cfg = WalsConfig(iterations=3, confidence=scheme, tolerance=0.0, init_stddev=0.1, block_interactions=300,
                     engine="spark")
    model = wals_spark.train(prepared, ModelConfig(kind="wals", rank=rank, seed=seed, wals=cfg), TrainConfig())
    x, y, history, foldin = _driver_reference(prepared, cfg, rank, seed)

    blocks = model.metadata["blocks"]
    assert blocks["users"] > int(spark.conf.get("spark.sql.shuffle.partitions")) and blocks["items"] >= 2
    assert model.metadata["engine"] == "spark" and model.metadata["kind"] == "wals"
    assert model.metadata["foldin"].keys() == foldin.keys()
    for key, value in foldin.items():
        if isinstance(value, float):
            assert model.metadata["foldin"][key] == pytest.approx(value, rel=1e-9), key
        else:
            assert model.metadata["foldin"][key] == value, key
    got_x = _matrix(model.user_factors, "user_index", prepared.n_users)
    got_y = _matrix(model.item_factors, "item_index", prepared.n_items)
    assert np.abs(x).max() > 0.05  # trained away from the 0.1-stddev start, not trivially small
    np.testing.assert_allclose(got_x, x, rtol=1e-3, atol=2e-5)
    np.testing.assert_allclose(got_y, y, rtol=1e-3, atol=2e-5)
    assert [h["iteration"] for h in model.metadata["history"]] == [1, 2, 3]
    np.testing.assert_allclose([h["loss"] for h in model.metadata["history"]], [h["loss"] for h in history],
                               rtol=1e-4)


def test_tolerance_stops_the_spark_engine_where_the_driver_stops(spark):
    from recsys_spark.models import wals_spark

    prepared = _prepared(spark, seed=5)
    cfg = WalsConfig(iterations=6, tolerance=0.05, init_stddev=0.1, block_interactions=800, engine="spark")
    model = wals_spark.train(prepared, ModelConfig(kind="wals", rank=4, seed=1, wals=cfg), TrainConfig())
    _, _, history, _ = _driver_reference(prepared, cfg, 4, 1)
    assert 1 < len(history) < 6
    assert model.metadata["iterations_run"] == len(history)


def test_pack_rows_by_hand():
    blocks, started, last = pack_rows(np.array([3, 3, 3, 10, 1, 1]), 6)
    assert blocks.tolist() == [0, 0, 1, 2, 3, 3] and started == 4 and last == 2
    blocks, started, last = pack_rows(np.array([2, 5]), 6, filled=3)  # continues a block holding 3
    assert blocks.tolist() == [0, 1] and started == 2 and last == 5


def test_blocks_hold_at_most_block_interactions_nonzeros(spark):
    from pyspark.sql import functions as F

    from recsys_spark.models.wals_spark_blocks import assign_blocks

    rng = np.random.default_rng(0)
    counts = rng.integers(1, 40, size=500)
    counts[7] = 250  # one row over the limit: a block of its own
    users = np.repeat(np.arange(500), counts)
    data = spark.createDataFrame(pd.DataFrame({"_u": users.astype(np.int32), "_i": np.zeros(len(users), np.int32)}))
    limit = 200
    assign = assign_blocks(data, "_u", 503, limit).toPandas()  # 3 rows without nonzeros at the end
    assert sorted(assign["_idx"]) == list(range(503))
    assert assign.set_index("_idx")["_count"].reindex(range(500)).tolist() == counts.tolist()
    sizes = assign.groupby("_block")["_count"].sum()
    alone = assign.groupby("_block")["_idx"].transform("size") == 1
    big = set(assign.loc[alone, "_block"])
    assert all(n <= limit or block in big for block, n in sizes.items())
    assert sizes[assign.loc[assign["_idx"] == 7, "_block"].iloc[0]] == 250
    assert len(sizes) >= int(np.ceil(counts.sum() / limit))
    for _, rows in assign.groupby("_block")["_idx"]:  # consecutive indexes
        assert rows.max() - rows.min() + 1 == len(rows)
    assert data.agg(F.count("*")).first()[0] == counts.sum()


@pytest.mark.parametrize("weights", [
    [1.0, 1.0, 1.0], [3.0, 1.0, 4.0, 1.0], [0.0, 2.0, 5.0, 9.0, 0.0, 7.0], np.arange(1.0, 5001.0) ** 1.5,
    np.r_[np.full(300, 4.0), np.full(301, 5.0), [1e4]],
])
def test_spark_auto_confidence_is_numpys(spark, weights):
    from recsys_spark.kernels.confidence import auto_confidence
    from recsys_spark.models import spark_weights

    w = np.asarray(weights, np.float32)
    df = spark.createDataFrame(pd.DataFrame({"w": w}))
    positive = w[w > 0].astype(np.float64)
    assert spark_weights.exact_median_positive(df, "w") == float(np.median(positive))
    got, expected = spark_weights.auto_confidence(df, "w", 2.0), auto_confidence(w, 2.0)
    assert got["profile"] == expected["profile"] == weight_profile(w)
    assert got["epsilon"] == expected["epsilon"] and got["alpha"] == pytest.approx(expected["alpha"], rel=1e-12)


def test_auto_engine_follows_the_driver_budget_and_the_model_scores(spark):
    from recsys_spark.config import ScoreConfig
    from recsys_spark.models.foldin import fold_in
    from recsys_spark.models.registry import train_model
    from recsys_spark.models.wals import bytes_per_interaction, choose_engine
    from recsys_spark.serving.scoring import recommend

    prepared = _prepared(spark, seed=8)
    n = prepared.interactions.count()
    assert choose_engine("auto", prepared, 8, n * bytes_per_interaction(8)) == "driver"
    assert choose_engine("auto", prepared, 8, n * bytes_per_interaction(8) - 1) == "spark"
    assert choose_engine("driver", prepared, 8, 1) == "driver"
    assert choose_engine("spark", prepared, 8, 1 << 40) == "spark"

    cfg = Config(model=ModelConfig(kind="wals", rank=8, wals=WalsConfig(iterations=2, block_interactions=500)),
                 train=TrainConfig(driver_max_bytes=n * bytes_per_interaction(8) // 2))
    model = train_model(prepared, cfg)
    assert model.metadata["engine"] == "spark" and model.kind == "wals" and model.width == 8
    assert model.user_factors.count() == prepared.n_users and model.item_factors.count() == prepared.n_items
    seen = prepared.interactions.select("user_index", "item_index")
    recs = recommend(model, seen, ScoreConfig(top_n=5)).toPandas()
    users = model.user_factors.select("user_index", "user_id").toPandas()
    items = model.item_factors.select("item_index", "item_id").toPandas()
    assert recs["user_id"].nunique() == prepared.n_users
    # every user's first item is the argmax of x_u . Y over the unseen items (brute force)
    x = _matrix(model.user_factors, "user_index", prepared.n_users)
    y = _matrix(model.item_factors, "item_index", prepared.n_items)
    seen_pdf = seen.toPandas()
    scores = x @ y.T
    scores[seen_pdf["user_index"], seen_pdf["item_index"]] = -np.inf
    first = (recs[recs["rank"] == 1].merge(users, on="user_id").merge(items, on="item_id"))
    got = scores[first["user_index"].to_numpy(), first["item_index"].to_numpy()]
    np.testing.assert_allclose(got, scores.max(axis=1)[first["user_index"].to_numpy()], rtol=1e-4, atol=1e-6)
    new_user = pd.DataFrame({"user_id": ["newcomer"] * 3, "item_id": items["item_id"].iloc[:3].tolist()})
    assert fold_in(model, spark.createDataFrame(new_user)).count() == 1


def test_warm_start_on_the_spark_engine_keeps_known_rows(spark):
    from recsys_spark.models import wals_spark

    prepared = _prepared(spark, seed=9)
    model_cfg = ModelConfig(kind="wals", rank=4, wals=WalsConfig(iterations=1, block_interactions=700,
                                                                 engine="spark", tolerance=0.0))
    earlier = wals_spark.train(prepared, model_cfg, TrainConfig())
    kept_users = earlier.user_factors.limit(100)
    warm = wals_spark.train(prepared, model_cfg, TrainConfig(),
                            initial=type(earlier)(kept_users, earlier.item_factors, earlier.metadata))
    counts = warm.metadata["warm_start"]
    assert counts["users"] == {"kept": 100, "new": prepared.n_users - 100, "dropped": 0}
    assert counts["items"] == {"kept": prepared.n_items, "new": 0, "dropped": 0}
    # from the trained items, one more iteration lowers the loss below a cold start's first one
    assert warm.metadata["history"][0]["loss"] < earlier.metadata["history"][0]["loss"]


@pytest.mark.slow
@pytest.mark.skipif(not (ML100K / "u.data").exists() or not PROTOCOL.exists(),
                    reason="needs MovieLens 100K and the protocol in ../shared (not in the repo)")
def test_spark_and_driver_wals_have_the_same_ndcg_on_movielens(spark):
    from recsys_spark.data.prepare import prepare
    from recsys_spark.models.registry import train_model

    spec = importlib.util.spec_from_file_location("protocol", PROTOCOL)
    protocol = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protocol)
    train, test = protocol.split(protocol.load("ml-100k", str(ML100K)))
    raw = spark.createDataFrame(train.rename(columns={"user": "user_id", "item": "item_id"})
                                .astype({"user_id": str, "item_id": str}))
    prepared = prepare(raw, Config().prepare)
    ndcg = {}
    for engine in ("driver", "spark"):
        cfg = Config(model=ModelConfig(kind="wals", wals=WalsConfig(engine=engine)))
        model = train_model(prepared, cfg)
        assert model.metadata["engine"] == engine
        users = model.user_factors.toPandas().sort_values("user_index")
        items = model.item_factors.toPandas().sort_values("item_index")
        scores = np.stack(users["factors"].to_numpy()) @ np.stack(items["factors"].to_numpy()).T
        row_of = {str(u): r for r, u in enumerate(users["user_id"])}  # prepare may turn digit strings into integers
        col_of = {str(i): c for c, i in enumerate(items["item_id"])}
        known = train[train["user"].astype(str).isin(row_of) & train["item"].astype(str).isin(col_of)]
        assert len(known) == len(train)  # every training pair is masked
        scores[[row_of[str(u)] for u in known["user"]], [col_of[str(i)] for i in known["item"]]] = -np.inf
        top = np.argsort(-scores, axis=1)[:, :10]
        item_ids = items["item_id"].to_numpy()
        recs = {int(u): [int(item_ids[c]) for c in top[row_of[str(u)]]] for u in users["user_id"]}
        ndcg[engine] = protocol.metrics(recs, test, len(item_ids))["ndcg@10"]
    assert ndcg["driver"] > 0.4
    assert abs(ndcg["spark"] - ndcg["driver"]) <= 0.002, ndcg

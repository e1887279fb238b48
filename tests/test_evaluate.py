"""evaluate on generated data: a real model beats popularity; the writer produces the table and report."""

import numpy as np
import pytest
from frames import local_frame

from recsys_spark.config import load_config
from recsys_spark.data.prepare import prepare
from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.evaluation.holdout import evaluate, manifest_metrics, predict_pairs, split_prepared
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.storage.reports import write_evaluation

SMALL_ALS = ["model.kind=als", "model.rank=16", "model.als.max_iter=6", "model.als.reg_param=0.05",
             "score.batch_users=256"]


@pytest.fixture(scope="module")
def prepared(spark):
    pdf = generate_interactions(n_users=250, n_items=100, n_interactions=7000, seed=11)
    prepared = prepare(spark.createDataFrame(pdf), load_config().prepare)
    prepared.interactions = prepared.interactions.persist()  # as the pipeline does
    return prepared


@pytest.fixture(scope="module")
def result(prepared):
    cfg = load_config(None, SMALL_ALS + ["evaluate.ks=[5,10]", "evaluate.fraction=0.2"])
    return evaluate(prepared, cfg, run_id="t1")


def test_als_ranks_above_popularity(result):
    got = {(r.model, r.metric, r.k): r.value for r in result.metrics.collect()}
    assert {m for m, _, _ in got} == {"als", "popularity"}
    for metric in ("ndcg", "recall", "map"):
        assert got[("als", metric, 10)] > got[("popularity", metric, 10)], metric
    assert got[("als", "coverage", 10)] > got[("popularity", "coverage", 10)]
    assert got[("als", "test_users_without_recs", None)] == 0
    assert ("als", "rmse", None) not in got  # implicit ALS does not predict weights


def test_split_prepared_keeps_id_maps_and_partitions_interactions(prepared):
    cfg = load_config(None, ["evaluate.split=last_n", "evaluate.n=2"]).evaluate
    train, test = split_prepared(prepared, cfg)
    assert train.n_items == prepared.n_items and train.user_ids is prepared.user_ids
    assert train.interactions.count() + test.count() == prepared.interactions.count()
    assert test.groupBy("user_index").count().agg({"count": "max"}).first()[0] == 2


def test_predict_pairs_is_the_dot_product(spark):
    users = local_frame(spark, [(0, "a"), (1, "b")], "user_index int, user_id string")
    items = local_frame(spark, [(0, "x"), (1, "y")], "item_index int, item_id string")
    u, v = np.array([[1.0, 2.0], [0.5, -1.0]]), np.array([[3.0, 1.0], [2.0, 2.0]])
    model = FactorModel.from_numpy(u, v, users, items, {"kind": "test"})
    pairs = local_frame(spark, [(0, 1), (1, 0), (5, 0)], "user_index int, item_index int")
    got = {(r.user_index, r.item_index): r.prediction for r in predict_pairs(model, pairs).collect()}
    assert got == pytest.approx({(0, 1): 6.0, (1, 0): 0.5})


def test_write_evaluation_writes_table_and_report(spark, result, tmp_path):
    files = write_evaluation(result, str(tmp_path / "metrics"), str(tmp_path / "report"))
    table = spark.read.parquet(str(tmp_path / "metrics"))
    assert table.filter("run_id = 't1'").count() == result.metrics.count()
    assert {"report.md", "metrics_vs_k.png", "popularity.png", "scores.png"} <= {f.rsplit("/", 1)[-1] for f in files}
    assert "| ndcg@10 |" in (tmp_path / "report" / "report.md").read_text()
    assert set(manifest_metrics(result)) == {"als", "popularity"}

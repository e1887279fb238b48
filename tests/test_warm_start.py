"""Warm start: id reconciliation against a dict reference, the WALS kernel's initial factors and
tolerance stop against dense solves, and two nightly dates where the second starts from the first."""

import json

import numpy as np
import pandas as pd
import pytest

from recsys_spark.models.warm_start import reconcile_rows, unusable_reason

tf = pytest.importorskip("tensorflow")
from recsys_spark.kernels import wals_cpu, wals_tf  # noqa: E402
from recsys_spark.kernels.wals_blocks import initial_rows  # noqa: E402


def _reference(old_ids, old_rows, new_ids, fill):
    """Row by row: the old row of the same id (compared as text), else the fill row."""
    by_id = {str(i): row for i, row in zip(old_ids, old_rows)}
    rows = np.array([by_id.get(str(i), f) for i, f in zip(new_ids, fill)])
    return rows, np.array([str(i) in by_id for i in new_ids])


@pytest.mark.parametrize("old_ids, new_ids", [
    (["a", "b", "c", "d", "e"], ["e", "x", "c", "a", "y", "z"]),  # d, b removed; x, y, z added; reordered
    ([10, 20, 30], [30, 10, 20]),  # only reordered
    ([10, 20, 30], [40, 50]),  # nothing kept
    ([7, 8, 9], ["9", "1", "7"]),  # integer ids that became strings still match
    (["u07", "u01"], []),  # every id gone
])
def test_reconcile_rows_matches_a_dict_reference(old_ids, new_ids):
    rng = np.random.default_rng(0)
    old_rows = rng.normal(size=(len(old_ids), 3)).astype(np.float32)
    fill = rng.normal(size=(len(new_ids), 3)).astype(np.float32)
    rows, kept = reconcile_rows(np.array(old_ids, dtype=object if isinstance(old_ids[0], str) else None),
                                old_rows, np.array(new_ids, dtype=object), fill)
    want_rows, want_kept = _reference(old_ids, old_rows, new_ids, fill)
    np.testing.assert_array_equal(kept, want_kept.astype(bool))
    np.testing.assert_array_equal(rows, want_rows.reshape(rows.shape))


def test_reconcile_rows_on_many_shuffled_ids():
    rng = np.random.default_rng(1)
    old_ids = rng.permutation(np.arange(1000))[:600]
    new_ids = rng.permutation(np.concatenate([old_ids[:400], np.arange(1000, 1300)]))  # 200 gone, 300 new
    old_rows, fill = rng.normal(size=(600, 4)), rng.normal(size=(700, 4))
    rows, kept = reconcile_rows(old_ids, old_rows, new_ids, fill)
    want_rows, want_kept = _reference(old_ids, old_rows, new_ids, fill)
    assert kept.sum() == 400
    np.testing.assert_array_equal(kept, want_kept)
    np.testing.assert_array_equal(rows, want_rows)


def test_a_model_of_another_kind_or_dimension_is_not_used():
    meta = {"kind": "wals", "latent_dim": 8, "width": 8}
    assert unusable_reason(meta, "wals", 8) is None
    assert "latent dimension is 8" in unusable_reason(meta, "wals", 16)
    assert "als model" in unusable_reason({**meta, "kind": "als"}, "wals", 8)


def _tiny(seed=3, n_users=9, n_items=7):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.4
    users, items = np.nonzero(mask)
    conf = (1.0 + 3.0 * rng.random(len(users))).astype(np.float32)
    return users.astype(np.int32), items.astype(np.int32), conf


def _exact_rows(other, weights, target, reg):
    other = other.astype(np.float64)
    eye = np.eye(other.shape[1])
    return np.stack([np.linalg.solve(other.T @ (weights[r][:, None] * other) + reg * eye,
                                     other.T @ (weights[r] * target[r])) for r in range(len(weights))])


def test_fit_starts_from_the_initial_factors():
    # With exact half-steps, one iteration from (x0, y0) depends on y0 alone: x = solve(y0), y = solve(x).
    users, items, conf = _tiny()
    n_users, n_items, rank, w0, reg = 9, 7, 3, 0.5, 0.1
    rng = np.random.default_rng(4)
    x0, y0 = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank))
    got_x, got_y, history = wals_tf.fit(users, items, conf, n_users, n_items, rank, 1, reg, w0, reg_exponent=0.0,
                                        cg_steps=3 * rank, init_stddev=0.1, seed=5, initial=(x0, y0))
    weights = np.full((n_users, n_items), w0)
    weights[users, items] = conf
    target = np.zeros((n_users, n_items))
    target[users, items] = 1.0
    x = _exact_rows(y0, weights, target, reg)
    np.testing.assert_allclose(got_x, x, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got_y, _exact_rows(x, weights.T, target.T, reg), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        wals_tf.fit(users, items, conf, n_users, n_items, rank, 1, reg, w0, 0.0, 3, 0.1, 5, initial=(x0[:3], y0))


def test_tolerance_stops_at_the_first_iteration_that_improves_the_loss_by_less():
    users, items, conf = _tiny(seed=8, n_users=40, n_items=30)
    args = dict(users=users, items=items, conf=conf, n_users=40, n_items=30, rank=4, reg=0.05,
                unobserved_weight=0.3, reg_exponent=0.0, cg_steps=1, init_stddev=0.1, seed=2)
    full_x, _, full = wals_tf.fit(iterations=30, **args)
    start_loss = _loss(wals_tf.initial_factors(40, 4, 0.1, (2, 1)).numpy(),
                       wals_tf.initial_factors(30, 4, 0.1, (2, 2)).numpy(), users, items, conf, 0.3, 0.05)
    losses = [start_loss] + [h["loss"] for h in full]
    tolerance = 5e-3  # the decreases of this data pass it about half-way
    decreases = [(a - b) / a for a, b in zip(losses, losses[1:])]
    expected = next(i + 1 for i, d in enumerate(decreases) if d < tolerance)
    assert 1 < expected < 30, "the data must make the stop fall inside the run"
    x, _, history = wals_tf.fit(iterations=30, tolerance=tolerance, **args)
    assert len(history) == expected
    same_x, _, _ = wals_tf.fit(iterations=expected, **args)
    np.testing.assert_allclose(x, same_x, rtol=1e-6)
    _, _, capped = wals_tf.fit(iterations=2, tolerance=tolerance, **args)
    assert len(capped) == 2  # iterations stays the cap


def _loss(x, y, users, items, conf, w0, reg):
    """The WALS objective in float64, dense (constant reg)."""
    weights = np.full((x.shape[0], y.shape[0]), w0)
    weights[users, items] = conf
    target = np.zeros_like(weights)
    target[users, items] = 1.0
    pred = x.astype(np.float64) @ y.astype(np.float64).T
    return float((weights * (target - pred) ** 2).sum() + reg * ((x.astype(np.float64) ** 2).sum()
                                                                  + (y.astype(np.float64) ** 2).sum()))


@pytest.mark.parametrize("ids_became_text", [False, True])
def test_wals_train_starts_kept_ids_from_their_old_rows_and_new_ones_as_cold(spark, ids_became_text):
    from recsys_spark.config import ModelConfig, TrainConfig, WalsConfig
    from recsys_spark.data.sample_data import generate_interactions
    from recsys_spark.kernels.confidence import confidence
    from recsys_spark.models import wals
    from tests.prepared_frames import prepared_from_pandas

    frame = generate_interactions(50, 30, 700, seed=4)
    users, items = sorted(frame.user_id.unique()), sorted(frame.item_id.unique())
    earlier = frame[~frame.user_id.isin(users[:5]) & ~frame.item_id.isin(items[:3])]  # today adds 5 users, 3 items
    later = frame[~frame.user_id.isin(users[-4:]) & ~frame.item_id.isin(items[-2:])]  # and drops 4 users, 2 items
    if ids_became_text:  # the earlier model has integer ids, today's input the same ids as text
        earlier = earlier.assign(user_id=earlier.user_id.str[1:].astype(int), item_id=earlier.item_id.str[1:].astype(int))
        later = later.assign(user_id=later.user_id.str[1:], item_id=later.item_id.str[1:])
    cfg = ModelConfig(kind="wals", rank=4, seed=3, wals=WalsConfig(iterations=2, tolerance=0.0, confidence="linear",
                                                                unobserved_weight=1.0))
    old = wals.train(prepared_from_pandas(spark, earlier, "bigint" if ids_became_text else "string"), cfg, TrainConfig())
    prepared = prepared_from_pandas(spark, later)
    model = wals.train(prepared, cfg, TrainConfig(), initial=old)

    old_users = old.user_factors.toPandas().set_index("user_id").factors
    old_items = old.item_factors.toPandas().set_index("item_id").factors
    old_users.index, old_items.index = old_users.index.astype(str), old_items.index.astype(str)
    new_users = prepared.user_ids.toPandas().sort_values("user_index").user_id.tolist()
    new_items = prepared.item_ids.toPandas().sort_values("item_index").item_id.tolist()
    cold_x = initial_rows(np.arange(len(new_users)), 4, 0.01, 3, 1)  # the seeded start of every WALS engine
    cold_y = initial_rows(np.arange(len(new_items)), 4, 0.01, 3, 2)
    x0 = np.array([old_users[str(u)] if str(u) in old_users.index else cold_x[r] for r, u in enumerate(new_users)])
    y0 = np.array([old_items[str(i)] if str(i) in old_items.index else cold_y[r] for r, i in enumerate(new_items)])
    data = prepared.interactions.toPandas()
    conf = confidence(data.user_index.to_numpy(), data.item_index.to_numpy(), data.weight.to_numpy(), "linear",
                      alpha=2.0)
    kernel = wals_cpu if wals.driver_kernel("auto") == "numpy" else wals_tf  # the trainer's, from the start built here
    want_x, want_y, _ = kernel.fit(data.user_index.to_numpy(np.int32), data.item_index.to_numpy(np.int32),
                                    conf.astype(np.float32), len(new_users), len(new_items), 4, 2, 0.02, 1.0, 1.0, 3,
                                    0.01, 3, initial=(x0, y0))
    got = model.user_factors.toPandas().set_index("user_id").factors
    np.testing.assert_allclose(np.stack(got.loc[new_users].to_numpy()), want_x, rtol=1e-4, atol=1e-6)
    got_items = model.item_factors.toPandas().set_index("item_id").factors
    np.testing.assert_allclose(np.stack(got_items.loc[new_items].to_numpy()), want_y, rtol=1e-4, atol=1e-6)
    kept = len(set(map(str, new_users)) & set(old_users.index))
    assert model.metadata["warm_start"]["users"] == {"kept": kept, "new": len(new_users) - kept,
                                                     "dropped": len(old_users) - kept}
    kept_items = len(set(map(str, new_items)) & set(old_items.index))
    assert model.metadata["warm_start"]["items"] == {"kept": kept_items, "new": len(new_items) - kept_items,
                                                     "dropped": len(old_items) - kept_items}


FAST = ["--set", "model.kind=wals", "--set", "model.rank=8", "--set", "model.wals.iterations=15", "--set", "similar.enabled=false", "--quiet"]


def test_aligned_factors_refuses_earlier_rows_of_another_width(spark):
    from recsys_spark.models.factor_model import FactorModel
    from recsys_spark.models.warm_start import aligned_factors

    users = spark.createDataFrame(pd.DataFrame({"user_index": np.arange(3, dtype=np.int32), "user_id": ["a", "b", "c"]}))
    items = spark.createDataFrame(pd.DataFrame({"item_index": np.arange(2, dtype=np.int32), "item_id": ["x", "y"]}))
    earlier = FactorModel.from_numpy(np.ones((3, 3), np.float32), np.ones((2, 3), np.float32), users, items,
                                     {"kind": "wals"})
    x, y, counts = aligned_factors(earlier, users, items, np.zeros((3, 3), np.float32), np.zeros((2, 3), np.float32))
    assert (x == 1).all() and (y == 1).all() and counts["users"] == {"kept": 3, "new": 0, "dropped": 0}
    with pytest.raises(ValueError, match="not all of width 4"):
        aligned_factors(earlier, users, items, np.zeros((3, 4), np.float32), np.zeros((2, 4), np.float32))


def test_the_second_date_warm_starts_from_the_first_and_the_manifest_names_it(spark, tmp_path):
    from recsys_spark.app.cli import main
    from recsys_spark.data.sample_data import generate_interactions

    frame = generate_interactions(n_users=200, n_items=80, n_interactions=5000, seed=11)
    users, items = sorted(frame.user_id.unique()), sorted(frame.item_id.unique())
    first = frame[~frame.user_id.isin(users[:10]) & ~frame.item_id.isin(items[:4])]
    second = frame[~frame.user_id.isin(users[-6:])]  # 10 users and 4 items come, 6 users go
    (tmp_path / "first.csv").write_text(first.to_csv(index=False))
    (tmp_path / "second.csv").write_text(second.to_csv(index=False))
    out = tmp_path / "warehouse"

    def manifest(date):
        return json.loads((out / "_runs" / date / "current" / "manifest.json").read_text())

    assert main(["run", "--input", str(tmp_path / "first.csv"), "--output", str(out), "--run-date", "2026-05-01",
                 "--set", "model.warm_start=on", *FAST]) == 0
    cold = manifest("2026-05-01")["model"]
    assert cold["warm_start"]["used"] is False and "no model published before 2026-05-01" in cold["warm_start"]["reason"]
    assert main(["run", "--input", str(tmp_path / "second.csv"), "--output", str(out), "--run-date", "2026-05-02",
                 *FAST]) == 0
    warm = manifest("2026-05-02")["model"]["warm_start"]
    assert warm["used"] is True and warm["mode"] == "auto"
    assert (warm["source"]["run_date"], warm["source"]["run_id"], warm["source"]["kind"]) == (
        "2026-05-01", manifest("2026-05-01")["run_id"], "wals")
    kept = len(set(first.user_id) & set(second.user_id))
    assert warm["users"] == {"kept": kept, "new": second.user_id.nunique() - kept,
                             "dropped": first.user_id.nunique() - kept}
    kept_items = len(set(first.item_id) & set(second.item_id))
    assert warm["items"] == {"kept": kept_items, "new": second.item_id.nunique() - kept_items,
                             "dropped": first.item_id.nunique() - kept_items}
    assert warm["items"]["new"] > 0
    assert 1 <= manifest("2026-05-02")["model"]["iterations_run"] <= 15
    recs = pd.read_parquet(out / "user_recs" / "run_date=2026-05-02")
    assert set(recs.user_id) == set(second.user_id)

    # The plan alone (no training): off is cold; a re-run of a date never starts from its own
    # model; a model of another rank is not used, and the record says why.
    from recsys_spark.app.warm_start import warm_start_plan
    from recsys_spark.config import load_config
    from recsys_spark.storage.layout import DateLayout

    later = DateLayout(str(out), "2026-05-03")
    assert warm_start_plan(spark, load_config(None, ["model.warm_start=off"]), later).record() == {
        "mode": "off", "used": False, "source": None, "reason": "model.warm_start is off"}
    plan = warm_start_plan(spark, load_config(None, ["model.kind=wals", "model.rank=8"]), later)
    assert plan.model is not None and plan.source["run_date"] == "2026-05-02"
    rerun = warm_start_plan(spark, load_config(None, ["model.kind=wals", "model.rank=8"]), DateLayout(str(out), "2026-05-01"))
    assert rerun.model is None and "no model published before 2026-05-01" in rerun.reason
    other = warm_start_plan(spark, load_config(None, ["model.kind=wals", "model.rank=16", "model.warm_start=on"]), later)
    assert other.model is None and "latent dimension is 8, not model.rank 16" in other.reason


def test_warm_start_on_needs_a_trainer_that_has_it():
    from recsys_spark.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="model.warm_start=on needs model.kind wals"):
        load_config(None, ["model.kind=als", "model.warm_start=on"])
    assert load_config(None, ["model.kind=als"]).model.warm_start == "auto"
    # YAML 1.1 reads off and on as booleans; the key takes them as the words they were.
    assert [load_config(None, [f"model.warm_start={v}"]).model.warm_start for v in ("off", "on", "auto")] == [
        "off", "on", "auto"]


def _spark_jobs(spark, group):
    """Ids of the Spark jobs run so far in job group `group` or in none (a pool thread's jobs have none)."""
    tracker = spark.sparkContext.statusTracker()
    return set(tracker.getJobIdsForGroup(None)) | set(tracker.getJobIdsForGroup(group))


@pytest.mark.parametrize("id_type", ["string", "bigint"])
def test_a_saved_model_is_read_on_the_driver_without_spark_as_its_tables_hold_it(spark, tmp_path, monkeypatch, id_type):
    from recsys_spark.models.factor_model import FactorModel
    from recsys_spark.models.warm_start import EarlierModel
    from recsys_spark.storage import fs, stores

    rng = np.random.default_rng(5)
    user_ids = rng.permutation(500)[:300] + 1000  # index order is not id order
    item_ids = rng.permutation(90)[:70]
    users = spark.createDataFrame(pd.DataFrame({"user_index": np.arange(300, dtype=np.int32),
                                                "user_id": user_ids if id_type == "bigint" else user_ids.astype(str)}),
                                  f"user_index int, user_id {id_type}").repartition(3)  # several Parquet files
    items = spark.createDataFrame(pd.DataFrame({"item_index": np.arange(70, dtype=np.int32),
                                                "item_id": item_ids if id_type == "bigint" else item_ids.astype(str)}),
                                  f"item_index int, item_id {id_type}")
    x, y = rng.normal(size=(300, 6)).astype(np.float32), rng.normal(size=(70, 6)).astype(np.float32)
    model = FactorModel.from_numpy(x, y, users, items, {"kind": "wals", "latent_dim": 6})
    stores.save_model(model, str(tmp_path / "model"))

    group = "read-saved-model"
    spark.sparkContext.setJobGroup(group, "the warm start's read of a saved model")
    try:
        before = _spark_jobs(spark, group)
        saved = stores.earlier_model(spark, str(tmp_path / "model"))
        got_users, got_items = saved.rows(6)
        assert _spark_jobs(spark, group) == before, "reading a model on local disk ran a Spark job"
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert saved.kind == "wals" and saved.info.latent_dim == 6
    want_users, want_items = EarlierModel.of(model).rows(6)  # the tables in memory, collected by Spark
    monkeypatch.setattr(fs, "local_path", lambda spark, path: None)  # HDFS, object stores: read by Spark
    remote_users, remote_items = stores.earlier_model(spark, str(tmp_path / "model")).rows(6)
    for got, want, remote, ids, rows in ((got_users, want_users, remote_users, user_ids, x),
                                         (got_items, want_items, remote_items, item_ids, y)):
        reference = {str(i): row for i, row in zip(ids, rows)}  # the matrices the model was built from
        for side in (got, want, remote):
            assert side.ids.dtype.kind == ("i" if id_type == "bigint" else "O")
            assert sorted(map(str, side.ids)) == sorted(reference)
            np.testing.assert_array_equal(side.rows, np.stack([reference[str(i)] for i in side.ids]))
    with pytest.raises(ValueError, match="not all of width 8"):
        saved.rows(8)


def test_warm_start_from_the_saved_model_gives_the_factors_of_the_start_in_memory(spark, tmp_path):
    from recsys_spark.config import ModelConfig, TrainConfig, WalsConfig
    from recsys_spark.data.sample_data import generate_interactions
    from recsys_spark.models import wals
    from recsys_spark.models.warm_start import id_maps
    from recsys_spark.storage import stores
    from tests.prepared_frames import prepared_from_pandas

    frame = generate_interactions(60, 40, 900, seed=6)
    users, items = sorted(frame.user_id.unique()), sorted(frame.item_id.unique())
    earlier = frame[~frame.user_id.isin(users[:6]) & ~frame.item_id.isin(items[:3])]
    later = frame[~frame.user_id.isin(users[-5:]) & ~frame.item_id.isin(items[-4:])]
    cfg = ModelConfig(kind="wals", rank=4, seed=3, wals=WalsConfig(iterations=2, tolerance=0.0))
    old = wals.train(prepared_from_pandas(spark, earlier), cfg, TrainConfig())
    stores.save_model(old, str(tmp_path / "model"))
    prepared = prepared_from_pandas(spark, later)
    from_memory = wals.train(prepared, cfg, TrainConfig(), initial=old)
    from_disk = wals.train(prepared, cfg, TrainConfig(), initial=stores.earlier_model(spark, str(tmp_path / "model")))
    assert from_disk.metadata["warm_start"]["users"] == from_memory.metadata["warm_start"]["users"]
    assert from_disk.metadata["warm_start"]["items"] == from_memory.metadata["warm_start"]["items"]
    assert from_disk.metadata["warm_start"]["users"]["dropped"] == len(set(earlier.user_id) - set(later.user_id)) >= 5
    for table in ("user_factors", "item_factors"):
        got = getattr(from_disk, table).toPandas().sort_values(table[:4] + "_index")
        want = getattr(from_memory, table).toPandas().sort_values(table[:4] + "_index")
        np.testing.assert_array_equal(np.stack(got.factors), np.stack(want.factors))

    # today's id maps come by index; a map with a gap is refused
    user_map, item_map = id_maps(prepared.user_ids, prepared.item_ids)
    assert list(user_map) == sorted(later.user_id.unique()) and list(item_map) == sorted(later.item_id.unique())
    with pytest.raises(ValueError, match="user id map is not dense"):
        id_maps(prepared.user_ids.filter("user_index != 1"), prepared.item_ids)


@pytest.mark.parametrize("id_type", ["string", "bigint"])
def test_a_driver_model_is_saved_from_the_driver_as_spark_would_save_it(spark, tmp_path, id_type):
    # The train stage's fixed costs, cold and warm alike: WALS on the driver hands its ids to the
    # model, whose tables go to Spark without a join and to disk without a Spark job.
    from recsys_spark.models.factor_model import FactorModel
    from recsys_spark.models.warm_start import id_maps
    from recsys_spark.storage import stores

    rng = np.random.default_rng(8)
    ids = rng.permutation(400)[:250] + 7
    users = spark.createDataFrame(pd.DataFrame({"user_index": np.arange(250, dtype=np.int32),
                                                "user_id": ids if id_type == "bigint" else ids.astype(str)}),
                                  f"user_index int, user_id {id_type}")
    items = spark.createDataFrame(pd.DataFrame({"item_index": np.arange(40, dtype=np.int32),
                                                "item_id": np.arange(40) * 3 if id_type == "bigint"
                                                else [f"i{k}" for k in range(40)]}), f"item_index int, item_id {id_type}")
    x, y = rng.normal(size=(250, 5)).astype(np.float32), rng.normal(size=(40, 5)).astype(np.float32)
    joined = FactorModel.from_numpy(x, y, users, items, {"kind": "wals"})
    driver = FactorModel.from_numpy(x, y, users, items, {"kind": "wals"}, ids=id_maps(users, items))
    assert joined.driver is None and driver.driver is not None
    stores.save_model(joined, str(tmp_path / "by-spark"))
    group = "save-driver-model"
    spark.sparkContext.setJobGroup(group, "a driver model's save")
    try:
        before = _spark_jobs(spark, group)
        stores.save_model(driver, str(tmp_path / "by-driver"))
        stores.save_model(driver, str(tmp_path / "by-driver"))  # replaces what was there
        assert _spark_jobs(spark, group) == before, "saving a driver model on local disk ran a Spark job"
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    want, got = stores.load_model(spark, str(tmp_path / "by-spark")), stores.load_model(spark, str(tmp_path / "by-driver"))
    assert {**got.metadata, "created_at": None} == {**want.metadata, "created_at": None}
    for table, index in (("user_factors", "user_index"), ("item_factors", "item_index")):
        assert [f.dataType for f in getattr(got, table).schema] == [f.dataType for f in getattr(want, table).schema]
        for frame in (getattr(driver, table), getattr(got, table)):  # in memory and read back
            have = frame.toPandas().sort_values(index).reset_index(drop=True)
            expected = getattr(want, table).toPandas().sort_values(index).reset_index(drop=True)
            assert have[index].tolist() == expected[index].tolist() and have.iloc[:, 1].tolist() == expected.iloc[:, 1].tolist()
            np.testing.assert_array_equal(np.stack(have.factors), np.stack(expected.factors))


def test_the_prepare_stage_leaves_its_interactions_materialised(spark, tmp_path):
    # The nightly run's train stage then collects them from the cache instead of paying prepare's joins.
    from recsys_spark.app.steps import read_and_prepare
    from recsys_spark.config import load_config
    from recsys_spark.data.sample_data import generate_interactions

    generate_interactions(n_users=40, n_items=15, n_interactions=300, seed=2).to_csv(tmp_path / "in.csv", index=False)
    prepared, _ = read_and_prepare(spark, load_config(None, []), str(tmp_path / "in.csv"))
    cached = spark._jsparkSession.sharedState().cacheManager().lookupCachedData(prepared.interactions._jdf)
    assert cached.isDefined() and cached.get().cachedRepresentation().cacheBuilder().isCachedColumnBuffersLoaded()
    prepared.interactions.unpersist()


def test_an_id_map_is_read_in_one_spark_job(spark):
    # prepare's id maps carry their partition offsets in the plan: reading one (today's maps beside the
    # interactions' collection, the factor tables' ids) is one job, not a broadcast job and then one.
    from recsys_spark.config import PrepareConfig
    from recsys_spark.data.prepare import prepare
    from recsys_spark.data.sample_data import generate_interactions

    frame = generate_interactions(n_users=300, n_items=60, n_interactions=3000, seed=5)
    prepared = prepare(spark.createDataFrame(frame).repartition(3), PrepareConfig())
    group = "read-id-map"
    spark.sparkContext.setJobGroup(group, "an id map's read")
    try:
        before = _spark_jobs(spark, group)
        users = prepared.user_ids.toArrow().to_pandas().sort_values("user_index")
        assert len(_spark_jobs(spark, group) - before) == 1
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert users.user_index.tolist() == list(range(prepared.n_users))
    assert users.user_id.tolist() == sorted(frame.user_id.unique())
